//! The protocol, as step 02 introduces it: RESP and inline requests,
//! pipelining, protocol errors, HELLO/RESP3, and the tools that speak it.

use std::io::Write;
use std::thread;

use super::run_redis_benchmark;
use crate::{redis_cli, Raw, Server};

pub fn ping_and_echo_through_a_client_library(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut conn = server.client();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let hello: String = redis::cmd("PING").arg("hello").query(&mut conn).unwrap();
    assert_eq!(hello, "hello");

    // Binary safe: CR, LF and every byte value come back unchanged.
    let binary: Vec<u8> = b"a\r\nb\r\n".iter().copied().chain(0..=255).collect();
    let echoed: Vec<u8> = redis::cmd("ECHO").arg(&binary).query(&mut conn).unwrap();
    assert_eq!(echoed, binary);

    let megabyte: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let echoed: Vec<u8> = redis::cmd("ECHO").arg(&megabyte).query(&mut conn).unwrap();
    assert!(echoed == megabyte, "a 1 MB ECHO came back different");
}

pub fn commands_are_case_insensitive(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.send(b"*1\r\n$4\r\npInG\r\n*2\r\n$4\r\necho\r\n$1\r\nx\r\nPiNg\r\n");
    raw.expect(b"+PONG\r\n$1\r\nx\r\n+PONG\r\n");
}

pub fn errors_match_redis_word_for_word(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*2\r\n$6\r\nNOSUCH\r\n$3\r\narg\r\n",
            b"-ERR unknown command 'NOSUCH', with args beginning with: 'arg' \r\n",
        ),
        (
            b"*3\r\n$2\r\nNO\r\n$4\r\na\r\nb\r\n$0\r\n\r\n",
            b"-ERR unknown command 'NO', with args beginning with: 'a  b' '' \r\n",
        ),
        (
            b"*1\r\n$4\r\nECHO\r\n",
            b"-ERR wrong number of arguments for 'echo' command\r\n",
        ),
        (
            b"PING a b\r\n",
            b"-ERR wrong number of arguments for 'ping' command\r\n",
        ),
        (
            b"COMMAND NOPE\r\n",
            b"-ERR unknown subcommand 'NOPE'. Try COMMAND HELP.\r\n",
        ),
        (
            b"CONFIG GET\r\n",
            b"-ERR wrong number of arguments for 'config|get' command\r\n",
        ),
        (b"CONFIG RESETSTAT\r\n", b"+OK\r\n"),
        (
            b"CONFIG RESETSTAT now\r\n",
            b"-ERR wrong number of arguments for 'config|resetstat' command\r\n",
        ),
        (
            b"CONFIG REWRITE\r\n",
            b"-ERR The server is running without a config file\r\n",
        ),
    ];
    for (request, reply) in cases {
        raw.send(request);
        raw.expect(reply);
    }
    // Errors in commands are ordinary replies: the connection stays usable.
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
}

pub fn a_command_split_into_single_bytes_is_parsed(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut slow = server.raw();
    let mut other = server.raw();
    let request = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
    for (i, byte) in request.iter().enumerate() {
        slow.send(&[*byte]);
        if i == request.len() / 2 {
            // A half-sent command holds up nobody else.
            other.send(b"PING\r\n");
            other.expect(b"+PONG\r\n");
        }
    }
    slow.expect(b"$11\r\nhello world\r\n");
}

pub fn a_thousand_pipelined_commands_get_a_thousand_replies(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..1000 {
        let word = format!("message-{i}");
        write!(
            requests,
            "*2\r\n$4\r\nECHO\r\n${}\r\n{word}\r\n",
            word.len()
        )
        .unwrap();
        write!(replies, "${}\r\n{word}\r\n", word.len()).unwrap();
    }
    raw.send(&requests);
    raw.expect(&replies);
}

pub fn inline_commands_work_as_typed_into_nc(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    raw.send(b"echo \"two words\\x21\"\n");
    raw.expect(b"$10\r\ntwo words!\r\n");
    raw.send(b"ECHO 'single quoted'\r\n");
    raw.expect(b"$13\r\nsingle quoted\r\n");
}

pub fn empty_requests_are_ignored(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    // redis-cli --pipe ends its input with exactly this kind of blank line.
    raw.send(b"\r\n   \r\n*0\r\n*-1\r\nPING\r\n");
    raw.expect(b"+PONG\r\n");
}

pub fn protocol_errors_are_answered_then_the_connection_closes(bin: &str) {
    let server = Server::start(bin, &[]);
    let long_line = vec![b'a'; 70 * 1024];
    let long_count = [&b"*"[..], &[b'1'; 70 * 1024]].concat();
    let long_bulk_count = [&b"*1\r\n$"[..], &[b'1'; 70 * 1024]].concat();
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"ECHO \"unterminated\r\n", "unbalanced quotes in request"),
        (b"ECHO \"a\"b\r\n", "unbalanced quotes in request"),
        (&long_line, "too big inline request"),
        (&long_count, "too big mbulk count string"),
        (&long_bulk_count, "too big bulk count string"),
    ];
    for (request, message) in cases {
        let mut raw = server.raw();
        raw.send(request);
        raw.expect(format!("-ERR Protocol error: {message}\r\n").as_bytes());
        raw.expect_closed();
    }
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
}

pub fn claimed_lengths_do_not_allocate_memory(bin: &str) {
    let server = Server::start(bin, &[]);
    // Address space, not resident memory: a buffer reserved for a claim is
    // not resident until written, yet it is the allocation we must not make.
    let before = server.memory_kib("VmSize");
    // Each claims the most Redis allows and then sends nothing more. Ten
    // claims honoured up front would reserve tens of gigabytes.
    let mut liars: Vec<Raw> = (0..10).map(|_| server.raw()).collect();
    for (i, liar) in liars.iter_mut().enumerate() {
        if i % 2 == 0 {
            liar.send(b"*1\r\n$536870912\r\nabc");
        } else {
            liar.send(b"*2147483647\r\n$1\r\nx\r\n");
        }
    }
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    let grown = server.memory_kib("VmSize").saturating_sub(before);
    assert!(
        grown < 512 * 1024,
        "VmSize grew by {grown} KiB for claims alone"
    );
}

pub fn a_client_over_the_query_buffer_limit_is_cut_off(bin: &str) {
    let server = Server::start(bin, &["--client-query-buffer-limit", "1mb"]);
    // Just under the limit is fine...
    let mut raw = server.raw();
    let value = vec![b'v'; 1000 * 1000];
    let mut request = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", value.len()).into_bytes();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n");
    raw.send(&request);
    raw.expect(format!("${}\r\n", value.len()).as_bytes());
    assert!(raw.read_exact(value.len() + 2).starts_with(b"vvv"));

    // ...but a command still incomplete after 2 MB is cut off, unanswered.
    let mut greedy = server.raw();
    greedy.send(b"*2\r\n$4\r\nECHO\r\n$500000000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        // The server may hang up halfway: that is the point.
        if greedy.stream().write_all(&chunk).is_err() {
            break;
        }
    }
    greedy.expect_closed();
    raw.converse(&[("PING", "+PONG")]);
}

pub fn hello_switches_between_resp2_and_resp3(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.send(b"HELLO 3\r\n");
    assert_eq!(raw.read_line(), "%7");
    let mut fields = Vec::new();
    for _ in 0..7 {
        let key = read_bulk(&mut raw);
        let value = raw.read_line();
        let value = match value.strip_prefix('$') {
            Some(_) => raw.read_line(),
            None => value,
        };
        fields.push((key, value));
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("server").as_deref(), Some("redis"));
    assert_eq!(field("proto").as_deref(), Some(":3"));
    assert_eq!(field("mode").as_deref(), Some("standalone"));
    assert_eq!(field("role").as_deref(), Some("master"));
    assert!(field("version").is_some() && field("id").is_some());
    assert_eq!(field("modules").as_deref(), Some("*0"));

    // Back to RESP2: the same fields, as a flat array of keys and values.
    raw.send(b"HELLO 2\r\n");
    assert_eq!(raw.read_line(), "*14");
    for _ in 0..14 {
        let line = raw.read_line();
        if line.starts_with('$') {
            raw.read_line();
        }
    }
    for (request, reply) in [
        (
            &b"HELLO 4\r\n"[..],
            &b"-NOPROTO unsupported protocol version\r\n"[..],
        ),
        (
            b"HELLO x\r\n",
            b"-ERR Protocol version is not an integer or out of range\r\n",
        ),
        (
            b"HELLO 3 FOO\r\n",
            b"-ERR Syntax error in HELLO option 'FOO'\r\n",
        ),
        // User names are case-sensitive: there is a "default", no "DEFAULT".
        (
            b"HELLO 3 AUTH DEFAULT secret\r\n",
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
    ] {
        raw.send(request);
        raw.expect(reply);
    }
}

fn read_bulk(raw: &mut Raw) -> String {
    let header = raw.read_line();
    assert!(
        header.starts_with('$'),
        "expected a bulk string, got {header}"
    );
    raw.read_line()
}

pub fn a_resp3_client_library_works(bin: &str) {
    // redis-rs in RESP3 mode opens with HELLO 3, as redis-py 8 does.
    let server = Server::start(bin, &[]);
    let url = format!("redis://{}/?protocol=resp3", server.addr());
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = redis::cmd("ECHO")
        .arg("over resp3")
        .query(&mut conn)
        .unwrap();
    assert_eq!(echoed, "over resp3");
}

pub fn quit_closes_the_connection(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.send(b"QUIT\r\nPING\r\n");
    raw.expect(b"+OK\r\n");
    raw.expect_closed();
}

pub fn command_docs_describes_commands_for_redis_cli(bin: &str) {
    // redis-cli builds its interactive help from this reply and trusts every
    // entry to carry a summary and a group.
    let server = Server::start(bin, &[]);
    let mut conn = server.client();
    let docs: redis::Value = redis::cmd("COMMAND").arg("DOCS").query(&mut conn).unwrap();
    let redis::Value::Array(entries) = docs else {
        panic!("COMMAND DOCS should be a flat array in RESP2, got {docs:?}");
    };
    assert!(entries.len() >= 2 && entries.len() % 2 == 0);
    for pair in entries.chunks(2) {
        let redis::Value::Array(fields) = &pair[1] else {
            panic!("docs of {:?} should be an array", pair[0]);
        };
        let keys: Vec<String> = fields
            .iter()
            .step_by(2)
            .map(|k| redis::from_redis_value(k).unwrap())
            .collect();
        assert!(
            keys.contains(&"summary".to_string()),
            "{:?}: {keys:?}",
            pair[0]
        );
        assert!(
            keys.contains(&"group".to_string()),
            "{:?}: {keys:?}",
            pair[0]
        );
    }
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut conn).unwrap();
    assert_eq!(count as usize, entries.len() / 2);

    // Naming commands: DOCS leaves unknown ones out, INFO answers null.
    let mut raw = server.raw();
    raw.send(b"COMMAND DOCS nosuch\r\nCOMMAND INFO ping nosuch\r\n");
    raw.expect(b"*0\r\n");
    raw.expect(b"*2\r\n*10\r\n$4\r\nping\r\n:-1\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n$-1\r\n");
}

pub fn redis_cli_one_shot_commands(bin: &str) {
    let server = Server::start(bin, &[]);
    let Some(out) = redis_cli(server.port(), &["PING"], None) else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PONG\n");
    let out = redis_cli(server.port(), &["ECHO", "hello world"], None).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");
}

pub fn redis_cli_pipe_mode(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut input = Vec::new();
    for i in 0..10_000 {
        write!(input, "ECHO {i}\r\n").unwrap();
    }
    let Some(out) = redis_cli(server.port(), &["--pipe"], Some(&input)) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-cli --pipe failed: {text}");
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
}

/// Fifty clients, each with its own conversation, all at once.
pub fn many_clients_at_once(bin: &str) {
    let server = Server::start(bin, &[]);
    let addr = server.addr();
    let workers: Vec<_> = (0..50)
        .map(|c| {
            thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                for i in 0..100 {
                    let word = format!("{c}:{i}");
                    raw.send(format!("ECHO {word}\r\n").as_bytes());
                    raw.expect(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a client thread failed");
    }
}

pub fn redis_benchmark_pings(bin: &str) {
    run_redis_benchmark(bin, "ping", &["PING_INLINE", "PING_MBULK"]);
}
