//! The commands this step understands, and the table that describes them.
//! New in step 09: SHUTDOWN.
//!
//! Like Redis's own command table (`src/commands.c`, generated from the JSON
//! files in `src/commands/`), every command is one entry: its name, its
//! arity, a one-line summary, and the function that runs it. `execute` looks
//! the name up and checks the arity; handlers only ever see well-sized input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::db::{instant_at_unix_ms, unix_ms_of, unix_time_us, Deadlines, Expiry, Now};
use crate::glob;
use crate::pubsub::{Kind, Subscriptions, Targets};
use crate::replication::{self, SyncRequest};
use crate::resp::{parse_integer, Frame, Protocol};
use crate::shutdown::SaveOnExit;
use crate::snapshot::{self, SaveError};
use crate::Server;

/// The version we report to clients. Libraries gate features on it, and this
/// workshop implements Redis 7.0's protocol for the commands it has.
const REDIS_VERSION: &str = "7.0.0";

/// Per-connection state that commands can read and change.
pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    name: Option<Bytes>,
    /// Set by QUIT: close the connection once the reply is written.
    pub quitting: bool,
    pub subscriptions: Subscriptions,
    /// Where the PUBLISH about to run sends: found by the connection, which
    /// waited for room there first (`run_commands`), and taken by `publish`.
    pub publish_to: Option<Targets>,
    /// The port a replica announced with REPLCONF listening-port.
    pub listening_port: Option<u16>,
    /// Set by PSYNC or SYNC: the connection turns into a replica's stream.
    pub sync_request: Option<SyncRequest>,
    /// Replays history that was already accepted elsewhere (the master's
    /// stream, the AOF at start), so it may write on a read-only replica,
    /// and no deadline has passed for it: see [`Deadlines::Ignore`].
    pub replaying: bool,
    /// Whether this client ever sent a write. WAIT from a client that has
    /// not waits for nothing. Redis remembers where the stream stood after
    /// the client's last write (`c->woff`); a client that has written waits
    /// here for the whole stream so far: never too early, at times longer.
    pub has_written: bool,
}

impl Client {
    pub fn new(id: u64, addr: SocketAddr) -> Client {
        Client {
            id,
            addr,
            protocol: Protocol::Resp2,
            name: None,
            quitting: false,
            subscriptions: Subscriptions::default(),
            publish_to: None,
            listening_port: None,
            sync_request: None,
            replaying: false,
            has_written: false,
        }
    }

    /// RESP2's subscribed mode: a connection with subscriptions may only
    /// manage them (and PING, QUIT, RESET). A RESP3 connection can tell
    /// pushed messages from replies, so it may run anything.
    fn in_subscribed_mode(&self) -> bool {
        self.protocol == Protocol::Resp2 && self.subscriptions.count() > 0
    }

    /// The moment this client's command runs at, as the keyspace sees it.
    pub fn now(&self, server: &Server) -> Now {
        let deadlines = if self.replaying {
            Deadlines::Ignore
        } else if server.replication.is_replica() {
            Deadlines::Hide
        } else {
            Deadlines::Enforce
        };
        Now {
            instant: Instant::now(),
            deadlines,
        }
    }
}

/// A command handler: the arguments include the command name itself.
type Handler = fn(&[Bytes], &mut Client, &Server) -> Frame;

/// One entry of the command table.
struct Command {
    /// Lowercase, as Redis spells it in error messages.
    name: &'static str,
    /// Redis's convention: `n` means exactly n arguments counting the name,
    /// `-n` means at least n.
    arity: i64,
    /// Redis's command group, shown by `redis-cli` next to the help.
    group: &'static str,
    summary: &'static str,
    run: Handler,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "bgsave",
        arity: -1,
        group: "server",
        summary: "Saves a snapshot to disk in the background.",
        run: bgsave,
    },
    Command {
        name: "command",
        arity: -1,
        group: "server",
        summary: "Describes the commands this server understands.",
        run: command,
    },
    Command {
        name: "config",
        arity: -2,
        group: "server",
        summary: "Reads configuration parameters (CONFIG GET); RESETSTAT, REWRITE.",
        run: config,
    },
    Command {
        name: "dbsize",
        arity: 1,
        group: "server",
        summary: "Returns the number of keys.",
        run: dbsize,
    },
    Command {
        name: "del",
        arity: -2,
        group: "generic",
        summary: "Deletes keys, returning how many existed.",
        run: del,
    },
    Command {
        name: "echo",
        arity: 2,
        group: "connection",
        summary: "Returns the given string.",
        run: echo,
    },
    Command {
        name: "exists",
        arity: -2,
        group: "generic",
        summary: "Counts how many of the given keys exist.",
        run: exists,
    },
    Command {
        name: "expire",
        arity: -3,
        group: "generic",
        summary: "Sets a key's time to live in seconds.",
        run: expire,
    },
    Command {
        name: "expireat",
        arity: -3,
        group: "generic",
        summary: "Sets a key's expiry as a Unix time in seconds.",
        run: expireat,
    },
    Command {
        name: "flushall",
        arity: -1,
        group: "server",
        summary: "Deletes every key.",
        run: flushall,
    },
    Command {
        name: "get",
        arity: 2,
        group: "string",
        summary: "Returns the value of a key.",
        run: get,
    },
    Command {
        name: "hello",
        arity: -1,
        group: "connection",
        summary: "Handshakes with the server, choosing RESP2 or RESP3.",
        run: hello,
    },
    Command {
        name: "info",
        arity: -1,
        group: "server",
        summary: "Describes the server; this step knows the replication section.",
        run: info,
    },
    Command {
        name: "lastsave",
        arity: 1,
        group: "server",
        summary: "Returns the Unix time of the last successful save.",
        run: lastsave,
    },
    Command {
        name: "persist",
        arity: 2,
        group: "generic",
        summary: "Removes a key's expiry.",
        run: persist,
    },
    Command {
        name: "pexpire",
        arity: -3,
        group: "generic",
        summary: "Sets a key's time to live in milliseconds.",
        run: pexpire,
    },
    Command {
        name: "pexpireat",
        arity: -3,
        group: "generic",
        summary: "Sets a key's expiry as a Unix time in milliseconds.",
        run: pexpireat,
    },
    Command {
        name: "ping",
        arity: -1,
        group: "connection",
        summary: "Returns PONG, or the given message.",
        run: ping,
    },
    Command {
        name: "psubscribe",
        arity: -2,
        group: "pubsub",
        summary: "Listens for messages on channels matching glob patterns.",
        run: psubscribe,
    },
    Command {
        name: "psync",
        arity: -3,
        group: "server",
        summary: "Starts replication: a snapshot, then every write (replicas send it).",
        run: psync,
    },
    Command {
        name: "pttl",
        arity: 2,
        group: "generic",
        summary: "Returns a key's time to live in milliseconds.",
        run: pttl,
    },
    Command {
        name: "publish",
        arity: 3,
        group: "pubsub",
        summary: "Posts a message to a channel; returns how many received it.",
        run: publish,
    },
    Command {
        name: "pubsub",
        arity: -2,
        group: "pubsub",
        summary: "Inspects channels and patterns (CHANNELS, NUMSUB, NUMPAT, SHARD*).",
        run: pubsub,
    },
    Command {
        name: "punsubscribe",
        arity: -1,
        group: "pubsub",
        summary: "Stops listening on patterns (all of them if none is given).",
        run: punsubscribe,
    },
    Command {
        name: "quit",
        arity: -1,
        group: "connection",
        summary: "Closes the connection.",
        run: quit,
    },
    Command {
        name: "replconf",
        arity: -1,
        group: "server",
        summary: "Exchanges replication settings and offsets (replicas send it).",
        run: replconf,
    },
    Command {
        name: "replicaof",
        arity: 3,
        group: "server",
        summary: "Follows a master (host port), or stops (NO ONE).",
        run: replicaof,
    },
    Command {
        name: "reset",
        arity: 1,
        group: "connection",
        summary: "Resets the connection: subscriptions, protocol and name.",
        run: reset,
    },
    Command {
        name: "save",
        arity: 1,
        group: "server",
        summary: "Saves a snapshot to disk, replying when it is done.",
        run: save,
    },
    Command {
        name: "select",
        arity: 2,
        group: "connection",
        summary: "Selects a database; this server has only database 0.",
        run: select,
    },
    Command {
        name: "set",
        arity: -3,
        group: "string",
        summary: "Sets a key's value, with an optional condition (NX, XX) and expiry.",
        run: set,
    },
    Command {
        name: "shutdown",
        arity: -1,
        group: "server",
        summary: "Stops the server gracefully, saving as configured (NOSAVE, SAVE).",
        run: shutdown,
    },
    Command {
        name: "slaveof",
        arity: 3,
        group: "server",
        summary: "The old name of REPLICAOF.",
        run: replicaof,
    },
    Command {
        name: "subscribe",
        arity: -2,
        group: "pubsub",
        summary: "Listens for messages on channels.",
        run: subscribe,
    },
    Command {
        name: "sync",
        arity: 1,
        group: "server",
        summary: "The old way to start replication, without offsets.",
        run: sync,
    },
    Command {
        name: "ttl",
        arity: 2,
        group: "generic",
        summary: "Returns a key's time to live in seconds.",
        run: ttl,
    },
    Command {
        name: "unsubscribe",
        arity: -1,
        group: "pubsub",
        summary: "Stops listening on channels (all of them if none is given).",
        run: unsubscribe,
    },
    Command {
        name: "wait",
        arity: 3,
        group: "generic",
        summary: "Waits until replicas have acknowledged every write so far.",
        run: wait,
    },
];

/// Runs one command and returns its reply. `args` is never empty.
pub fn execute(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let Some(command) = COMMANDS
        .iter()
        .find(|c| args[0].eq_ignore_ascii_case(c.name.as_bytes()))
    else {
        return unknown_command(args);
    };
    let argc = args.len() as i64;
    if (command.arity >= 0 && argc != command.arity) || argc < -command.arity {
        return wrong_arity(command.name);
    }
    const ALLOWED_WHILE_SUBSCRIBED: &[&str] = &[
        "subscribe",
        "unsubscribe",
        "psubscribe",
        "punsubscribe",
        "ping",
        "quit",
        "reset",
    ];
    // The commands that change data (Redis flags them "write").
    const WRITES: &[&str] = &[
        "set",
        "del",
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "persist",
        "flushall",
    ];
    let writes = WRITES.contains(&command.name);
    if writes && server.replication.is_replica() && !client.replaying {
        return error("READONLY You can't write against a read only replica.".to_string());
    }
    if client.in_subscribed_mode() && !ALLOWED_WHILE_SUBSCRIBED.contains(&command.name) {
        // Redis 7 looks a subcommand up before this check: an unknown one
        // is refused as such, a known one is named with its command.
        let name = match (
            SUBCOMMANDS.iter().find(|(c, _)| *c == command.name),
            args.get(1),
        ) {
            (Some((_, known)), Some(sub)) => {
                let sub = String::from_utf8_lossy(sub).to_lowercase();
                if !known.contains(&sub.as_str()) {
                    return unknown_subcommand(args);
                }
                format!("{}|{sub}", command.name)
            }
            _ => command.name.to_string(),
        };
        return error(format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
             RESET are allowed in this context"
        ));
    }
    client.has_written |= writes;
    (command.run)(args, client, server)
}

/// The subcommands of the commands that have them, as Redis 7 names them
/// (`config|get`).
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    ("command", &["count", "docs", "info"]),
    ("config", &["get", "resetstat", "rewrite"]),
    (
        "pubsub",
        &[
            "channels",
            "numpat",
            "numsub",
            "shardchannels",
            "shardnumsub",
        ],
    ),
];

/// Redis's reply to a command it does not know, quoting the first arguments.
fn unknown_command(args: &[Bytes]) -> Frame {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        let arg = String::from_utf8_lossy(&arg[..arg.len().min(room)]).into_owned();
        quoted.push_str(&format!("'{arg}' "));
    }
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
    error(format!(
        "ERR unknown command '{name}', with args beginning with: {quoted}"
    ))
}

/// An error reply. User input may be quoted in it, so CR and LF become
/// spaces, as in Redis: a newline would end the reply line early.
fn error(message: String) -> Frame {
    Frame::Error(message.replace(['\r', '\n'], " "))
}

/// `name` is the command as Redis names it: `get`, or `config|get` for a
/// subcommand.
fn wrong_arity(name: &str) -> Frame {
    error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn unknown_subcommand(args: &[Bytes]) -> Frame {
    error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(&args[1][..args[1].len().min(128)]),
        String::from_utf8_lossy(&args[0]).to_uppercase()
    ))
}

fn not_an_integer() -> Frame {
    error("ERR value is not an integer or out of range".to_string())
}

fn invalid_expire_time(command: &str) -> Frame {
    error(format!("ERR invalid expire time in '{command}' command"))
}

fn syntax_error() -> Frame {
    error("ERR syntax error".to_string())
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn ok() -> Frame {
    Frame::Simple("OK".to_string())
}

/// PING [message]
///
/// In subscribed mode the reply is an array, `pong` and the message, so
/// that a client reading pushed messages can tell it apart.
fn ping(args: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    let subscribed = client.in_subscribed_mode();
    match args {
        [_] if subscribed => Frame::Array(vec![bulk("pong"), bulk("")]),
        [_, message] if subscribed => {
            Frame::Array(vec![bulk("pong"), Frame::Bulk(message.clone())])
        }
        [_] => Frame::Simple("PONG".to_string()),
        [_, message] => Frame::Bulk(message.clone()),
        _ => wrong_arity("ping"),
    }
}

/// ECHO message
fn echo(args: &[Bytes], _: &mut Client, _: &Server) -> Frame {
    Frame::Bulk(args[1].clone())
}

/// QUIT: answers OK, then the connection closes.
fn quit(_: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    client.quitting = true;
    ok()
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
///
/// Switches the connection between RESP2 and RESP3 and describes the
/// server. Clients such as redis-py send `HELLO 3` before anything else.
fn hello(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let mut protocol = client.protocol;
    if let Some(version) = args.get(1) {
        protocol = match parse_integer(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return error("NOPROTO unsupported protocol version".to_string()),
            None => {
                return error("ERR Protocol version is not an integer or out of range".to_string())
            }
        };
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let option = &args[i];
        let more = args.len() - 1 - i;
        if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            // There are no users or passwords yet: like a fresh Redis, the
            // "default" user accepts any password and nobody else exists.
            if args[i + 1] != "default" {
                return error(
                    "WRONGPASS invalid username-password pair or user is disabled.".to_string(),
                );
            }
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            let candidate = &args[i + 1];
            if candidate.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                        .to_string(),
                );
            }
            name = Some(candidate.clone());
            i += 2;
        } else {
            return error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }

    // Only a fully valid HELLO changes anything.
    client.protocol = protocol;
    if name.is_some() {
        client.name = name;
    }
    let proto = match protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    Frame::Map(vec![
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk(REDIS_VERSION)),
        (bulk("proto"), Frame::Integer(proto)),
        (bulk("id"), Frame::Integer(client.id as i64)),
        (bulk("mode"), bulk("standalone")),
        (bulk("role"), bulk(role(server))),
        (bulk("modules"), Frame::Array(vec![])),
    ])
}

/// COMMAND, COMMAND COUNT, COMMAND DOCS [name ...], COMMAND INFO [name ...]
///
/// `redis-cli` sends COMMAND DOCS when it starts an interactive session and
/// builds its inline help and hints from the reply.
fn command(args: &[Bytes], _: &mut Client, _: &Server) -> Frame {
    let Some(subcommand) = args.get(1) else {
        return Frame::Array(COMMANDS.iter().map(command_info).collect());
    };
    // The named commands (`None` for a name we do not know), or all of them.
    let named = |names: &[Bytes]| -> Vec<Option<&'static Command>> {
        if names.is_empty() {
            return COMMANDS.iter().map(Some).collect();
        }
        let find = |name: &Bytes| {
            COMMANDS
                .iter()
                .find(|c| name.eq_ignore_ascii_case(c.name.as_bytes()))
        };
        names.iter().map(find).collect()
    };
    match subcommand.to_ascii_uppercase().as_slice() {
        b"COUNT" if args.len() == 2 => Frame::Integer(COMMANDS.len() as i64),
        b"COUNT" => wrong_arity("command|count"),
        // As in Redis: a null in place of each unknown name.
        b"INFO" => Frame::Array(
            named(&args[2..])
                .into_iter()
                .map(|c| c.map_or(Frame::Null, command_info))
                .collect(),
        ),
        // As in Redis: unknown names are left out.
        b"DOCS" => Frame::Map(
            named(&args[2..])
                .into_iter()
                .flatten()
                .map(|c| {
                    let docs = Frame::Map(vec![
                        (bulk("summary"), bulk(c.summary)),
                        (bulk("group"), bulk(c.group)),
                    ]);
                    (bulk(c.name), docs)
                })
                .collect(),
        ),
        _ => unknown_subcommand(args),
    }
}

/// One command as COMMAND and COMMAND INFO describe it: name, arity, flags,
/// first key, last key, key step, ACL categories, tips, key specs and
/// subcommands. We describe the first two; the rest are empty or zero.
fn command_info(command: &Command) -> Frame {
    Frame::Array(vec![
        bulk(command.name),
        Frame::Integer(command.arity),
        Frame::Array(vec![]),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

/// CONFIG GET parameter [parameter ...] | CONFIG RESETSTAT | CONFIG REWRITE
///
/// redis-benchmark asks for `save` and `appendonly` before it starts.
fn config(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    match (args[1].to_ascii_uppercase().as_slice(), args.len()) {
        (b"GET", 3..) => {}
        (b"GET", _) => return wrong_arity("config|get"),
        // No statistics are kept, so none need resetting; and like a Redis
        // started without a config file, there is none to write back.
        (b"RESETSTAT", 2) => return ok(),
        (b"RESETSTAT", _) => return wrong_arity("config|resetstat"),
        (b"REWRITE", 2) => {
            return error("ERR The server is running without a config file".to_string())
        }
        (b"REWRITE", _) => return wrong_arity("config|rewrite"),
        _ => return unknown_subcommand(args),
    }
    let settings = [
        ("bind", server.config.bind.clone()),
        ("port", server.config.port.to_string()),
        ("save", save_points(&server.config.save_points)),
        ("dbfilename", server.config.dbfilename.clone()),
        ("dir", server.config.dir.display().to_string()),
        ("appendonly", yes_no(server.config.appendonly)),
        ("appendfilename", server.config.appendfilename.clone()),
        ("appendfsync", server.config.appendfsync.name().to_string()),
    ];
    // As Redis's `configGetCommand`: a name with `*`, `?` or `[` in it is a
    // glob pattern, matched without regard to case; any other name is
    // looked up as it is, and answered spelled as the client spelled it.
    // Each parameter is answered once, whatever matches it again.
    let mut answered = Vec::new();
    let mut found = Vec::new();
    for wanted in &args[2..] {
        let pattern = wanted
            .iter()
            .any(|b| b"*?[".contains(b))
            .then(|| wanted.to_ascii_lowercase());
        for (name, value) in &settings {
            let spelled = match &pattern {
                Some(pattern) if glob::matches(pattern, name.as_bytes()) => bulk(name),
                None if wanted.eq_ignore_ascii_case(name.as_bytes()) => Frame::Bulk(wanted.clone()),
                _ => continue,
            };
            if !answered.contains(name) {
                answered.push(*name);
                found.push((spelled, bulk(value)));
            }
        }
    }
    Frame::Map(found)
}

/// GET key
fn get(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    match server.db.lock().get(&args[1], client.now(server)) {
        Some(value) => Frame::Bulk(value.clone()),
        None => Frame::Null,
    }
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]
///
/// NX sets only a new key, XX only an existing one; GET returns the value
/// the key had before. Without an expiry option, SET makes the key
/// persistent; KEEPTTL keeps the deadline it had.
fn set(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let (mut only_new, mut only_existing, mut return_old) = (false, false, false);
    let mut keep_ttl = false;
    let mut expiry: Option<(TimeArg, &Bytes)> = None;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let option = option.to_ascii_uppercase();
        let time_arg = match option.as_slice() {
            b"NX" if !only_existing => {
                only_new = true;
                continue;
            }
            b"XX" if !only_new => {
                only_existing = true;
                continue;
            }
            b"GET" => {
                return_old = true;
                continue;
            }
            b"KEEPTTL" if expiry.is_none() => {
                keep_ttl = true;
                continue;
            }
            b"EX" => TimeArg::SECONDS,
            b"PX" => TimeArg::MILLISECONDS,
            b"EXAT" => TimeArg::UNIX_SECONDS,
            b"PXAT" => TimeArg::UNIX_MILLISECONDS,
            _ => return syntax_error(),
        };
        // One expiry option at most, though the same one may be repeated
        // (the last wins), and never together with KEEPTTL.
        let clash = keep_ttl || expiry.is_some_and(|(given, _)| given != time_arg);
        match options.next() {
            Some(value) if !clash => expiry = Some((time_arg, value)),
            _ => return syntax_error(),
        }
    }

    let now = client.now(server);
    let expiry = match expiry {
        None if keep_ttl => Expiry::Keep,
        None => Expiry::Clear,
        Some((time_arg, value)) => {
            let Some(amount) = parse_integer(value) else {
                return not_an_integer();
            };
            let now_us = unix_time_us();
            // SET, unlike EXPIRE, refuses times that are zero or negative.
            match time_arg.to_unix_ms(amount, now_us / 1000) {
                Some(at_ms) if amount > 0 && at_ms > 0 => {
                    Expiry::At(instant_at_unix_ms(at_ms, now.instant, now_us))
                }
                _ => return invalid_expire_time("set"),
            }
        }
    };

    let mut db = server.db.lock();
    let old = db.get(&args[1], now).cloned();
    let allowed = !(only_new && old.is_some() || only_existing && old.is_none());
    if allowed {
        db.set(args[1].clone(), args[2].clone(), expiry);
    }
    drop(db);

    match (return_old, allowed) {
        (true, _) => old.map_or(Frame::Null, Frame::Bulk),
        (false, true) => ok(),
        (false, false) => Frame::Null,
    }
}

/// How a time argument is to be read: its unit, and whether it counts from
/// now (EX, EXPIRE) or from the Unix epoch (EXAT, EXPIREAT).
#[derive(Clone, Copy, PartialEq, Eq)]
struct TimeArg {
    millis_per_unit: i64,
    from_epoch: bool,
}

impl TimeArg {
    const SECONDS: TimeArg = TimeArg {
        millis_per_unit: 1000,
        from_epoch: false,
    };
    const MILLISECONDS: TimeArg = TimeArg {
        millis_per_unit: 1,
        from_epoch: false,
    };
    const UNIX_SECONDS: TimeArg = TimeArg {
        millis_per_unit: 1000,
        from_epoch: true,
    };
    const UNIX_MILLISECONDS: TimeArg = TimeArg {
        millis_per_unit: 1,
        from_epoch: true,
    };

    /// `amount` as an absolute Unix time in milliseconds, or `None` if that
    /// overflows (Redis then answers "invalid expire time").
    fn to_unix_ms(self, amount: i64, now_ms: i64) -> Option<i64> {
        let base = if self.from_epoch { 0 } else { now_ms };
        amount.checked_mul(self.millis_per_unit)?.checked_add(base)
    }
}

/// EXPIRE key seconds [NX | XX | GT | LT]
fn expire(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    expire_generic(args, client, server, "expire", TimeArg::SECONDS)
}

/// PEXPIRE key milliseconds [NX | XX | GT | LT]
fn pexpire(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    expire_generic(args, client, server, "pexpire", TimeArg::MILLISECONDS)
}

/// EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
fn expireat(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    expire_generic(args, client, server, "expireat", TimeArg::UNIX_SECONDS)
}

/// PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
fn pexpireat(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    expire_generic(
        args,
        client,
        server,
        "pexpireat",
        TimeArg::UNIX_MILLISECONDS,
    )
}

/// The four EXPIRE commands, as Redis's `expireGenericCommand`. A time in
/// the past, negative ones included, deletes the key.
fn expire_generic(
    args: &[Bytes],
    client: &Client,
    server: &Server,
    name: &str,
    time_arg: TimeArg,
) -> Frame {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return error(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(option)
                ))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return error(
            "ERR NX and XX, GT or LT options at the same time are not compatible".to_string(),
        );
    }
    if gt && lt {
        return error("ERR GT and LT options at the same time are not compatible".to_string());
    }
    let Some(amount) = parse_integer(&args[2]) else {
        return not_an_integer();
    };

    let now = client.now(server);
    let now_us = unix_time_us();
    let now_ms = now_us / 1000;
    let Some(at_ms) = time_arg.to_unix_ms(amount, now_ms) else {
        return invalid_expire_time(name);
    };

    let mut db = server.db.lock();
    let Some(current) = db.deadline(&args[1], now) else {
        return Frame::Integer(0);
    };
    let current_ms = current.map(|deadline| unix_ms_of(deadline, now.instant, now_us));
    let refused = match current_ms {
        // A key without a deadline counts as expiring never: later than any
        // time, so GT can never beat it and LT always does.
        None => xx || gt,
        Some(current_ms) => nx || (gt && at_ms <= current_ms) || (lt && at_ms >= current_ms),
    };
    if refused {
        return Frame::Integer(0);
    }
    let deadline = instant_at_unix_ms(at_ms, now.instant, now_us);
    if now.is_past(deadline) {
        db.remove(&args[1], now);
    } else {
        // Replayed history may set a deadline that has passed since: the
        // key then expires once the history is over (see `Deadlines`).
        db.set_deadline(&args[1], Some(deadline));
    }
    Frame::Integer(1)
}

/// TTL key: seconds left, rounded to the nearest second as Redis does.
fn ttl(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    time_to_live(args, client, server, |left| {
        (left.as_millis() as i64 + 500) / 1000
    })
}

/// PTTL key: milliseconds left.
fn pttl(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    time_to_live(args, client, server, |left| left.as_millis() as i64)
}

/// -2 for a missing key, -1 for a key that never expires, else the time
/// left in the unit `convert` chooses.
fn time_to_live(
    args: &[Bytes],
    client: &Client,
    server: &Server,
    convert: fn(Duration) -> i64,
) -> Frame {
    let now = client.now(server);
    match server.db.lock().deadline(&args[1], now) {
        None => Frame::Integer(-2),
        Some(None) => Frame::Integer(-1),
        // `saturating_duration_since` gives zero, not a panic, for a
        // deadline a hair in the past.
        Some(Some(deadline)) => {
            Frame::Integer(convert(deadline.saturating_duration_since(now.instant)))
        }
    }
}

/// PERSIST key: 1 if a deadline was removed, 0 if there was none to remove.
fn persist(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let now = client.now(server);
    let mut db = server.db.lock();
    match db.deadline(&args[1], now) {
        Some(Some(_)) => {
            db.set_deadline(&args[1], None);
            Frame::Integer(1)
        }
        _ => Frame::Integer(0),
    }
}

/// DEL key [key ...]
fn del(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let now = client.now(server);
    let mut db = server.db.lock();
    let removed = args[1..].iter().filter(|key| db.remove(key, now)).count();
    Frame::Integer(removed as i64)
}

/// EXISTS key [key ...]: a key named twice is counted twice, as in Redis.
fn exists(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let now = client.now(server);
    let mut db = server.db.lock();
    let found = args[1..].iter().filter(|key| db.contains(key, now)).count();
    Frame::Integer(found as i64)
}

/// DBSIZE
fn dbsize(_: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    Frame::Integer(server.db.lock().len() as i64)
}

/// FLUSHALL [ASYNC | SYNC]: both flavours empty the keyspace right away.
fn flushall(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    match &args[1..] {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {}
        _ => return syntax_error(),
    }
    // Swap the keyspace out under the lock and free it after letting go, so
    // other clients do not wait while millions of entries are deallocated.
    let old = server.db.lock().take();
    drop(old);
    ok()
}

/// SAVE: writes a snapshot and replies once it is on disk.
///
/// Handlers are plain functions, and saving is asynchronous file I/O.
/// `block_in_place` tells tokio that this worker thread is about to block,
/// so it hands the thread's other tasks to another worker; then
/// `block_on` runs the save to completion right here. The client waits, as
/// with Redis's SAVE, but unlike Redis nobody else does.
fn save(_: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let saved = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(snapshot::save(server))
    });
    match saved {
        Ok(()) => ok(),
        Err(SaveError::AlreadyInProgress) => background_save_in_progress(),
        // The reason is in the server's log; Redis too replies a bare ERR.
        Err(SaveError::Failed) => error("ERR".to_string()),
    }
}

/// BGSAVE [SCHEDULE]: starts a snapshot in the background.
fn bgsave(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    match &args[1..] {
        [] => {}
        [option] if option.eq_ignore_ascii_case(b"SCHEDULE") => {}
        _ => return syntax_error(),
    }
    match server.snapshots.request_background_save() {
        Ok(()) => Frame::Simple("Background saving started".to_string()),
        Err(_) => background_save_in_progress(),
    }
}

fn background_save_in_progress() -> Frame {
    error("ERR Background save already in progress".to_string())
}

/// LASTSAVE: the Unix time of the last successful save.
fn lastsave(_: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    Frame::Integer(server.snapshots.last_save())
}

/// Save points as CONFIG GET shows them: "3600 1 300 100".
fn save_points(points: &[snapshot::SavePoint]) -> String {
    points
        .iter()
        .map(|p| format!("{} {}", p.seconds, p.changes))
        .collect::<Vec<_>>()
        .join(" ")
}

/// PUBLISH channel message
fn publish(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    // A PUBLISH that no connection prepared (a master's stream, the AOF)
    // finds its targets now.
    let targets = client
        .publish_to
        .take()
        .unwrap_or_else(|| server.pubsub.targets(&args[1]));
    Frame::Integer(targets.send(args[1].clone(), args[2].clone()) as i64)
}

/// SUBSCRIBE channel [channel ...]
fn subscribe(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    subscribe_to(args, client, server, Kind::Channel)
}

/// PSUBSCRIBE pattern [pattern ...]
fn psubscribe(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    subscribe_to(args, client, server, Kind::Pattern)
}

/// UNSUBSCRIBE [channel ...]
fn unsubscribe(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    unsubscribe_from(args, client, server, Kind::Channel)
}

/// PUNSUBSCRIBE [pattern ...]
fn punsubscribe(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    unsubscribe_from(args, client, server, Kind::Pattern)
}

/// One confirmation per name: `[subscribe, name, subscriptions now]`.
fn subscribe_to(args: &[Bytes], client: &mut Client, server: &Server, kind: Kind) -> Frame {
    let verb = match kind {
        Kind::Channel => "subscribe",
        Kind::Pattern => "psubscribe",
    };
    let confirmations = args[1..]
        .iter()
        .map(|name| {
            let subscriptions = &mut client.subscriptions;
            subscriptions.subscribe(&server.pubsub, kind, name.clone());
            confirmation(verb, Frame::Bulk(name.clone()), subscriptions.count())
        })
        .collect();
    Frame::Sequence(confirmations)
}

/// One confirmation per name, or per current subscription when no name is
/// given; with nothing to leave, a single confirmation naming null.
fn unsubscribe_from(args: &[Bytes], client: &mut Client, server: &Server, kind: Kind) -> Frame {
    let verb = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
    };
    let subscriptions = &mut client.subscriptions;
    let names = match &args[1..] {
        [] => subscriptions.names(kind),
        names => names.to_vec(),
    };
    if names.is_empty() {
        return Frame::Sequence(vec![confirmation(verb, Frame::Null, subscriptions.count())]);
    }
    let confirmations = names
        .into_iter()
        .map(|name| {
            subscriptions.unsubscribe(&server.pubsub, kind, &name);
            confirmation(verb, Frame::Bulk(name), subscriptions.count())
        })
        .collect();
    Frame::Sequence(confirmations)
}

fn confirmation(verb: &str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![bulk(verb), name, Frame::Integer(count as i64)])
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT
/// | SHARDCHANNELS [pattern] | SHARDNUMSUB [channel ...]
fn pubsub(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let pubsub = &server.pubsub;
    match args[1].to_ascii_uppercase().as_slice() {
        b"CHANNELS" if args.len() <= 3 => {
            let pattern = args.get(2).map(|p| &p[..]);
            Frame::Array(
                pubsub
                    .channels(pattern)
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            )
        }
        // Shard channels (SSUBSCRIBE) are not in this workshop, so there
        // are none, and none has subscribers (SHARDNUMSUB below).
        b"SHARDCHANNELS" if args.len() <= 3 => Frame::Array(vec![]),
        b"CHANNELS" | b"SHARDCHANNELS" => error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&args[1])
        )),
        b"NUMSUB" => Frame::Array(
            args[2..]
                .iter()
                .flat_map(|channel| {
                    let count = pubsub.subscribers(channel) as i64;
                    [Frame::Bulk(channel.clone()), Frame::Integer(count)]
                })
                .collect(),
        ),
        b"NUMPAT" if args.len() == 2 => Frame::Integer(pubsub.pattern_count() as i64),
        b"NUMPAT" => wrong_arity("pubsub|numpat"),
        b"SHARDNUMSUB" => Frame::Array(
            args[2..]
                .iter()
                .flat_map(|channel| [Frame::Bulk(channel.clone()), Frame::Integer(0)])
                .collect(),
        ),
        _ => unknown_subcommand(args),
    }
}

/// RESET: leaves every subscription, returns to RESP2 and forgets the
/// client's name, as if the connection were new.
fn reset(_: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    client.subscriptions.clear(&server.pubsub);
    client.protocol = Protocol::Resp2;
    client.name = None;
    Frame::Simple("RESET".to_string())
}

fn role(server: &Server) -> &'static str {
    if server.replication.is_replica() {
        "replica"
    } else {
        "master"
    }
}

/// PSYNC replicationid offset: whatever the replica names, it gets a full
/// resync. The connection answers it once this batch of commands is done.
fn psync(_: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    client.sync_request = Some(SyncRequest::Psync);
    Frame::Sequence(vec![])
}

/// SYNC: the pre-2.8 handshake, a snapshot with no offsets.
fn sync(_: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    client.sync_request = Some(SyncRequest::Sync);
    Frame::Sequence(vec![])
}

/// REPLCONF option value [option value ...], sent by a replica before
/// PSYNC, checked as Redis's `replconfCommand` checks it. We keep
/// listening-port (for INFO) and accept the options a replica or
/// `redis-cli --rdb` sends. A master never answers REPLCONF ACK: the
/// replica's stream has no replies.
fn replconf(args: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    if args.len() % 2 == 0 {
        return syntax_error();
    }
    for pair in args[1..].chunks(2) {
        let (option, value) = (&pair[0], &pair[1]);
        match option.to_ascii_lowercase().as_slice() {
            // Redis takes any integer here; one that is no port is not shown.
            b"listening-port" => match parse_integer(value) {
                Some(port) => client.listening_port = u16::try_from(port).ok(),
                None => return not_an_integer(),
            },
            b"ip-address" | b"capa" => {}
            // A snapshot without the stream after it: the client that asks
            // (`redis-cli --rdb`) hangs up once it has the snapshot anyway.
            b"rdb-only" => match parse_integer(value) {
                Some(0 | 1) => {}
                Some(_) => {
                    return error(
                        "ERR value is out of range, value must between 0 and 1".to_string(),
                    )
                }
                None => return not_an_integer(),
            },
            b"ack" | b"getack" => return Frame::Sequence(vec![]),
            _ => {
                return error(format!(
                    "ERR Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(option)
                ))
            }
        }
    }
    ok()
}

/// REPLICAOF host port | REPLICAOF NO ONE (and SLAVEOF, its old name).
fn replicaof(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let (host, port) = (&args[1], &args[2]);
    let replication = &server.replication;
    if host.eq_ignore_ascii_case(b"NO") && port.eq_ignore_ascii_case(b"ONE") {
        replication.follow(None);
        return ok();
    }
    let port = match parse_integer(port).and_then(|p| u16::try_from(p).ok()) {
        Some(port) => port,
        None => return error("ERR Invalid master port".to_string()),
    };
    let master = replication::MasterAddr {
        host: String::from_utf8_lossy(host).into_owned(),
        port,
    };
    if replication.follow(Some(master)) {
        ok()
    } else {
        Frame::Simple("OK Already connected to specified master".to_string())
    }
}

/// WAIT numreplicas timeout
///
/// Blocks this client (and only this one: see SAVE) until enough replicas
/// acknowledge every write made so far, or the timeout passes.
fn wait(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    if server.replication.is_replica() {
        return error(
            "ERR WAIT cannot be used with replica instances. Please also note that since \
             Redis 4.0 if a replica is configured to be writable (which is not the default) \
             writes to replicas are just local and are not propagated."
                .to_string(),
        );
    }
    let Some(wanted) = parse_integer(&args[1]) else {
        return not_an_integer();
    };
    let timeout = match parse_integer(&args[2]) {
        Some(ms) if ms < 0 => return error("ERR timeout is negative".to_string()),
        Some(ms) => Duration::from_millis(ms as u64),
        None => return error("ERR timeout is not an integer or out of range".to_string()),
    };
    let wanted = usize::try_from(wanted).unwrap_or(0);
    // A client that has written waits for the whole stream so far.
    let target = if client.has_written {
        server.db.lock().repl_offset()
    } else {
        0
    };
    let acked = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(replication::wait_for_replicas(
            server, target, wanted, timeout,
        ))
    });
    Frame::Integer(acked as i64)
}

/// INFO [section ...]: the "server" and "replication" sections.
fn info(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let wants = |name: &str| {
        args.len() == 1
            || args[1..].iter().any(|s| {
                s.eq_ignore_ascii_case(name.as_bytes())
                    || s.eq_ignore_ascii_case(b"all")
                    || s.eq_ignore_ascii_case(b"default")
                    || s.eq_ignore_ascii_case(b"everything")
            })
    };
    let mut text = String::new();
    if wants("server") {
        text.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
             process_id:{}\r\ntcp_port:{}\r\n\r\n",
            std::process::id(),
            server.listening_port
        ));
    }
    if wants("replication") {
        let offset = server.db.lock().repl_offset();
        text.push_str(&server.replication.info(offset));
    }
    Frame::Bulk(Bytes::from(text))
}

/// SELECT index: there is only database 0, as in a Redis started with
/// `databases 1`. A master's stream begins with SELECT 0.
fn select(args: &[Bytes], _: &mut Client, _: &Server) -> Frame {
    match parse_integer(&args[1]) {
        Some(0) => ok(),
        // Redis reads the index as a C int first (`getIntFromObjectOrReply`).
        Some(n) if i32::try_from(n).is_err() => error(
            "ERR value is out of range, value must between -2147483648 and 2147483647".to_string(),
        ),
        Some(_) => error("ERR DB index is out of range".to_string()),
        None => not_an_integer(),
    }
}

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE]
///
/// Starts the same graceful shutdown as SIGTERM. Like Redis, it sends no
/// reply: the connection simply closes as the server goes. NOW and FORCE
/// change nothing here, since we never wait for lagging replicas and
/// always exit.
fn shutdown(args: &[Bytes], client: &mut Client, server: &Server) -> Frame {
    let mut save = SaveOnExit::IfConfigured;
    for option in &args[1..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NOSAVE" if save != SaveOnExit::Always => save = SaveOnExit::Never,
            b"SAVE" if save != SaveOnExit::Never => save = SaveOnExit::Always,
            b"NOW" | b"FORCE" => {}
            _ => return syntax_error(),
        }
    }
    server.shutdown.request(save);
    client.quitting = true;
    Frame::Sequence(vec![])
}
