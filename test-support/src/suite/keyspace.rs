//! The keyspace, as step 03 introduces it: GET, SET (NX, XX, GET), DEL,
//! EXISTS, DBSIZE and FLUSHALL, shared by every connection.

use std::io::Write;
use std::thread;

use super::run_redis_benchmark;
use crate::{redis_cli, Raw, Server};

pub fn set_then_get_through_a_client_library(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut conn = server.client();
    let missing: Option<String> = redis::cmd("GET").arg("greeting").query(&mut conn).unwrap();
    assert_eq!(missing, None);
    let ok: String = redis::cmd("SET")
        .arg("greeting")
        .arg("hi")
        .query(&mut conn)
        .unwrap();
    assert_eq!(ok, "OK");
    let got: String = redis::cmd("GET").arg("greeting").query(&mut conn).unwrap();
    assert_eq!(got, "hi");
    // Another connection sees the same keyspace.
    let mut other = server.client();
    let got: String = redis::cmd("GET").arg("greeting").query(&mut other).unwrap();
    assert_eq!(got, "hi");
}

pub fn keys_and_values_are_binary_safe(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut conn = server.client();
    let key: Vec<u8> = b"key\r\nwith\0bytes\xff".to_vec();
    let value: Vec<u8> = (0..=255).chain(b"\r\n\r\n".iter().copied()).collect();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query(&mut conn)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    assert_eq!(got, value);

    let megabyte: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&megabyte)
        .query(&mut conn)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut conn).unwrap();
    assert!(got == megabyte, "a 1 MB value came back different");
}

pub fn set_options_nx_xx_get_reply_as_redis(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let steps: &[(&str, &str)] = &[
        ("SET k v1 XX", "$-1"),
        ("GET k", "$-1"),
        ("SET k v1 NX", "+OK"),
        ("SET k v2 NX", "$-1"),
        ("SET k v2 XX", "+OK"),
        ("SET k v3 GET", "$2\r\nv2"),
        ("SET k v4 nx get", "$2\r\nv3"),
        ("GET k", "$2\r\nv3"),
        ("SET new v XX GET", "$-1"),
        ("EXISTS new", ":0"),
        ("SET new v NX GET", "$-1"),
        ("GET new", "$1\r\nv"),
        ("SET k v NX XX", "-ERR syntax error"),
        ("SET k v XX NX", "-ERR syntax error"),
        ("SET k v BOGUS", "-ERR syntax error"),
    ];
    raw.converse(steps);
}

pub fn del_exists_dbsize_flushall(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let steps: &[(&str, &str)] = &[
        ("DBSIZE", ":0"),
        ("SET a 1", "+OK"),
        ("SET b 2", "+OK"),
        ("SET c 3", "+OK"),
        ("EXISTS a b nope a", ":3"),
        ("DBSIZE", ":3"),
        ("DEL a a nope", ":1"),
        ("DBSIZE", ":2"),
        ("FLUSHALL", "+OK"),
        ("DBSIZE", ":0"),
        ("SET a 1", "+OK"),
        ("FLUSHALL ASYNC", "+OK"),
        ("EXISTS a", ":0"),
        ("FLUSHALL sync", "+OK"),
        ("FLUSHALL NOW", "-ERR syntax error"),
    ];
    raw.converse(steps);
}

pub fn keyspace_errors_match_redis_word_for_word(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("GET", "-ERR wrong number of arguments for 'get' command"),
        (
            "GET a b",
            "-ERR wrong number of arguments for 'get' command",
        ),
        ("SET a", "-ERR wrong number of arguments for 'set' command"),
        ("DEL", "-ERR wrong number of arguments for 'del' command"),
        (
            "EXISTS",
            "-ERR wrong number of arguments for 'exists' command",
        ),
        (
            "DBSIZE x",
            "-ERR wrong number of arguments for 'dbsize' command",
        ),
    ]);
}

pub fn concurrent_writers_lose_nothing(bin: &str) {
    let server = Server::start(bin, &[]);
    let addr = server.addr();
    let writers: Vec<_> = (0..20)
        .map(|w| {
            thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                for i in 0..500 {
                    raw.send(format!("SET key:{w}:{i} {i}\r\n").as_bytes());
                    raw.expect(b"+OK\r\n");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer failed");
    }
    let mut conn = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 20 * 500);
    let value: String = redis::cmd("GET").arg("key:7:321").query(&mut conn).unwrap();
    assert_eq!(value, "321");
}

pub fn redis_cli_pipe_mass_insert(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut input = Vec::new();
    for i in 0..10_000 {
        let (key, value) = (format!("key:{i}"), format!("value:{i}"));
        write!(
            input,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        )
        .unwrap();
    }
    let Some(out) = redis_cli(server.port(), &["--pipe"], Some(&input)) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-cli --pipe failed: {text}");
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    let out = redis_cli(server.port(), &["DBSIZE"], None).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10000\n");
    let out = redis_cli(server.port(), &["GET", "key:9999"], None).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value:9999\n");
}

pub fn redis_benchmark_sets_and_gets(bin: &str) {
    run_redis_benchmark(bin, "set,get", &["SET", "GET"]);
}
