//! Expiry, as step 04 introduces it: SET's EX/PX/EXAT/PXAT/KEEPTTL, the
//! EXPIRE family with NX/XX/GT/LT, TTL, PTTL, PERSIST, and keys that vanish
//! on time whether or not anybody reads them.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{wait_until, Server};

/// The expiry checks of step 04, for every server step from 04 on.
#[macro_export]
macro_rules! expiry_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, expiry;
            set_with_a_relative_expiry_counts_down,
            set_with_an_absolute_expiry,
            keepttl_keeps_and_plain_set_clears_the_deadline,
            expire_family_with_nx_xx_gt_lt,
            absolute_times_keep_their_exact_millisecond,
            a_deadline_in_the_past_deletes_the_key,
            expiry_errors_match_redis_word_for_word,
            expired_keys_vanish_for_every_command,
            unread_keys_are_reclaimed_in_the_background,
        );
    };
}

fn unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_millis() as i64
}

/// Sends one inline command and returns its integer reply.
fn integer(raw: &mut crate::Raw, request: &str) -> i64 {
    raw.send(format!("{request}\r\n").as_bytes());
    let line = raw.read_line();
    line.strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{request}: expected an integer, got {line}"))
}

pub fn set_with_a_relative_expiry_counts_down(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.converse(&[("SET k v EX 100", "+OK")]);
    let ttl = integer(&mut raw, "TTL k");
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    raw.converse(&[("SET k v PX 100000", "+OK")]);
    let pttl = integer(&mut raw, "PTTL k");
    assert!((99_000..=100_000).contains(&pttl), "PTTL {pttl}");

    raw.converse(&[("SET short v PX 1500", "+OK")]);
    let first = integer(&mut raw, "PTTL short");
    wait_until("the PTTL counts down", || {
        integer(&mut raw, "PTTL short") < first
    });
    wait_until("the key expires", || integer(&mut raw, "PTTL short") == -2);
    raw.converse(&[("GET short", "$-1"), ("TTL short", ":-2")]);
}

pub fn set_with_an_absolute_expiry(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let in_a_minute = unix_ms() + 60_000;
    raw.converse(&[(&format!("SET k v PXAT {in_a_minute}"), "+OK")]);
    let pttl = integer(&mut raw, "PTTL k");
    assert!((58_000..=60_000).contains(&pttl), "PTTL {pttl}");
    let seconds = in_a_minute / 1000 + 60;
    raw.converse(&[(&format!("SET k v EXAT {seconds}"), "+OK")]);
    let ttl = integer(&mut raw, "TTL k");
    assert!((118..=120).contains(&ttl), "TTL {ttl}");
}

pub fn keepttl_keeps_and_plain_set_clears_the_deadline(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET k v1 EX 100", "+OK"),
        ("SET k v2 KEEPTTL", "+OK"),
        ("GET k", "$2\r\nv2"),
    ]);
    assert!(integer(&mut raw, "TTL k") > 90);
    raw.converse(&[
        ("SET k v3", "+OK"),
        ("TTL k", ":-1"),
        ("SET k v4 XX EX 100 GET", "$2\r\nv3"),
        ("SET k v5 NX EX 1", "$-1"),
        ("GET k", "$2\r\nv4"),
    ]);
}

pub fn expire_family_with_nx_xx_gt_lt(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("EXPIRE missing 10", ":0"),
        ("SET k v", "+OK"),
        ("EXPIRE k 100 XX", ":0"),
        ("EXPIRE k 100 GT", ":0"),
        ("EXPIRE k 100 NX", ":1"),
        ("EXPIRE k 200 NX", ":0"),
        ("EXPIRE k 50 GT", ":0"),
        ("EXPIRE k 200 GT", ":1"),
        ("TTL k", ":200"),
        ("EXPIRE k 300 LT", ":0"),
        ("PEXPIRE k 150000 LT", ":1"),
        ("TTL k", ":150"),
        ("PERSIST k", ":1"),
        ("PERSIST k", ":0"),
        ("PERSIST missing", ":0"),
        ("TTL k", ":-1"),
        // LT on a key without a deadline succeeds: "never" is the latest.
        ("EXPIRE k 100 LT", ":1"),
    ]);
    let at = unix_ms() / 1000 + 1000;
    raw.converse(&[(&format!("EXPIREAT k {at}"), ":1")]);
    assert!((998..=1000).contains(&integer(&mut raw, "TTL k")));
    let at_ms = unix_ms() + 500_000;
    raw.converse(&[(&format!("PEXPIREAT k {at_ms} XX"), ":1")]);
    assert!((498..=500).contains(&integer(&mut raw, "TTL k")));
}

pub fn absolute_times_keep_their_exact_millisecond(bin: &str) {
    // A deadline set with PXAT must compare equal to itself afterwards,
    // whatever fraction of a millisecond the clocks were at.
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    for i in 0..50 {
        let at = 2_000_000_000_000i64 + i;
        raw.converse(&[
            (&format!("SET k{i} v PXAT {at}"), "+OK"),
            (&format!("PEXPIREAT k{i} {at} GT"), ":0"),
            (&format!("PEXPIREAT k{i} {at} LT"), ":0"),
        ]);
    }
}

pub fn a_deadline_in_the_past_deletes_the_key(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET a 1", "+OK"),
        ("EXPIRE a -1", ":1"),
        ("EXISTS a", ":0"),
        ("SET b 1", "+OK"),
        ("PEXPIREAT b 1", ":1"),
        ("GET b", "$-1"),
        ("SET c 1 PXAT 1", "+OK"),
        ("GET c", "$-1"),
        ("SET d 1 EXAT 1", "+OK"),
        ("TTL d", ":-2"),
    ]);
}

pub fn expiry_errors_match_redis_word_for_word(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let not_integer = "-ERR value is not an integer or out of range";
    let invalid_set = "-ERR invalid expire time in 'set' command";
    raw.converse(&[
        ("SET k v EX 0", invalid_set),
        ("SET k v PX -5", invalid_set),
        ("SET k v PXAT 0", invalid_set),
        ("SET k v EX 9223372036854775807", invalid_set),
        ("SET k v PX 9223372036854775807", invalid_set),
        ("SET k v EX abc", not_integer),
        ("SET k v EX 1.5", not_integer),
        ("SET k v EX", "-ERR syntax error"),
        ("SET k v EX 10 PX 10", "-ERR syntax error"),
        ("SET k v EX 10 KEEPTTL", "-ERR syntax error"),
        ("SET k v KEEPTTL EX 10", "-ERR syntax error"),
        ("EXISTS k", ":0"),
        ("SET k v", "+OK"),
        ("EXPIRE k abc", not_integer),
        (
            "EXPIRE k 9223372036854775807",
            "-ERR invalid expire time in 'expire' command",
        ),
        (
            "PEXPIRE k 9223372036854775807",
            "-ERR invalid expire time in 'pexpire' command",
        ),
        ("EXPIRE k 10 FOO", "-ERR Unsupported option FOO"),
        (
            "EXPIRE k 10 NX XX",
            "-ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            "EXPIRE k 10 GT LT",
            "-ERR GT and LT options at the same time are not compatible",
        ),
        (
            "EXPIRE k",
            "-ERR wrong number of arguments for 'expire' command",
        ),
        (
            "PEXPIREAT k",
            "-ERR wrong number of arguments for 'pexpireat' command",
        ),
        ("TTL", "-ERR wrong number of arguments for 'ttl' command"),
        (
            "PTTL a b",
            "-ERR wrong number of arguments for 'pttl' command",
        ),
        (
            "PERSIST",
            "-ERR wrong number of arguments for 'persist' command",
        ),
        ("TTL k", ":-1"),
    ]);
}

pub fn expired_keys_vanish_for_every_command(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    for key in ["get", "exists", "del", "ttl", "set-nx", "expire"] {
        raw.converse(&[(&format!("SET {key} v PX 50"), "+OK")]);
    }
    wait_until("the keys expire", || integer(&mut raw, "PTTL get") == -2);
    raw.converse(&[
        ("EXISTS exists", ":0"),
        ("DEL del", ":0"),
        ("TTL ttl", ":-2"),
        ("SET set-nx fresh NX", "+OK"),
        ("EXPIRE expire 100", ":0"),
    ]);
}

pub fn unread_keys_are_reclaimed_in_the_background(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    let mut batch = Vec::new();
    for i in 0..100_000 {
        write!(batch, "SET key:{i} v PX 100\r\n").unwrap();
    }
    raw.send(&batch);
    raw.expect(&b"+OK\r\n".repeat(100_000));
    let all_due = Instant::now() + Duration::from_millis(100);

    // Only DBSIZE, which reads no key: the keys must go by themselves.
    let mut dbsize = || integer(&mut raw, "DBSIZE");
    wait_until("the background sweep empties the keyspace", || {
        dbsize() == 0
    });
    let took = Instant::now().saturating_duration_since(all_due);
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} after the keys were due"
    );
}
