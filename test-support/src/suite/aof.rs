//! The append-only file, as step 05 introduces it: every acknowledged write
//! survives a restart or a crash, expiry times are stored absolute, bad
//! files are handled as Redis handles them, and Redis's own tools accept
//! the file.

use std::io::Write;
use std::time::{Duration, Instant};

use redis::Connection;

use crate::{run_to_exit, tool_available, wait_until, RedisServer, Server, TempDir};

/// The AOF checks of step 05, for every server step from 05 on.
#[macro_export]
macro_rules! aof_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, aof;
            a_restart_replays_every_acknowledged_write,
            expiry_is_stored_as_an_absolute_time,
            a_deadline_changed_in_time_outlives_the_old_one,
            reads_are_never_appended,
            a_truncated_last_command_is_dropped_with_a_warning,
            corruption_before_the_end_stops_the_start,
            a_crash_loses_no_acknowledged_write_with_appendfsync_always,
            redis_check_aof_accepts_the_file,
            redis_server_loads_the_file,
            without_appendonly_there_is_no_file,
        );
    };
}

const AOF: &str = "appendonly.aof";

fn start(bin: &str, dir: &TempDir, fsync: &str) -> Server {
    let args = [
        "--dir",
        dir.arg(),
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
    ];
    Server::start(bin, &args)
}

fn run(conn: &mut Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(conn)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Every key's value and time to live (to the second), in a fixed order.
fn snapshot(conn: &mut Connection, keys: &[&str]) -> Vec<(String, Option<String>, i64)> {
    keys.iter()
        .map(|key| {
            let value: Option<String> = redis::cmd("GET").arg(key).query(conn).unwrap();
            let ttl: i64 = redis::cmd("TTL").arg(key).query(conn).unwrap();
            (key.to_string(), value, ttl)
        })
        .collect()
}

/// Writes of every kind, some of which cancel others.
fn write_a_history(conn: &mut Connection) {
    for args in [
        &["SET", "plain", "1"][..],
        &["SET", "gone", "x"],
        &["DEL", "gone"],
        &["SET", "ttl", "2", "EX", "1000"],
        &["SET", "kept", "3", "EX", "2000"],
        &["SET", "kept", "4", "KEEPTTL"],
        &["SET", "persisted", "5", "PX", "3000000"],
        &["PERSIST", "persisted"],
        &["SET", "expired", "6"],
        &["EXPIRE", "expired", "-1"],
        &["SET", "nx", "7", "NX"],
        &["SET", "nx", "not this", "NX"],
        &["SET", "later", "8"],
        &["PEXPIREAT", "later", "99999999999999"],
        &["SET", "binary", "a\r\nb"],
    ] {
        run(conn, args);
    }
}

const HISTORY_KEYS: &[&str] = &[
    "plain",
    "gone",
    "ttl",
    "kept",
    "persisted",
    "expired",
    "nx",
    "later",
    "binary",
];

pub fn a_restart_replays_every_acknowledged_write(bin: &str) {
    let dir = TempDir::new("aof-replay");
    let mut server = start(bin, &dir, "everysec");
    let mut conn = server.client();
    write_a_history(&mut conn);
    let before = snapshot(&mut conn, HISTORY_KEYS);
    server.kill();

    let server = start(bin, &dir, "everysec");
    let after = snapshot(&mut server.client(), HISTORY_KEYS);
    for ((key, value, ttl), (_, value_after, ttl_after)) in before.iter().zip(&after) {
        assert_eq!(value, value_after, "value of {key}");
        assert!(
            (ttl - ttl_after).abs() <= 3,
            "TTL of {key}: {ttl} then {ttl_after}"
        );
    }
    // FLUSHALL is replayed too, and what follows it.
    let mut conn = server.client();
    run(&mut conn, &["FLUSHALL"]);
    run(&mut conn, &["SET", "after-flush", "1"]);
    drop(server);
    let server = start(bin, &dir, "everysec");
    let mut conn = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 1);
}

pub fn expiry_is_stored_as_an_absolute_time(bin: &str) {
    let dir = TempDir::new("aof-absolute");
    let mut server = start(bin, &dir, "everysec");
    let mut conn = server.client();
    run(&mut conn, &["SET", "soon", "v", "PX", "500"]);
    let soon_due = Instant::now() + Duration::from_millis(500);
    run(&mut conn, &["SET", "later", "v", "EX", "100"]);
    server.kill();

    // Replaying "SET soon v PX 500" now would revive the key for another
    // half second; the file must say when it expires, not for how long.
    wait_until("the short deadline has passed", || {
        Instant::now() > soon_due
    });
    let server = start(bin, &dir, "everysec");
    let mut conn = server.client();
    let exists: i64 = redis::cmd("EXISTS").arg("soon").query(&mut conn).unwrap();
    assert_eq!(exists, 0, "an expired key came back after a restart");
    let ttl: i64 = redis::cmd("TTL").arg("later").query(&mut conn).unwrap();
    assert!((98..=100).contains(&ttl), "TTL {ttl}");
}

/// The file says `SET k v PXAT <soon>` and, after it, `PERSIST k`. Replayed
/// once <soon> has passed, the PERSIST must still find the key: no deadline
/// passes while history is replayed (Redis: `keyIsExpired` while loading).
pub fn a_deadline_changed_in_time_outlives_the_old_one(bin: &str) {
    let dir = TempDir::new("aof-changed-deadline");
    let mut server = start(bin, &dir, "always");
    let mut conn = server.client();
    run(&mut conn, &["SET", "persisted", "1", "PX", "300"]);
    run(&mut conn, &["PERSIST", "persisted"]);
    run(&mut conn, &["SET", "extended", "2", "PX", "300"]);
    run(&mut conn, &["PEXPIRE", "extended", "100000"]);
    run(&mut conn, &["SET", "expired", "3", "PX", "300"]);
    let old_deadlines = Instant::now() + Duration::from_millis(300);
    server.kill();

    wait_until("the old deadlines have passed", || {
        Instant::now() > old_deadlines
    });
    let server = start(bin, &dir, "always");
    let mut conn = server.client();
    let keys = snapshot(&mut conn, &["persisted", "extended", "expired"]);
    assert_eq!(keys[0], ("persisted".into(), Some("1".into()), -1));
    assert_eq!(keys[1].1.as_deref(), Some("2"), "extended: {:?}", keys[1]);
    assert!((98..=100).contains(&keys[1].2), "extended: {:?}", keys[1]);
    assert_eq!(keys[2], ("expired".into(), None, -2));
}

pub fn reads_are_never_appended(bin: &str) {
    let dir = TempDir::new("aof-reads");
    let server = start(bin, &dir, "always");
    let mut raw = server.raw();
    raw.converse(&[
        ("SET k v EX 100", "+OK"),
        ("SET exact v PXAT 2000000000000", "+OK"),
    ]);
    let stored = std::fs::read(dir.file(AOF)).unwrap();
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("\r\n2000000000000\r\n"),
        "PXAT not kept exactly: {stored:?}"
    );
    let size = || std::fs::metadata(dir.file(AOF)).unwrap().len();
    let written = size();
    assert!(written > 0);
    raw.converse(&[
        ("GET k", "$1\r\nv"),
        ("EXISTS k nope", ":1"),
        ("TTL k", ":100"),
        ("DBSIZE", ":2"),
        ("PING", "+PONG"),
        ("SET k other NX", "$-1"),
        ("DEL nope", ":0"),
        ("PERSIST nope", ":0"),
    ]);
    assert_eq!(
        size(),
        written,
        "a command that changed nothing was appended"
    );
}

/// Starts the server, writes `count` keys, and stops it: a file to damage.
fn write_keys_and_stop(bin: &str, dir: &TempDir, count: usize) -> Vec<u8> {
    let server = start(bin, dir, "always");
    let mut raw = server.raw();
    for i in 0..count {
        raw.converse(&[(&format!("SET key:{i} value:{i}"), "+OK")]);
    }
    drop(server);
    std::fs::read(dir.file(AOF)).unwrap()
}

pub fn a_truncated_last_command_is_dropped_with_a_warning(bin: &str) {
    let dir = TempDir::new("aof-truncated");
    let whole = write_keys_and_stop(bin, &dir, 10);
    // The server died halfway through appending an 11th command.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.file(AOF))
        .unwrap();
    file.write_all(b"*3\r\n$3\r\nSET\r\n$6\r\nkey:10\r\n$8\r\nval")
        .unwrap();
    drop(file);

    let server = start(bin, &dir, "always");
    let mut conn = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, 10);
    assert!(
        server.log().contains("incomplete command"),
        "{}",
        server.log()
    );
    assert_eq!(
        std::fs::read(dir.file(AOF)).unwrap(),
        whole,
        "the file should be cut back to its last whole command"
    );
}

pub fn corruption_before_the_end_stops_the_start(bin: &str) {
    let dir = TempDir::new("aof-corrupt");
    let mut data = write_keys_and_stop(bin, &dir, 10);
    // Damage the third command: its first bulk header loses its '$'.
    let third = nth_command_offset(&data, 2);
    data[third + 4] = b'X';
    std::fs::write(dir.file(AOF), &data).unwrap();

    let args = ["--dir", dir.arg(), "--appendonly", "yes"];
    let out = run_to_exit(bin, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started despite a corrupt file");
    assert!(
        stderr.contains(&format!("corrupt in the command at byte {third}")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.file(AOF)).unwrap(),
        data,
        "a corrupt file must be left as it is, for a person to inspect"
    );
}

/// Where the `n`th (from 0) command of a file of RESP arrays starts.
fn nth_command_offset(data: &[u8], n: usize) -> usize {
    data.windows(3)
        .enumerate()
        .filter(|(i, w)| w[0] == b'*' && (*i == 0 || data[i - 1] == b'\n') && w[2] == b'\r')
        .map(|(i, _)| i)
        .nth(n)
        .expect("enough commands")
}

pub fn a_crash_loses_no_acknowledged_write_with_appendfsync_always(bin: &str) {
    let dir = TempDir::new("aof-crash");
    let mut server = start(bin, &dir, "always");
    let mut raw = server.raw();
    let count = 2000;
    // In pipelined batches of 100: each reply promises its write is on disk.
    for batch in 0..count / 100 {
        let mut requests = Vec::new();
        for i in batch * 100..(batch + 1) * 100 {
            write!(requests, "SET key:{i} {i}\r\n").unwrap();
        }
        raw.send(&requests);
        raw.expect(&b"+OK\r\n".repeat(100));
    }
    server.kill(); // SIGKILL, right after the last reply.

    let server = start(bin, &dir, "always");
    let mut conn = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(size, count as i64);
    let last: String = redis::cmd("GET")
        .arg(format!("key:{}", count - 1))
        .query(&mut conn)
        .unwrap();
    assert_eq!(last, (count - 1).to_string());
}

pub fn redis_check_aof_accepts_the_file(bin: &str) {
    let dir = TempDir::new("aof-check");
    let server = start(bin, &dir, "always");
    write_a_history(&mut server.client());
    drop(server);
    if !tool_available("redis-check-aof") {
        return;
    }
    let out = std::process::Command::new("redis-check-aof")
        .arg(dir.file(AOF))
        .output()
        .expect("run redis-check-aof");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("is valid"),
        "{stdout}"
    );
}

pub fn redis_server_loads_the_file(bin: &str) {
    let dir = TempDir::new("aof-redis");
    let server = start(bin, &dir, "always");
    let mut conn = server.client();
    write_a_history(&mut conn);
    let ours = snapshot(&mut conn, HISTORY_KEYS);
    drop(server);

    // Redis 7 moves a lone appendonly.aof into its appendonlydir/ layout
    // and loads it.
    let args = [
        "--dir",
        dir.arg(),
        "--appendonly",
        "yes",
        "--appendfilename",
        AOF,
    ];
    let Some(redis) = RedisServer::start(&args) else {
        return;
    };
    let theirs = snapshot(&mut redis.client(), HISTORY_KEYS);
    for ((key, value, ttl), (_, their_value, their_ttl)) in ours.iter().zip(&theirs) {
        assert_eq!(value, their_value, "value of {key}");
        assert!(
            (ttl - their_ttl).abs() <= 3,
            "TTL of {key}: {ttl} vs {their_ttl}"
        );
    }
}

pub fn without_appendonly_there_is_no_file(bin: &str) {
    let dir = TempDir::new("aof-off");
    let server = Server::start(bin, &["--dir", dir.arg()]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET k v", "+OK"),
        (
            "CONFIG GET appendonly",
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno",
        ),
    ]);
    assert!(!dir.file(AOF).exists());
}
