//! The commands this step understands, and the table that describes them.
//! New in step 03: GET, SET, DEL, EXISTS, DBSIZE and FLUSHALL.
//!
//! Like Redis's own command table (`src/commands.c`, generated from the JSON
//! files in `src/commands/`), every command is one entry: its name, its
//! arity, a one-line summary, and the function that runs it. `execute` looks
//! the name up and checks the arity; handlers only ever see well-sized input.

use bytes::Bytes;

use crate::resp::{Frame, Protocol};
use crate::Server;

/// The version we report to clients. Libraries gate features on it, and this
/// workshop implements Redis 7.0's protocol for the commands it has.
const REDIS_VERSION: &str = "7.0.0";

/// Per-connection state that commands can read and change.
pub struct Client {
    pub id: u64,
    pub protocol: Protocol,
    name: Option<Bytes>,
    /// Set by QUIT: close the connection once the reply is written.
    pub quitting: bool,
}

impl Client {
    pub fn new(id: u64) -> Client {
        Client {
            id,
            protocol: Protocol::Resp2,
            name: None,
            quitting: false,
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
        name: "ping",
        arity: -1,
        group: "connection",
        summary: "Returns PONG, or the given message.",
        run: ping,
    },
    Command {
        name: "quit",
        arity: -1,
        group: "connection",
        summary: "Closes the connection.",
        run: quit,
    },
    Command {
        name: "set",
        arity: -3,
        group: "string",
        summary:
            "Sets a key's value (NX: only if new, XX: only if present, GET: return the old one).",
        run: set,
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
    (command.run)(args, client, server)
}

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

fn syntax_error() -> Frame {
    error("ERR syntax error".to_string())
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn ok() -> Frame {
    Frame::Simple("OK".to_string())
}

/// PING [message]
fn ping(args: &[Bytes], _: &mut Client, _: &Server) -> Frame {
    match args {
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
fn hello(args: &[Bytes], client: &mut Client, _: &Server) -> Frame {
    let mut protocol = client.protocol;
    if let Some(version) = args.get(1) {
        protocol = match crate::resp::parse_integer(version) {
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
        (bulk("role"), bulk("master")),
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
/// redis-benchmark asks for `save` and `appendonly` before it starts. This
/// step has no persistence, so both say so.
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
        ("save", String::new()),
        ("appendonly", "no".to_string()),
    ];
    let mut found = Vec::new();
    for wanted in &args[2..] {
        for (name, value) in &settings {
            let already = found.iter().any(|(n, _)| n == &bulk(name));
            if wanted.eq_ignore_ascii_case(name.as_bytes()) && !already {
                found.push((bulk(name), bulk(value)));
            }
        }
    }
    Frame::Map(found)
}

/// GET key
fn get(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    match server.db.lock().get(&args[1]) {
        Some(value) => Frame::Bulk(value.clone()),
        None => Frame::Null,
    }
}

/// SET key value [NX | XX] [GET]
///
/// NX sets only a new key, XX only an existing one; GET returns the value
/// the key had before. Expiry options (EX, PX, ...) arrive in step 04.
fn set(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let (mut only_new, mut only_existing, mut return_old) = (false, false, false);
    for option in &args[3..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" if !only_existing => only_new = true,
            b"XX" if !only_new => only_existing = true,
            b"GET" => return_old = true,
            _ => return syntax_error(),
        }
    }

    let mut db = server.db.lock();
    let old = db.get(&args[1]).cloned();
    let allowed = !(only_new && old.is_some() || only_existing && old.is_none());
    if allowed {
        db.insert(args[1].clone(), args[2].clone());
    }
    drop(db);

    match (return_old, allowed) {
        (true, _) => old.map_or(Frame::Null, Frame::Bulk),
        (false, true) => ok(),
        (false, false) => Frame::Null,
    }
}

/// DEL key [key ...]
fn del(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let mut db = server.db.lock();
    let removed = args[1..]
        .iter()
        .filter(|key| db.remove(*key).is_some())
        .count();
    Frame::Integer(removed as i64)
}

/// EXISTS key [key ...]: a key named twice is counted twice, as in Redis.
fn exists(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    let db = server.db.lock();
    let found = args[1..].iter().filter(|key| db.contains_key(*key)).count();
    Frame::Integer(found as i64)
}

/// DBSIZE
fn dbsize(_: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    Frame::Integer(server.db.lock().len() as i64)
}

/// FLUSHALL [ASYNC | SYNC]: both flavours empty the map right away.
fn flushall(args: &[Bytes], _: &mut Client, server: &Server) -> Frame {
    match &args[1..] {
        [] => {}
        [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {}
        _ => return syntax_error(),
    }
    // Swap the map out under the lock and free it after letting go, so other
    // clients do not wait while millions of entries are deallocated.
    let old = std::mem::take(&mut *server.db.lock());
    drop(old);
    ok()
}
