//! Snapshots, as step 06 introduces them: SAVE, BGSAVE, LASTSAVE and save
//! points, written atomically in Redis's own RDB format, so that
//! redis-check-rdb and redis-server accept ours and we load theirs.

use std::io::Write;

use redis::Connection;

use crate::{run_to_exit, tool_available, wait_until, Raw, RedisServer, Server, TempDir};

/// The snapshot checks of step 06, for every server step from 06 on.
#[macro_export]
macro_rules! rdb_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, rdb;
            save_then_restart_keeps_keys_values_and_ttls,
            bgsave_then_restart_keeps_keys_values_and_ttls,
            a_second_save_while_one_runs_is_refused,
            a_save_point_saves_by_itself,
            a_crash_during_bgsave_leaves_the_previous_snapshot,
            a_flipped_byte_fails_the_checksum_with_a_clear_error,
            redis_check_rdb_accepts_our_snapshot,
            redis_server_loads_our_snapshot,
            we_load_a_snapshot_written_by_redis_server,
            an_unsupported_value_type_stops_the_load_by_name,
            with_appendonly_the_aof_is_loaded_not_the_snapshot,
        );
    };
}

const DUMP: &str = "dump.rdb";

fn start(bin: &str, dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--dir", dir.arg(), "--save", ""];
    args.extend_from_slice(extra);
    Server::start(bin, &args)
}

/// Keys of every encoding the format has: short, integer, long and
/// compressible, binary, with and without a deadline.
fn write_sample(conn: &mut Connection) {
    let long = "abc".repeat(100);
    let binary: Vec<u8> = (0..=255).collect();
    let pipe = redis::pipe()
        .cmd("SET")
        .arg("short")
        .arg("hello")
        .ignore()
        .cmd("SET")
        .arg("integer")
        .arg("12345")
        .ignore()
        .cmd("SET")
        .arg("negative")
        .arg("-7")
        .ignore()
        .cmd("SET")
        .arg("not-an-integer")
        .arg("007")
        .ignore()
        .cmd("SET")
        .arg("long")
        .arg(&long)
        .ignore()
        .cmd("SET")
        .arg(b"bin\r\nkey\0".as_slice())
        .arg(binary)
        .ignore()
        .cmd("SET")
        .arg("expiring")
        .arg("soon")
        .arg("EX")
        .arg(1000)
        .ignore()
        .cmd("SET")
        .arg("expiring-ms")
        .arg("v")
        .arg("PX")
        .arg(2_000_000)
        .ignore()
        .clone();
    let () = pipe.query(conn).unwrap();
}

const SAMPLE_KEYS: &[&[u8]] = &[
    b"short",
    b"integer",
    b"negative",
    b"not-an-integer",
    b"long",
    b"bin\r\nkey\0",
    b"expiring",
    b"expiring-ms",
];

/// Each sample key's value and time to live in seconds.
fn sample_state(conn: &mut Connection) -> Vec<(Option<Vec<u8>>, i64)> {
    SAMPLE_KEYS
        .iter()
        .map(|key| {
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(*key).query(conn).unwrap();
            let ttl: i64 = redis::cmd("TTL").arg(*key).query(conn).unwrap();
            (value, ttl)
        })
        .collect()
}

fn assert_same_state(expected: &[(Option<Vec<u8>>, i64)], got: &[(Option<Vec<u8>>, i64)]) {
    for ((key, (value, ttl)), (got_value, got_ttl)) in SAMPLE_KEYS.iter().zip(expected).zip(got) {
        let key = String::from_utf8_lossy(key);
        assert!(value.is_some(), "{key} should exist");
        assert_eq!(value, got_value, "value of {key}");
        assert!(
            (ttl - got_ttl).abs() <= 3,
            "TTL of {key}: {ttl} then {got_ttl}"
        );
    }
}

fn dbsize(conn: &mut Connection) -> i64 {
    redis::cmd("DBSIZE").query(conn).unwrap()
}

pub fn save_then_restart_keeps_keys_values_and_ttls(bin: &str) {
    let dir = TempDir::new("rdb-save");
    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    write_sample(&mut conn);
    let before = sample_state(&mut conn);
    let ok: String = redis::cmd("SAVE").query(&mut conn).unwrap();
    assert_eq!(ok, "OK");
    drop(server);

    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    assert_same_state(&before, &sample_state(&mut conn));
    assert_eq!(dbsize(&mut conn), SAMPLE_KEYS.len() as i64);
}

pub fn bgsave_then_restart_keeps_keys_values_and_ttls(bin: &str) {
    let dir = TempDir::new("rdb-bgsave");
    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    write_sample(&mut conn);
    let before = sample_state(&mut conn);
    let started: String = redis::cmd("BGSAVE").query(&mut conn).unwrap();
    assert_eq!(started, "Background saving started");
    wait_until("the background save is written", || dir.file(DUMP).exists());
    // The same snapshot, whole: the rename makes it appear all at once.
    wait_until("the save has finished", || {
        redis::cmd("BGSAVE").query::<String>(&mut conn).is_ok()
    });
    drop(server);

    let server = start(bin, &dir, &[]);
    assert_same_state(&before, &sample_state(&mut server.client()));
}

/// Fills the keyspace with `count` values of 1 KiB, pipelined.
fn fill(raw: &mut Raw, count: usize) {
    let value = "x".repeat(1024);
    for chunk in 0..count / 1000 {
        let mut batch = Vec::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            write!(batch, "SET big:{i} {value}\r\n").unwrap();
        }
        raw.send(&batch);
        raw.expect(&b"+OK\r\n".repeat(1000));
    }
}

pub fn a_second_save_while_one_runs_is_refused(bin: &str) {
    let dir = TempDir::new("rdb-busy");
    let server = start(bin, &dir, &[]);
    let mut raw = server.raw();
    fill(&mut raw, 20_000);
    // All three in one write: the second and third arrive while the first
    // is still encoding twenty megabytes.
    raw.send(b"BGSAVE\r\nBGSAVE\r\nSAVE\r\n");
    raw.expect(b"+Background saving started\r\n");
    raw.expect(b"-ERR Background save already in progress\r\n");
    raw.expect(b"-ERR Background save already in progress\r\n");
    raw.converse(&[("BGSAVE SOMETIME", "-ERR syntax error")]);
}

pub fn a_save_point_saves_by_itself(bin: &str) {
    let dir = TempDir::new("rdb-savepoint");
    let server = Server::start(bin, &["--dir", dir.arg(), "--save", "1 2"]);
    let mut conn = server.client();
    let started: i64 = redis::cmd("LASTSAVE").query(&mut conn).unwrap();
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut conn)
        .unwrap();
    assert_eq!(save, ["save", "1 2"]);
    let () = redis::cmd("SET")
        .arg("one")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("two")
        .arg("2")
        .query(&mut conn)
        .unwrap();
    wait_until("the save point writes a snapshot", || {
        dir.file(DUMP).exists()
    });
    wait_until("LASTSAVE moves on", || {
        redis::cmd("LASTSAVE").query::<i64>(&mut conn).unwrap() > started
    });
    drop(server);
    let server = start(bin, &dir, &[]);
    assert_eq!(dbsize(&mut server.client()), 2);
}

pub fn a_crash_during_bgsave_leaves_the_previous_snapshot(bin: &str) {
    let dir = TempDir::new("rdb-crash");
    let mut server = start(bin, &dir, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET old 1", "+OK"),
        ("SET older 2", "+OK"),
        ("SAVE", "+OK"),
    ]);
    let previous = std::fs::read(dir.file(DUMP)).unwrap();

    // To crash while the new snapshot is half written, every time: put a
    // named pipe where the server writes it (temp-<pid>.rdb, as in Redis).
    // Its write blocks, mid-save, until we kill the server.
    let temp = dir.file(&format!("temp-{}.rdb", server.pid()));
    let made = std::process::Command::new("mkfifo")
        .arg(&temp)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    raw.converse(&[
        ("SET new 3", "+OK"),
        ("BGSAVE", "+Background saving started"),
    ]);
    // A second BGSAVE is refused until the first ends: it is under way.
    raw.converse(&[("BGSAVE", "-ERR Background save already in progress")]);
    server.kill();

    assert_eq!(std::fs::read(dir.file(DUMP)).unwrap(), previous);
    std::fs::remove_file(&temp).unwrap();
    let server = start(bin, &dir, &[]);
    assert_eq!(dbsize(&mut server.client()), 2);
}

pub fn a_flipped_byte_fails_the_checksum_with_a_clear_error(bin: &str) {
    let dir = TempDir::new("rdb-flip");
    let server = start(bin, &dir, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET key the-value-that-gets-damaged", "+OK"),
        ("SAVE", "+OK"),
    ]);
    drop(server);

    let mut data = std::fs::read(dir.file(DUMP)).unwrap();
    let at = data.windows(7).position(|w| w == b"damaged").unwrap();
    data[at] ^= 0x20; // "damaged" becomes "Damaged": still a valid-looking file.
    std::fs::write(dir.file(DUMP), &data).unwrap();

    let out = run_to_exit(bin, &["--dir", dir.arg(), "--save", ""]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started from a damaged snapshot");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains(DUMP),
        "the error should name the file: {stderr}"
    );
}

pub fn redis_check_rdb_accepts_our_snapshot(bin: &str) {
    let dir = TempDir::new("rdb-check");
    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    write_sample(&mut conn);
    let _: String = redis::cmd("SAVE").query(&mut conn).unwrap();
    drop(server);
    if !tool_available("redis-check-rdb") {
        return;
    }
    let out = std::process::Command::new("redis-check-rdb")
        .arg(dir.file(DUMP))
        .output()
        .expect("run redis-check-rdb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("\\o/ RDB looks OK! \\o/"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} keys read", SAMPLE_KEYS.len())),
        "{stdout}"
    );
}

pub fn redis_server_loads_our_snapshot(bin: &str) {
    let dir = TempDir::new("rdb-to-redis");
    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    write_sample(&mut conn);
    let ours = sample_state(&mut conn);
    let _: String = redis::cmd("SAVE").query(&mut conn).unwrap();
    drop(server);

    let Some(redis) = RedisServer::start(&["--dir", dir.arg(), "--dbfilename", DUMP]) else {
        return;
    };
    let mut conn = redis.client();
    assert_same_state(&ours, &sample_state(&mut conn));
    assert_eq!(dbsize(&mut conn), SAMPLE_KEYS.len() as i64);
}

pub fn we_load_a_snapshot_written_by_redis_server(bin: &str) {
    let dir = TempDir::new("rdb-from-redis");
    let Some(redis) = RedisServer::start(&["--dir", dir.arg(), "--dbfilename", DUMP]) else {
        return;
    };
    let mut conn = redis.client();
    write_sample(&mut conn);
    let theirs = sample_state(&mut conn);
    let _: String = redis::cmd("SAVE").query(&mut conn).unwrap();
    drop(redis);

    let server = start(bin, &dir, &[]);
    let mut conn = server.client();
    assert_same_state(&theirs, &sample_state(&mut conn));
    assert_eq!(dbsize(&mut conn), SAMPLE_KEYS.len() as i64);
}

pub fn an_unsupported_value_type_stops_the_load_by_name(bin: &str) {
    let dir = TempDir::new("rdb-list");
    let Some(redis) = RedisServer::start(&["--dir", dir.arg(), "--dbfilename", DUMP]) else {
        return;
    };
    let mut conn = redis.client();
    let _: i64 = redis::cmd("RPUSH")
        .arg("mylist")
        .arg("a")
        .query(&mut conn)
        .unwrap();
    let _: String = redis::cmd("SAVE").query(&mut conn).unwrap();
    drop(redis);

    let out = run_to_exit(bin, &["--dir", dir.arg(), "--save", ""]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without the list");
    assert!(stderr.contains("unsupported value type"), "{stderr}");
    assert!(
        stderr.contains("list") && stderr.contains("mylist"),
        "{stderr}"
    );
}

pub fn with_appendonly_the_aof_is_loaded_not_the_snapshot(bin: &str) {
    let dir = TempDir::new("rdb-vs-aof");
    let server = start(bin, &dir, &["--appendonly", "yes"]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET in-both 1", "+OK"),
        ("SAVE", "+OK"),
        ("SET only-in-aof 2", "+OK"),
    ]);
    drop(server);

    let server = start(bin, &dir, &["--appendonly", "yes"]);
    server
        .raw()
        .converse(&[("EXISTS in-both only-in-aof", ":2")]);
    drop(server);
    // Without the AOF, the snapshot is what there is.
    let server = start(bin, &dir, &[]);
    server
        .raw()
        .converse(&[("EXISTS in-both only-in-aof", ":1")]);
}
