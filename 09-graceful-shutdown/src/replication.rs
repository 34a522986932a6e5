//! Replication: a master streams its changes to replicas, and a replica
//! follows a master. Both sides speak Redis's own protocol, so either side
//! may be a real redis-server.
//!
//! The handshake, as a replica opens it (see Redis's `syncWithMaster` in
//! replication.c):
//!
//! ```text
//! replica: PING                                  master: +PONG
//! replica: REPLCONF listening-port 6381          master: +OK
//! replica: REPLCONF capa eof capa psync2         master: +OK
//! replica: PSYNC ? -1                            master: +FULLRESYNC <replid> <offset>
//!                                                master: $<len>\r\n<RDB snapshot>
//!                                                master: every later write, as RESP
//! replica: REPLCONF ACK <offset>   (every second, and when asked with GETACK)
//! ```
//!
//! The offset counts the bytes of the stream after the snapshot. Master
//! and replica count the same bytes, so "the replica has acknowledged
//! offset N" means it has applied every write the master sent before N.
//!
//! This workshop always answers PSYNC with a full resync: a fresh snapshot
//! followed by the stream. Redis can also continue an interrupted stream
//! from its backlog (`+CONTINUE`); that is left as an exercise.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};

use crate::commands::{self, Client};
use crate::db::{encode_command, unix_time_ms};
use crate::resp::{self, Frame, RequestParser};
use crate::{rdb, snapshot, Server};

/// How often a master PINGs its replicas (`repl-ping-replica-period`).
const PING_EVERY: Duration = Duration::from_secs(10);
/// How often a replica reports its offset (Redis: once a second).
const ACK_EVERY: Duration = Duration::from_secs(1);
/// How long either side waits for the other before giving up on the link
/// (`repl-timeout`).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause between a replica's attempts to reach its master.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A master's address, as REPLICAOF and `--replicaof` give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterAddr {
    pub host: String,
    pub port: u16,
}

/// Everything replication needs to know, on either side.
pub struct Replication {
    /// This server's replication ID: 40 random hex digits, new at start
    /// and whenever it stops following a master.
    replid: Mutex<String>,
    /// Whom this server follows; `None` while it is a master. REPLICAOF
    /// changes it, and the link task reacts.
    master: watch::Sender<Option<MasterAddr>>,
    /// Whether `master` is `Some`, kept beside it for the checks that run
    /// on every command: a load, where reading `master` takes a lock.
    following: AtomicBool,
    /// The state of our link to the master, for INFO.
    link: Mutex<LinkState>,
    /// The replicas that follow us, by client id.
    replicas: Mutex<HashMap<u64, ReplicaState>>,
    /// Bumped at every REPLCONF ACK, so that WAIT can wait for one.
    acks: watch::Sender<u64>,
}

#[derive(Default)]
struct LinkState {
    up: bool,
    /// The master's replication ID, and how far into its stream we are.
    master_replid: String,
    offset: u64,
    last_io: Option<Instant>,
}

/// A replica, as its master sees it.
struct ReplicaState {
    ip: String,
    port: u16,
    /// The offset it last acknowledged.
    acked: u64,
    last_ack: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replication {
    pub fn new(master: Option<MasterAddr>) -> Replication {
        Replication {
            replid: Mutex::new(new_replid()),
            following: AtomicBool::new(master.is_some()),
            master: watch::Sender::new(master),
            link: Mutex::default(),
            replicas: Mutex::default(),
            acks: watch::Sender::new(0),
        }
    }

    pub fn replid(&self) -> String {
        lock(&self.replid).clone()
    }

    /// The master we follow, if any.
    pub fn master(&self) -> Option<MasterAddr> {
        self.master.borrow().clone()
    }

    pub fn is_replica(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// REPLICAOF host port (or `None` for REPLICAOF NO ONE). Returns false
    /// if we already follow that master.
    pub fn follow(&self, master: Option<MasterAddr>) -> bool {
        let changed = self.master.send_if_modified(|current| {
            if *current == master {
                return false;
            }
            *current = master.clone();
            self.following.store(master.is_some(), Ordering::Relaxed);
            true
        });
        if changed && master.is_none() {
            // A new master starts a new history (Redis's `shiftReplicationId`).
            *lock(&self.replid) = new_replid();
            *lock(&self.link) = LinkState::default();
        }
        changed
    }

    /// The replica side's offset: how much of the master's stream it has
    /// applied.
    pub fn link_offset(&self) -> u64 {
        lock(&self.link).offset
    }

    fn record_ack(&self, client_id: u64, offset: u64) {
        if let Some(replica) = lock(&self.replicas).get_mut(&client_id) {
            replica.acked = offset;
            replica.last_ack = Instant::now();
        }
        self.acks.send_modify(|count| *count += 1);
    }

    /// How many replicas have acknowledged `offset` or more.
    fn count_acks(&self, offset: u64) -> usize {
        lock(&self.replicas)
            .values()
            .filter(|r| r.acked >= offset)
            .count()
    }

    /// The "# Replication" section of INFO.
    pub fn info(&self, master_offset: u64) -> String {
        let mut info = String::from("# Replication\r\n");
        let replicas = lock(&self.replicas);
        let add = |info: &mut String, line: String| {
            info.push_str(&line);
            info.push_str("\r\n");
        };
        match self.master() {
            None => {
                add(&mut info, "role:master".to_string());
                add(&mut info, format!("connected_slaves:{}", replicas.len()));
                for (i, r) in replicas.values().enumerate() {
                    let lag = r.last_ack.elapsed().as_secs();
                    add(
                        &mut info,
                        format!(
                            "slave{i}:ip={},port={},state=online,offset={},lag={lag}",
                            r.ip, r.port, r.acked
                        ),
                    );
                }
                add(&mut info, format!("master_replid:{}", self.replid()));
                add(&mut info, format!("master_repl_offset:{master_offset}"));
            }
            Some(master) => {
                let link = lock(&self.link);
                let status = if link.up { "up" } else { "down" };
                let last_io = link.last_io.map_or(-1, |t| t.elapsed().as_secs() as i64);
                add(&mut info, "role:slave".to_string());
                add(&mut info, format!("master_host:{}", master.host));
                add(&mut info, format!("master_port:{}", master.port));
                add(&mut info, format!("master_link_status:{status}"));
                add(&mut info, format!("master_last_io_seconds_ago:{last_io}"));
                add(
                    &mut info,
                    format!("master_sync_in_progress:{}", u8::from(!link.up)),
                );
                add(&mut info, format!("slave_read_repl_offset:{}", link.offset));
                add(&mut info, format!("slave_repl_offset:{}", link.offset));
                add(&mut info, "slave_read_only:1".to_string());
                add(&mut info, format!("connected_slaves:{}", replicas.len()));
                add(&mut info, format!("master_replid:{}", link.master_replid));
                add(&mut info, format!("master_repl_offset:{}", link.offset));
            }
        }
        info
    }
}

/// 40 hex digits that no other server is likely to have picked. Hashers
/// seeded by `RandomState` are random enough for an identifier, and need
/// no extra crate.
fn new_replid() -> String {
    let mut id = String::new();
    while id.len() < 40 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(unix_time_ms());
        hasher.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id.truncate(40);
    id
}

// ---------------------------------------------------------------------------
// The master's side
// ---------------------------------------------------------------------------

/// How a replica asked for the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// PSYNC: answered with `+FULLRESYNC <replid> <offset>` first.
    Psync,
    /// The old SYNC: just the snapshot, then the stream.
    Sync,
}

/// Serves a connection that sent PSYNC or SYNC, for as long as the replica
/// stays: a snapshot, then every change. The replica only ever talks back
/// with REPLCONF ACK, which gets no reply: a real replica takes any reply
/// on this connection for a corrupt stream and drops the link.
pub async fn serve_replica(
    socket: &mut TcpStream,
    mut input: BytesMut,
    client: &Client,
    server: &Server,
    request: SyncRequest,
) -> Result<()> {
    // Under one lock: a copy of the data and a place in the feed. Every
    // change lands either in the copy or in the feed after it, never both.
    let (entries, mut feed, offset) = {
        let db = server.db.lock();
        let (feed, offset) = db.subscribe_to_feed();
        (db.entries(Instant::now()), feed, offset)
    };
    if request == SyncRequest::Psync {
        let replid = server.replication.replid();
        socket
            .write_all(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes())
            .await?;
    }
    let now_secs = unix_time_ms() / 1000;
    let snapshot = tokio::task::spawn_blocking(move || {
        rdb::encode(entries.iter().map(|(k, v, at)| (k, v, *at)), now_secs)
    })
    .await?;
    // A bulk string without the final CRLF: that is how Redis sends it.
    socket
        .write_all(format!("${}\r\n", snapshot.len()).as_bytes())
        .await?;
    socket.write_all(&snapshot).await?;

    let replicas = &server.replication.replicas;
    lock(replicas).insert(
        client.id,
        ReplicaState {
            ip: client.addr.ip().to_string(),
            port: client.listening_port.unwrap_or(client.addr.port()),
            acked: offset,
            last_ack: Instant::now(),
        },
    );
    println!("replica {} is in sync at offset {offset}", client.addr);
    let result = stream_to_replica(socket, &mut input, &mut feed, client, server).await;
    lock(replicas).remove(&client.id);
    result
}

async fn stream_to_replica(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    feed: &mut broadcast::Receiver<Bytes>,
    client: &Client,
    server: &Server,
) -> Result<()> {
    let mut output = Vec::new();
    let mut requests = RequestParser::default();
    loop {
        input.reserve(4096);
        // A replica acknowledges every second; one silent for TIMEOUT is
        // gone, even if its connection looks open.
        let last_ack = lock(&server.replication.replicas)
            .get(&client.id)
            .map_or_else(Instant::now, |r| r.last_ack);
        let give_up = tokio::time::Instant::from_std(last_ack + TIMEOUT);
        tokio::select! {
            // Shutting down: no command runs any more, so what is in the
            // feed now is all there will be. Send it, then go.
            biased;
            () = server.shutdown.requested() => {
                while let Ok(bytes) = feed.try_recv() {
                    output.extend_from_slice(&bytes);
                }
                socket.write_all(&output).await?;
                return Ok(());
            }
            () = tokio::time::sleep_until(give_up) => {
                bail!("replica {} acknowledged nothing for {TIMEOUT:?}", client.addr);
            }
            command = feed.recv() => {
                let mut next = Some(command);
                while let Some(command) = next {
                    match command {
                        Ok(bytes) => output.extend_from_slice(&bytes),
                        Err(broadcast::error::RecvError::Lagged(missed)) => bail!(
                            "replica {} fell {missed} commands behind; dropping it",
                            client.addr
                        ),
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                    // Whatever else is already waiting goes in the same write.
                    next = match feed.try_recv() {
                        Err(broadcast::error::TryRecvError::Empty) => None,
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            Some(Err(broadcast::error::RecvError::Lagged(n)))
                        }
                        Err(broadcast::error::TryRecvError::Closed) => None,
                        Ok(bytes) => Some(Ok(bytes)),
                    };
                }
                tokio::time::timeout(TIMEOUT, socket.write_all(&output))
                    .await
                    .context("timed out writing to a replica")??;
                output.clear();
            }
            read = socket.read_buf(input) => {
                if read? == 0 {
                    return Ok(()); // The replica went away.
                }
                while let Some((args, _)) = requests.next(input)? {
                    if let [name, sub, offset] = &args[..] {
                        if name.eq_ignore_ascii_case(b"REPLCONF") && sub.eq_ignore_ascii_case(b"ACK") {
                            if let Some(offset) = resp::parse_integer(offset) {
                                let offset = u64::try_from(offset).unwrap_or(0);
                                server.replication.record_ack(client.id, offset);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The master's heartbeat: a PING into the stream every ten seconds while
/// replicas follow, so that they can tell a quiet master from a dead one.
pub async fn ping_replicas(server: Arc<Server>) {
    let first = tokio::time::Instant::now() + PING_EVERY;
    let mut ticks = tokio::time::interval_at(first, PING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !lock(&server.replication.replicas).is_empty() {
            server.db.lock().feed_replicas(&[b"PING"]);
        }
    }
}

/// WAIT numreplicas timeout: blocks until `wanted` replicas acknowledged
/// the stream up to `target` (the waiting client's last write), or the
/// timeout (0: none) passes; returns how many did.
pub async fn wait_for_replicas(
    server: &Server,
    target: u64,
    wanted: usize,
    timeout: Duration,
) -> usize {
    let replication = &server.replication;
    let acked = replication.count_acks(target);
    if acked >= wanted {
        return acked;
    }
    let mut acks = replication.acks.subscribe();
    // Ask for fresh acknowledgements rather than wait up to a second.
    server
        .db
        .lock()
        .feed_replicas(&[b"REPLCONF", b"GETACK", b"*"]);
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    loop {
        let acked = replication.count_acks(target);
        if acked >= wanted {
            return acked;
        }
        let changed = async {
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, acks.changed()).await.ok(),
                None => Some(acks.changed().await),
            }
        };
        match changed.await {
            Some(Ok(())) => continue,
            _ => return replication.count_acks(target),
        }
    }
}

// ---------------------------------------------------------------------------
// The replica's side
// ---------------------------------------------------------------------------

/// Follows whichever master REPLICAOF (or `--replicaof`) names, for as long
/// as the server runs: connects, syncs, applies the stream, and when the
/// link breaks, tries again with a growing pause.
pub async fn follow_master(server: Arc<Server>) {
    let mut master_changes = server.replication.master.subscribe();
    loop {
        let master = master_changes.borrow_and_update().clone();
        let Some(master) = master else {
            // A master: nothing to follow until REPLICAOF says otherwise.
            if master_changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            // REPLICAOF named another master, or NO ONE: drop this link.
            _ = master_changes.changed() => {}
            () = keep_linked(&server, &master) => {}
        }
        lock(&server.replication.link).up = false;
    }
}

async fn keep_linked(server: &Server, master: &MasterAddr) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match link(server, master).await {
            Ok(()) => eprintln!("master {}:{} closed the link", master.host, master.port),
            Err(e) => eprintln!("replication from {}:{}: {e:#}", master.host, master.port),
        }
        lock(&server.replication.link).up = false;
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100); // It had worked for a while.
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One link to the master, from the handshake until it breaks.
async fn link(server: &Server, master: &MasterAddr) -> Result<()> {
    let socket = TcpStream::connect((master.host.as_str(), master.port))
        .await
        .context("cannot connect")?;
    socket.set_nodelay(true)?;
    let mut link = MasterLink {
        socket,
        input: BytesMut::with_capacity(16 * 1024),
        requests: RequestParser::default(),
    };

    link.call(&[b"PING"]).await?;
    let port = server.listening_port.to_string();
    // Errors to REPLCONF are not fatal: Redis carries on too, since an
    // old master may not know an option.
    if let Err(e) = link
        .call(&[b"REPLCONF", b"listening-port", port.as_bytes()])
        .await
    {
        eprintln!("master refused REPLCONF listening-port: {e}");
    }
    if let Err(e) = link
        .call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await
    {
        eprintln!("master refused REPLCONF capa: {e}");
    }
    let reply = link.call(&[b"PSYNC", b"?", b"-1"]).await?;
    let (replid, offset) = parse_fullresync(&reply)?;
    let snapshot = link.read_snapshot().await?;
    let entries = rdb::decode(&snapshot).context("the master's snapshot")?;

    let loaded = {
        let mut db = server.db.lock();
        let old = db.take();
        let loaded = snapshot::insert_entries(&mut db, entries);
        drop(db);
        drop(old);
        loaded
    };
    {
        let mut state = lock(&server.replication.link);
        *state = LinkState {
            up: true,
            master_replid: replid,
            offset,
            last_io: Some(Instant::now()),
        };
    }
    println!(
        "synced {loaded} keys from master {}:{} at offset {offset}",
        master.host, master.port
    );
    link.apply_stream(server).await
}

/// `+FULLRESYNC <replid> <offset>`
fn parse_fullresync(reply: &Frame) -> Result<(String, u64)> {
    let Frame::Simple(line) = reply else {
        bail!("unexpected reply to PSYNC: {reply:?}");
    };
    match line.split(' ').collect::<Vec<_>>()[..] {
        ["FULLRESYNC", replid, offset] => Ok((replid.to_string(), offset.parse()?)),
        _ => bail!("unexpected reply to PSYNC: {line}"),
    }
}

/// The replica's connection to its master.
struct MasterLink {
    socket: TcpStream,
    input: BytesMut,
    /// The stream's commands, read as a client's are.
    requests: RequestParser,
}

impl MasterLink {
    /// Sends a command and reads its reply; an error reply is an `Err`.
    async fn call(&mut self, args: &[&[u8]]) -> Result<Frame> {
        let mut request = Vec::new();
        encode_command(&mut request, args);
        self.socket.write_all(&request).await?;
        loop {
            // While it prepares a snapshot, a master keeps the link alive
            // with bare newlines; they are not part of any reply.
            let blank = self.input.iter().take_while(|&&b| b == b'\n').count();
            self.input.advance(blank);
            if let Some((frame, used)) = Frame::parse(&self.input)? {
                self.input.advance(used);
                return match frame {
                    Frame::Error(e) => Err(anyhow!("{e}")),
                    frame => Ok(frame),
                };
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<()> {
        self.input.reserve(16 * 1024);
        let read = tokio::time::timeout(TIMEOUT, self.socket.read_buf(&mut self.input))
            .await
            .context("the master said nothing for too long")??;
        if read == 0 {
            bail!("the master closed the connection");
        }
        Ok(())
    }

    /// The snapshot after `+FULLRESYNC`: `$<len>\r\n` and that many bytes,
    /// or, from a master that streams it without knowing its length,
    /// `$EOF:<40 byte mark>\r\n`, the bytes, and the mark again.
    async fn read_snapshot(&mut self) -> Result<Vec<u8>> {
        let header = loop {
            let blank = self.input.iter().take_while(|&&b| b == b'\n').count();
            self.input.advance(blank);
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let header = self.input.split_to(end + 2);
                break String::from_utf8_lossy(&header[..end]).into_owned();
            }
            self.read_more().await?;
        };
        if let Some(mark) = header.strip_prefix("$EOF:") {
            let mark = mark.as_bytes().to_vec();
            loop {
                if self.input.ends_with(&mark) {
                    let body = self.input.split_to(self.input.len() - mark.len());
                    self.input.clear();
                    return Ok(body.to_vec());
                }
                self.read_more().await?;
            }
        }
        let len: usize = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("expected the snapshot's length, got {header:?}"))?;
        while self.input.len() < len {
            self.read_more().await?;
        }
        Ok(self.input.split_to(len).to_vec())
    }

    /// Applies every command the master sends, and acknowledges the offset
    /// every second and whenever the master asks with REPLCONF GETACK.
    async fn apply_stream(&mut self, server: &Server) -> Result<()> {
        let replication = &server.replication;
        // The master's writes must get through on a read-only replica.
        let mut master = Client::new(0, self.socket.peer_addr()?);
        master.replaying = true;
        let mut acks = tokio::time::interval(ACK_EVERY);
        let mut replies = Vec::new();
        loop {
            // `used` counts the whole command, with the parts that earlier
            // reads brought: the offset moves by a command at a time.
            while let Some((args, used)) = self.requests.next(&mut self.input)? {
                let getack = args.len() == 3
                    && args[0].eq_ignore_ascii_case(b"REPLCONF")
                    && args[1].eq_ignore_ascii_case(b"GETACK");
                let mut link = lock(&replication.link);
                if getack {
                    // The offset before this GETACK, as Redis counts it.
                    let offset = link.offset.to_string();
                    encode_command(&mut replies, &[b"REPLCONF", b"ACK", offset.as_bytes()]);
                } else if !args.is_empty() {
                    drop(link);
                    apply(&args, &mut master, server);
                    link = lock(&replication.link);
                }
                link.offset += used as u64;
                link.last_io = Some(Instant::now());
            }
            if !replies.is_empty() {
                self.socket.write_all(&replies).await?;
                replies.clear();
            }
            self.input.reserve(16 * 1024);
            // A master PINGs every ten seconds; one silent for TIMEOUT is gone,
            // even if its connection looks open.
            let last_heard = lock(&replication.link).last_io.unwrap_or_else(Instant::now);
            let give_up = tokio::time::Instant::from_std(last_heard + TIMEOUT);
            tokio::select! {
                read = self.socket.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(give_up) => {
                    bail!("the master sent nothing for {TIMEOUT:?}");
                }
                _ = acks.tick() => {
                    let offset = replication.link_offset().to_string();
                    let mut ack = Vec::new();
                    encode_command(&mut ack, &[b"REPLCONF", b"ACK", offset.as_bytes()]);
                    self.socket.write_all(&ack).await?;
                }
            }
        }
    }
}

/// Runs one command from the master. Nothing is sent back: replies to the
/// master's stream would corrupt it.
fn apply(args: &[Bytes], master: &mut Client, server: &Server) {
    // Redis wraps some groups of writes in MULTI/EXEC; applied one at a
    // time from one stream, they stay in order all the same.
    if args[0].eq_ignore_ascii_case(b"MULTI") || args[0].eq_ignore_ascii_case(b"EXEC") {
        return;
    }
    if let Frame::Error(error) = commands::execute(args, master, server) {
        eprintln!(
            "the master sent a command this replica could not apply ({}): {error}",
            String::from_utf8_lossy(&args[0])
        );
    }
}

/// Parses `--replicaof`'s or REPLICAOF's "host port".
pub fn parse_master(host: &str, port: &str) -> Result<MasterAddr> {
    let port = port
        .parse()
        .map_err(|_| anyhow!("invalid master port '{port}'"))?;
    Ok(MasterAddr {
        host: host.to_string(),
        port,
    })
}

/// The listening address of `replica <listen-addr> <master-addr>`.
pub fn parse_addr(addr: &str) -> Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("'{addr}' is not an address like 127.0.0.1:6381"))
}
