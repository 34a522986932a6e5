//! Step 09: graceful shutdown.
//!
//! Every earlier step stopped the moment it was killed. Now SIGINT,
//! SIGTERM and SHUTDOWN stop it politely (`shutdown.rs`): no new
//! connections, every open one finishes its command and closes, the AOF is
//! fsynced and a final snapshot saved, and the process exits 0. The same
//! `Semaphore` that counts connections for the drain also enforces
//! `--maxclients`.

mod aof;
mod commands;
mod db;
mod glob;
mod pubsub;
mod rdb;
mod replication;
mod resp;
mod shutdown;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use aof::{AofFile, Fsync};
use commands::Client;
use db::Db;
use pubsub::PubSub;
use replication::{MasterAddr, Replication};
use resp::{Frame, RequestParser};
use shutdown::Shutdown;
use snapshot::{SavePoint, Snapshots};

/// Command-line options, spelled the way redis-server spells them.
pub struct Config {
    bind: String,
    /// 0 asks the operating system for any free port (the tests use this).
    port: u16,
    /// The most bytes a client may send without completing a command
    /// (Redis's `client-query-buffer-limit`); past it, it is cut off.
    query_buffer_limit: usize,
    /// Where the files live.
    dir: PathBuf,
    appendonly: bool,
    appendfilename: String,
    appendfsync: Fsync,
    /// When to save a snapshot by itself; empty for never.
    save_points: Vec<SavePoint>,
    dbfilename: String,
    /// The master to follow, if this server starts as a replica.
    replicaof: Option<MasterAddr>,
    /// The most client connections at once.
    maxclients: u32,
    /// How long a shutdown waits for connections to finish.
    shutdown_timeout: Duration,
}

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Config> {
        let mut config = Config {
            bind: "127.0.0.1".to_string(),
            port: 6380,
            query_buffer_limit: 1 << 30,
            dir: PathBuf::from("."),
            appendonly: false,
            appendfilename: "appendonly.aof".to_string(),
            appendfsync: Fsync::EverySec,
            save_points: snapshot::default_save_points(),
            dbfilename: "dump.rdb".to_string(),
            replicaof: None,
            maxclients: 10_000,
            shutdown_timeout: Duration::from_secs(10),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bind" => config.bind = value()?,
                "--port" => config.port = value()?.parse().context("--port takes 0 to 65535")?,
                "--client-query-buffer-limit" => config.query_buffer_limit = size(&value()?)?,
                "--dir" => config.dir = PathBuf::from(value()?),
                "--appendonly" => config.appendonly = yes_or_no(&flag, &value()?)?,
                "--appendfilename" => config.appendfilename = value()?,
                "--appendfsync" => config.appendfsync = Fsync::parse(&value()?)?,
                "--save" => config.save_points = snapshot::parse_save_points(&value()?)?,
                "--dbfilename" => config.dbfilename = value()?,
                // "host port" as one argument, or as two like redis-server.
                "--replicaof" | "--slaveof" => {
                    let first = value()?;
                    let (host, port) = match first.split_once(' ') {
                        Some((host, port)) => (host.to_string(), port.trim().to_string()),
                        None => (first, value()?),
                    };
                    config.replicaof = Some(replication::parse_master(&host, &port)?);
                }
                "--maxclients" => {
                    config.maxclients = value()?.parse().context("--maxclients takes a number")?;
                }
                "--shutdown-timeout" => {
                    let seconds = value()?
                        .parse()
                        .context("--shutdown-timeout takes seconds")?;
                    config.shutdown_timeout = Duration::from_secs(seconds);
                }
                // The seed's form: `replica <listen-addr> <master-addr>`.
                "replica" => {
                    let listen = replication::parse_addr(&value()?)?;
                    let master = replication::parse_addr(&value()?)?;
                    config.bind = listen.ip().to_string();
                    config.port = listen.port();
                    config.replicaof = Some(MasterAddr {
                        host: master.ip().to_string(),
                        port: master.port(),
                    });
                }
                _ => bail!(
                    "unknown option '{flag}' (this step knows --bind, --port, --client-query-buffer-limit, --dir, \
                     --appendonly, --appendfilename, --appendfsync, --save, --dbfilename, \
                     --replicaof, --maxclients, --shutdown-timeout, and \
                     replica <listen-addr> <master-addr>)"
                ),
            }
        }
        // Absolute, as Redis reports it in CONFIG GET dir.
        config.dir = config
            .dir
            .canonicalize()
            .with_context(|| format!("--dir {}", config.dir.display()))?;
        Ok(config)
    }
}

/// A size as redis-server's configuration writes it: `1048576`, `512kb`,
/// `1mb`, `1gb` (powers of 1024; `k`, `m`, `g` alone are powers of 1000).
fn size(text: &str) -> Result<usize> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: usize = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => bail!("'{text}' is not a size like 1048576, 512kb or 1gb"),
    };
    let number: usize = digits
        .parse()
        .with_context(|| format!("'{text}' is not a size"))?;
    number
        .checked_mul(unit)
        .with_context(|| format!("'{text}' is too large"))
}

fn yes_or_no(flag: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => bail!("{flag} must be yes or no, not '{value}'"),
    }
}

/// What every connection shares: the configuration, the keyspace, the
/// append-only file when `--appendonly yes`, the snapshot file, the
/// pub/sub channels, the replication state, and the shutdown signal.
pub struct Server {
    config: Config,
    /// The port we really listen on (with `--port 0`, the one the system
    /// picked), which a replica announces to its master.
    listening_port: u16,
    db: Db,
    aof: Option<AofFile>,
    snapshots: Snapshots,
    pubsub: PubSub,
    replication: Replication,
    shutdown: Shutdown,
}

/// How often the background sweep looks for expired keys (Redis: `hz` 10).
const EXPIRE_EVERY: Duration = Duration::from_millis(100);
/// How many expired keys the sweep deletes per turn of the lock.
const EXPIRE_BATCH: usize = 1000;
/// The most time the sweep spends per tick, as Redis's `activeExpireCycle`
/// gives itself a quarter of each: a million keys falling due together are
/// cleared over several ticks rather than in one long stall.
const EXPIRE_BUDGET: Duration = Duration::from_millis(25);

/// A batch of replies is written out once it reaches this size, even before
/// the batch is complete, so a client that pipelines thousands of commands
/// does not make us hold all their replies in memory at once.
const FLUSH_AT: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_args(std::env::args().skip(1))?;
    let listener = TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let snapshot_path = config.dir.join(&config.dbfilename);
    let replication = Replication::new(config.replicaof.clone());
    let shutdown = Shutdown::new(config.maxclients);
    let mut server = Server {
        config,
        listening_port: listener.local_addr()?.port(),
        db: Db::default(),
        aof: None,
        snapshots: Snapshots::new(snapshot_path.clone()),
        pubsub: PubSub::default(),
        replication,
        shutdown,
    };

    // As Redis does: with the AOF on, it alone is loaded, since it holds
    // every write, while a snapshot may be older. The AOF is replayed
    // before serving anyone, and only then opened for appending, so the
    // replay itself is not appended again.
    let mut aof_writer = None;
    if !server.config.appendonly {
        let loaded = snapshot::load(&snapshot_path, &server).await?;
        println!("loaded {loaded} keys from {}", snapshot_path.display());
    }
    if server.config.appendonly {
        let path = server.config.dir.join(&server.config.appendfilename);
        let replayed = aof::replay(&path, &server).await?;
        println!("replayed {replayed} commands from {}", path.display());
        let (aof, writer) = aof::open(&path, server.config.appendfsync).await?;
        server.aof = Some(aof);
        server.db.lock().start_logging_changes();
        aof_writer = Some(writer);
    }
    let server = Arc::new(server);
    let signals = shutdown::catch_signals()?;
    println!(
        "step09-graceful-shutdown: ready to accept connections on {}",
        listener.local_addr()?
    );

    tokio::spawn(expire_keys_in_background(Arc::clone(&server)));
    tokio::spawn(snapshot::save_in_background(Arc::clone(&server)));
    tokio::spawn(replication::ping_replicas(Arc::clone(&server)));
    tokio::spawn(replication::follow_master(Arc::clone(&server)));
    if let Some(writer) = aof_writer {
        if server.config.appendfsync == Fsync::EverySec {
            tokio::spawn(aof::sync_every_second(writer.sync_handle().await?));
        }
        tokio::spawn(writer.run(Arc::clone(&server)));
    }

    let stop = shutdown::wait_for_request(&server, signals);
    tokio::pin!(stop);
    let mut next_client_id = 1;
    let save = loop {
        let accepted = tokio::select! {
            // Checked first: once a shutdown starts, nobody else gets in.
            biased;
            save = &mut stop => break save,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE: out of file descriptors. That passes as other
                // clients leave, so pause instead of spinning or giving up.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = server.shutdown.admit() else {
            tokio::spawn(refuse(socket));
            continue;
        };
        let client = Client::new(next_client_id, peer);
        next_client_id += 1;
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            if let Err(e) = serve(socket, client, &server).await {
                eprintln!("{peer}: connection closed by error: {e}");
            }
            // Home it goes: one fewer connection for the drain to wait on.
            drop(permit);
        });
    };
    drop(listener);
    let code = shutdown::finish(&server, save).await;
    // Not a return from main: that would wait for blocking tasks that may
    // never finish (a write to a dead disk), and the promises are kept.
    std::process::exit(code);
}

/// Over `--maxclients`: say so, as Redis does, and hang up.
async fn refuse(mut socket: TcpStream) {
    let _ = socket
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
}

/// Active expiry: every `EXPIRE_EVERY`, delete the keys that are due, a
/// batch at a time, for at most `EXPIRE_BUDGET`.
async fn expire_keys_in_background(server: Arc<Server>) {
    let mut ticks = tokio::time::interval(EXPIRE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if server.replication.is_replica() {
            // A replica's keys expire when its master says so, with a DEL
            // in the stream; until then clients find them gone, but they
            // stay stored (see `Deadlines::Hide`).
            continue;
        }
        let started = Instant::now();
        while started.elapsed() < EXPIRE_BUDGET {
            let removed = server
                .db
                .lock()
                .remove_expired(Instant::now(), EXPIRE_BATCH);
            if removed < EXPIRE_BATCH {
                break; // Nothing more is due.
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Runs one client's connection, and whatever way it ends, takes the
/// client off every channel it subscribed to: a channel must not count a
/// subscriber that is gone.
async fn serve(mut socket: TcpStream, mut client: Client, server: &Server) -> Result<()> {
    let result = converse(&mut socket, &mut client, server).await;
    client.subscriptions.clear(&server.pubsub);
    result
}

/// Read, parse, execute, reply, repeat; and, at any moment, pass on the
/// messages the client's subscriptions deliver.
async fn converse(socket: &mut TcpStream, client: &mut Client, server: &Server) -> Result<()> {
    // Replies leave as soon as they are written instead of waiting for the
    // client's ACK of the previous packet (Nagle's algorithm): we already
    // batch them ourselves, one write per read.
    socket.set_nodelay(true)?;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut requests = RequestParser::default();
    let mut output = Vec::with_capacity(16 * 1024);
    // `None` when persistence is off: every use below reads as "if there is
    // an AOF, ...", and the compiler makes sure we ask.
    let aof: Option<&AofFile> = server.aof.as_ref();
    let too_slow = client.subscriptions.overflow_signal();
    let mut out = Outbox {
        output: &mut output,
        aof,
        db: &server.db,
        too_slow: &too_slow,
    };

    loop {
        input.reserve(16 * 1024);
        // Whichever comes first: bytes from the client, a message for one of
        // its subscriptions, or the news that it reads too slowly for them.
        // All four futures can be dropped unfinished without losing
        // anything, which is what `select!` requires of them.
        tokio::select! {
            // A shutdown comes first: the connection closes between
            // commands, never in the middle of a reply.
            biased;
            () = server.shutdown.requested() => return Ok(()),
            read = socket.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(()); // The client hung up.
                }
                // Messages that arrived before these commands go out before
                // their replies, as from Redis's single output buffer.
                while let Some(delivery) = client.subscriptions.try_next() {
                    delivery.into_frame().encode(out.output, client.protocol);
                }
                run_commands(&mut input, &mut requests, socket, client, server, &mut out).await?;
                if client.quitting {
                    return Ok(());
                }
                let unfinished = requests.pending() + input.len();
                if unfinished > server.config.query_buffer_limit {
                    // As Redis does at `client-query-buffer-limit`: a client that
                    // sends this much without finishing a command is cut off.
                    eprintln!(
                        "client {} sent {unfinished} bytes without completing a command; disconnecting it",
                        client.id,
                    );
                    return Ok(());
                }
                if let Some(request) = client.sync_request {
                    // PSYNC or SYNC: from now on this connection is a
                    // replica's stream, until the replica goes away.
                    let input = std::mem::take(&mut input);
                    return replication::serve_replica(socket, input, client, server, request)
                        .await;
                }
            }
            delivery = client.subscriptions.next() => {
                // Whatever else is already waiting goes in the same write.
                let mut next = Some(delivery);
                while let Some(delivery) = next {
                    delivery.into_frame().encode(out.output, client.protocol);
                    next = match out.output.len() < FLUSH_AT {
                        true => client.subscriptions.try_next(),
                        false => None,
                    };
                }
                out.send(socket).await?;
            }
            () = too_slow.notified() => return Err(too_slow_error(client)),
        }
    }
}

/// Runs every whole command the buffer holds before answering: replies to
/// a pipelining client then leave in one write, not one each.
async fn run_commands(
    input: &mut BytesMut,
    requests: &mut RequestParser,
    socket: &mut TcpStream,
    client: &mut Client,
    server: &Server,
    out: &mut Outbox<'_>,
) -> Result<()> {
    loop {
        let args = match requests.next(input) {
            Ok(Some((args, _))) => args,
            Ok(None) => break, // The rest of the command is still in flight.
            Err(error) => {
                // As Redis does: say what was wrong, then hang up, since we
                // can no longer tell where the next command starts.
                eprintln!("protocol error from client {}: {error}", client.id);
                Frame::Error(error.to_string()).encode(out.output, client.protocol);
                out.send(socket).await?;
                client.quitting = true;
                return Ok(());
            }
        };
        if args.is_empty() {
            continue; // Redis ignores blank lines, `*0` and `*-1`.
        }
        if server.shutdown.is_requested() {
            // Shutting down: the replies so far go out, nothing new starts.
            client.quitting = true;
            break;
        }
        if args.len() == 3 && args[0].eq_ignore_ascii_case(b"PUBLISH") {
            // PUBLISH itself never waits, so it is held here until the
            // subscribers' forwarding tasks have made room for it, in the
            // buffers it then sends into.
            let targets = server.pubsub.targets(&args[1]);
            targets.wait_for_room().await;
            client.publish_to = Some(targets);
        }
        let reply = commands::execute(&args, client, server);
        reply.encode(out.output, client.protocol);
        if client.quitting || client.sync_request.is_some() {
            break;
        }
        if out.output.len() >= FLUSH_AT {
            out.send(socket).await?;
        }
    }
    if !out.output.is_empty() {
        out.send(socket).await?;
    }
    Ok(())
}

fn too_slow_error(client: &Client) -> anyhow::Error {
    anyhow::anyhow!(
        "client {} reads its subscriptions too slowly (over {} MB waiting); disconnected",
        client.id,
        pubsub::MAILBOX_LIMIT / (1024 * 1024)
    )
}

/// What a connection writes, and what must happen before it may.
struct Outbox<'a> {
    output: &'a mut Vec<u8>,
    aof: Option<&'a AofFile>,
    db: &'a Db,
    too_slow: &'a Notify,
}

impl Outbox<'_> {
    /// Writes the pending replies, but first waits until the AOF holds the
    /// changes they acknowledge: a client must never hear "OK" for a write
    /// that a crash could undo. A subscriber that stops reading would block
    /// the write forever, so its overflow ends the wait too.
    async fn send(&mut self, socket: &mut TcpStream) -> Result<()> {
        if let Some(aof) = self.aof {
            let position = self.db.lock().log_position();
            aof.wait_until_written(position).await;
        }
        tokio::select! {
            written = socket.write_all(self.output) => written?,
            () = self.too_slow.notified() => {
                anyhow::bail!("a subscriber stopped reading; disconnected");
            }
        }
        self.output.clear();
        Ok(())
    }
}
