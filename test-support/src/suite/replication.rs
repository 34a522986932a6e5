//! Replication, as step 08 introduces it: our master with our replica, and
//! each of them with a real redis-server; the handshake, offsets and
//! acknowledgements as Redis counts them; a read-only replica; reconnects.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Connection;

use crate::{free_port, wait_until, Raw, RedisServer, Server};

/// The replication checks of step 08, for every server step from 08 on.
#[macro_export]
macro_rules! replication_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, replication;
            our_master_to_our_replica,
            the_seed_command_line_starts_a_replica,
            our_master_to_a_real_replica,
            a_real_master_to_our_replica_diskless,
            a_real_master_to_our_replica_from_disk,
            a_restarted_master_is_followed_again,
            acks_count_offsets_as_redis_does,
            a_replica_leaves_expiry_to_its_master,
            the_master_streams_writes_and_expiries_and_never_answers_acks,
            old_style_sync_gets_a_snapshot_and_the_stream,
            replicaof_wait_select_and_replconf_reply_as_redis,
            wait_counts_from_the_clients_own_last_write,
        );
    };
}

fn get(conn: &mut Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

fn set(conn: &mut Connection, args: &[&str]) {
    let mut cmd = redis::cmd("SET");
    for arg in args {
        cmd.arg(*arg);
    }
    let () = cmd.query(conn).unwrap();
}

fn info_field(conn: &mut Connection, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("replication").query(conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(str::to_string)
}

fn replicaof(port: u16) -> String {
    format!("127.0.0.1 {port}")
}

/// Writes on `master` and waits until `replica` has them: before the sync,
/// after it, with and without expiry, and a key that expires.
fn check_following(master: &mut Connection, replica: &mut Connection) {
    wait_until("the replica has the snapshot", || {
        get(replica, "before").as_deref() == Some("1")
    });
    set(master, &["after", "2", "EX", "1000"]);
    set(master, &["short-lived", "v", "PX", "300"]);
    wait_until("the replica has a later write", || {
        get(replica, "after").as_deref() == Some("2")
    });
    let ttl: i64 = redis::cmd("TTL").arg("after").query(replica).unwrap();
    assert!((990..=1000).contains(&ttl), "TTL on the replica: {ttl}");
    wait_until("the expiring key expires on the replica", || {
        redis::cmd("EXISTS")
            .arg("short-lived")
            .query::<i64>(replica)
            .unwrap()
            == 0
    });
}

pub fn our_master_to_our_replica(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let mut m = master.client();
    set(&mut m, &["before", "1"]);
    let replica = Server::start(
        bin,
        &["--save", "", "--replicaof", &replicaof(master.port())],
    );
    let mut r = replica.client();
    check_following(&mut m, &mut r);

    let refused = redis::cmd("SET")
        .arg("x")
        .arg("1")
        .query::<()>(&mut r)
        .unwrap_err();
    assert_eq!(refused.code(), Some("READONLY"));
    assert_eq!(info_field(&mut r, "role").as_deref(), Some("slave"));
    assert_eq!(
        info_field(&mut r, "master_link_status").as_deref(),
        Some("up")
    );
    assert_eq!(info_field(&mut m, "connected_slaves").as_deref(), Some("1"));
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(acked, 1);
    assert_eq!(
        info_field(&mut r, "slave_repl_offset"),
        info_field(&mut m, "master_repl_offset")
    );
}

pub fn the_seed_command_line_starts_a_replica(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let mut m = master.client();
    set(&mut m, &["before", "1"]);
    // `replica <listen-addr> <master-addr>`, followed by our usual --port 0.
    let master_addr = format!("127.0.0.1:{}", master.port());
    let replica = Server::start(bin, &["replica", "127.0.0.1:0", &master_addr, "--save", ""]);
    let mut r = replica.client();
    wait_until("the replica syncs", || {
        get(&mut r, "before").as_deref() == Some("1")
    });
}

pub fn our_master_to_a_real_replica(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let mut m = master.client();
    set(&mut m, &["before", "1"]);
    let port = master.port().to_string();
    let Some(redis) = RedisServer::start(&["--replicaof", "127.0.0.1", &port]) else {
        return;
    };
    let mut r = redis.client();
    check_following(&mut m, &mut r);
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(acked, 1);
    wait_until("the real replica reports our offset", || {
        info_field(&mut r, "slave_repl_offset") == info_field(&mut m, "master_repl_offset")
    });
}

fn from_a_real_master(bin: &str, disk_args: &[&str]) {
    let mut args = vec!["--repl-diskless-sync-delay", "0"];
    args.extend_from_slice(disk_args);
    let Some(redis) = RedisServer::start(&args) else {
        return;
    };
    let mut m = redis.client();
    set(&mut m, &["before", "1"]);
    set(&mut m, &["long", &"abc".repeat(100)]);
    set(&mut m, &["number", "12345"]);
    set(&mut m, &["expiring", "v", "EX", "500"]);
    let replica = Server::start(
        bin,
        &["--save", "", "--replicaof", &replicaof(redis.port())],
    );
    let mut r = replica.client();
    check_following(&mut m, &mut r);
    assert_eq!(get(&mut r, "long"), Some("abc".repeat(100)));
    assert_eq!(get(&mut r, "number").as_deref(), Some("12345"));
    let ttl: i64 = redis::cmd("TTL").arg("expiring").query(&mut r).unwrap();
    assert!((490..=500).contains(&ttl), "TTL {ttl}");
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut m).unwrap();
    assert_eq!(acked, 1, "the real master counts our acknowledgement");
}

pub fn a_real_master_to_our_replica_diskless(bin: &str) {
    // Redis 7.0's default: the snapshot streamed with an $EOF:<mark> frame.
    from_a_real_master(bin, &["--repl-diskless-sync", "yes"]);
}

pub fn a_real_master_to_our_replica_from_disk(bin: &str) {
    // The classic form: $<length> and the file's bytes.
    from_a_real_master(bin, &["--repl-diskless-sync", "no"]);
}

pub fn a_restarted_master_is_followed_again(bin: &str) {
    let port = free_port().to_string();
    let mut master = Server::start(bin, &["--save", "", "--port", &port]);
    set(&mut master.client(), &["generation", "1"]);
    let replica = Server::start(
        bin,
        &["--save", "", "--replicaof", &format!("127.0.0.1 {port}")],
    );
    let mut r = replica.client();
    wait_until("the replica syncs", || {
        get(&mut r, "generation").as_deref() == Some("1")
    });

    master.kill();
    wait_until("the replica notices", || {
        info_field(&mut r, "master_link_status").as_deref() == Some("down")
    });
    // Same port, new data: the replica reconnects and syncs afresh.
    let master = Server::start(bin, &["--save", "", "--port", &port]);
    set(&mut master.client(), &["generation", "2"]);
    wait_until("the replica resyncs", || {
        get(&mut r, "generation").as_deref() == Some("2")
    });
    assert_eq!(
        info_field(&mut r, "master_link_status").as_deref(),
        Some("up")
    );
}

/// `words` as a RESP command, as a master streams it.
fn command(words: &[&str]) -> String {
    let mut command = format!("*{}\r\n", words.len());
    for word in words {
        command.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    command
}

/// A scripted master: reads one command of the handshake and checks it.
fn expect_command(stream: &mut TcpStream, words: &[&str]) {
    let expected = command(words);
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// Reads REPLCONF ACK lines until one reports at least `at_least`; returns it.
fn next_ack(stream: &mut TcpStream, at_least: u64) -> u64 {
    loop {
        let mut raw = Raw::from_stream(stream.try_clone().unwrap());
        assert_eq!(raw.read_line(), "*3");
        for word in ["REPLCONF", "ACK"] {
            raw.read_line();
            assert_eq!(raw.read_line(), word);
        }
        raw.read_line();
        let offset: u64 = raw.read_line().parse().unwrap();
        if offset >= at_least {
            return offset;
        }
    }
}

/// Starts a replica of ours that follows a scripted master, and plays the
/// master's side of the handshake up to an empty snapshot at offset 1000.
/// Returns the replica and the master's end of the link.
fn follow_a_scripted_master(bin: &str) -> (Server, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let replica = Server::start(bin, &["--save", "", "--replicaof", &replicaof(port)]);
    let (mut master, _) = listener.accept().unwrap();
    master.set_read_timeout(Some(crate::PATIENCE)).unwrap();

    expect_command(&mut master, &["PING"]);
    master.write_all(b"+PONG\r\n").unwrap();
    let replica_port = replica.port().to_string();
    expect_command(&mut master, &["REPLCONF", "listening-port", &replica_port]);
    master.write_all(b"+OK\r\n").unwrap();
    expect_command(&mut master, &["REPLCONF", "capa", "eof", "capa", "psync2"]);
    master.write_all(b"+OK\r\n").unwrap();
    expect_command(&mut master, &["PSYNC", "?", "-1"]);
    // Keepalive newlines, the answer, and an empty RDB (checksum 0: off).
    master.write_all(b"\n\n+FULLRESYNC ").unwrap();
    master.write_all(&[b'a'; 40]).unwrap();
    master
        .write_all(b" 1000\r\n$18\r\nREDIS0010\xff\0\0\0\0\0\0\0\0")
        .unwrap();
    assert_eq!(next_ack(&mut master, 0), 1000);
    (replica, master)
}

pub fn acks_count_offsets_as_redis_does(bin: &str) {
    let (replica, mut master) = follow_a_scripted_master(bin);
    // 23 + 27 + 14 bytes, then REPLCONF GETACK * (37 bytes).
    master
        .write_all(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*1\r\n$4\r\nping\r\n")
        .unwrap();
    let getack = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";
    master.write_all(getack).unwrap();
    // The answer to a GETACK leaves the GETACK itself out, as Redis does.
    assert_eq!(next_ack(&mut master, 1001), 1000 + 23 + 27 + 14);
    master.write_all(getack).unwrap();
    assert_eq!(next_ack(&mut master, 1065), 1064 + 37);
    let mut r = replica.client();
    assert_eq!(get(&mut r, "a").as_deref(), Some("1"));
    assert_eq!(
        info_field(&mut r, "slave_repl_offset").as_deref(),
        Some("1138")
    );
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn query_int(conn: &mut Connection, args: &[&str]) -> i64 {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(conn).unwrap()
}

/// As Redis's replicas do, ours leave expiry to the master: a key past its
/// deadline is gone for clients but stays stored until the master's DEL.
/// So a change the master made in time and sent late still finds the key.
pub fn a_replica_leaves_expiry_to_its_master(bin: &str) {
    let (replica, mut master) = follow_a_scripted_master(bin);
    let mut r = replica.client();
    let soon = unix_ms() + 300;
    let set = command(&["SET", "k", "v", "PXAT", &soon.to_string()]);
    master
        .write_all((command(&["SELECT", "0"]) + &set).as_bytes())
        .unwrap();
    // Stored, whether or not its deadline has passed by the time it is.
    wait_until("the replica has the key", || {
        query_int(&mut r, &["DBSIZE"]) == 1
    });
    wait_until("the key's deadline has passed", || unix_ms() > soon);
    assert_eq!(get(&mut r, "k"), None, "a key past its deadline is gone");
    assert_eq!(query_int(&mut r, &["EXISTS", "k"]), 0);
    assert_eq!(query_int(&mut r, &["TTL", "k"]), -2);
    assert_eq!(query_int(&mut r, &["DBSIZE"]), 1, "but it is still stored");

    // The master made it persistent before the deadline; that arrives now.
    master
        .write_all(command(&["PERSIST", "k"]).as_bytes())
        .unwrap();
    wait_until("the master's PERSIST finds the key", || {
        get(&mut r, "k").as_deref() == Some("v")
    });
    assert_eq!(query_int(&mut r, &["TTL", "k"]), -1);

    // A key that arrives past its deadline is kept until the master's DEL.
    let past = (unix_ms() - 1000).to_string();
    let set = command(&["SET", "gone", "x", "PXAT", &past]);
    master.write_all(set.as_bytes()).unwrap();
    wait_until("the replica stores the expired key", || {
        query_int(&mut r, &["DBSIZE"]) == 2
    });
    assert_eq!(get(&mut r, "gone"), None);
    master
        .write_all(command(&["DEL", "gone"]).as_bytes())
        .unwrap();
    wait_until("the master's DEL deletes it", || {
        query_int(&mut r, &["DBSIZE"]) == 1
    });
}

/// Runs the replica's side of the handshake on a raw connection and reads
/// the snapshot; returns the connection, positioned at the stream.
fn raw_replica(master: &Server, command: &str) -> Raw {
    let mut raw = master.raw();
    raw.converse(&[
        ("REPLCONF listening-port 7777", "+OK"),
        ("REPLCONF capa eof capa psync2", "+OK"),
    ]);
    raw.send(format!("{command}\r\n").as_bytes());
    if command.starts_with("PSYNC") {
        let line = raw.read_line();
        assert!(line.starts_with("+FULLRESYNC "), "{line}");
        assert_eq!(line.split(' ').nth(1).unwrap().len(), 40, "{line}");
    }
    let header = raw.read_line();
    let len: usize = header.strip_prefix('$').unwrap().parse().unwrap();
    let snapshot = raw.read_exact(len);
    assert!(snapshot.starts_with(b"REDIS0010"));
    raw
}

/// The next command in a master's stream, skipping its heartbeat PINGs.
fn next_command(replica: &mut Raw) -> Vec<String> {
    loop {
        let count: usize = replica
            .read_line()
            .strip_prefix('*')
            .unwrap()
            .parse()
            .unwrap();
        let words: Vec<String> = (0..count)
            .map(|_| {
                replica.read_line(); // $<len>
                replica.read_line()
            })
            .collect();
        if words != ["PING"] {
            return words;
        }
    }
}

pub fn the_master_streams_writes_and_expiries_and_never_answers_acks(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let mut replica = raw_replica(
        &master,
        "PSYNC 8de6b2a0e9c8d7f6a5b4c3d2e1f0a9b8c7d6e5f4 123",
    );
    // A master never replies to ACK: the next bytes must be the stream.
    replica.send(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n");
    let mut m = master.client();
    set(&mut m, &["k", "v"]);
    assert_eq!(next_command(&mut replica), ["SET", "k", "v"]);
    set(&mut m, &["gone", "v", "PX", "100"]);
    let command = next_command(&mut replica);
    assert_eq!(command[..4], ["SET", "gone", "v", "PXAT"]);
    // Nobody reads "gone": the master's sweep deletes it and says so.
    assert_eq!(next_command(&mut replica), ["DEL", "gone"]);
}

pub fn old_style_sync_gets_a_snapshot_and_the_stream(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let mut m = master.client();
    set(&mut m, &["before", "1"]);
    let mut replica = raw_replica(&master, "SYNC");
    set(&mut m, &["after", "2"]);
    assert_eq!(next_command(&mut replica), ["SET", "after", "2"]);
}

pub fn replicaof_wait_select_and_replconf_reply_as_redis(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let server = Server::start(bin, &["--save", ""]);
    let mut raw = server.raw();
    raw.converse(&[
        ("WAIT 0 0", ":0"),
        ("WAIT 1 50", ":0"),
        ("WAIT 1 -1", "-ERR timeout is negative"),
        ("WAIT x 0", "-ERR value is not an integer or out of range"),
        // One database: SELECT 0 only, refused as a redis-server refuses
        // an index past its last database.
        ("SELECT 0", "+OK"),
        ("SELECT 16", "-ERR DB index is out of range"),
        (
            "SELECT 2147483648",
            "-ERR value is out of range, value must between -2147483648 and 2147483647",
        ),
        ("SELECT x", "-ERR value is not an integer or out of range"),
        // REPLCONF, checked option by option as Redis checks it.
        ("REPLCONF foo bar", "-ERR Unrecognized REPLCONF option: foo"),
        (
            "REPLCONF listening-port x",
            "-ERR value is not an integer or out of range",
        ),
        (
            "REPLCONF rdb-only 2",
            "-ERR value is out of range, value must between 0 and 1",
        ),
        ("REPLCONF listening-port 70000 capa eof", "+OK"),
        ("REPLCONF a", "-ERR syntax error"),
        ("REPLCONF rdb-only 1 ip-address 1.2.3.4", "+OK"),
        ("REPLICAOF 127.0.0.1 notaport", "-ERR Invalid master port"),
        ("REPLICAOF NO ONE", "+OK"),
        (&format!("REPLICAOF 127.0.0.1 {}", master.port()), "+OK"),
        (
            &format!("SLAVEOF 127.0.0.1 {}", master.port()),
            "+OK Already connected to specified master",
        ),
        (
            "SET k v",
            "-READONLY You can't write against a read only replica.",
        ),
    ]);
    let mut conn = server.client();
    wait_until("the link is up", || {
        info_field(&mut conn, "master_link_status").as_deref() == Some("up")
    });
    raw.converse(&[
        (
            "WAIT 0 0",
            "-ERR WAIT cannot be used with replica instances. Please also note that since Redis \
             4.0 if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        ),
        ("REPLICAOF no one", "+OK"),
        ("SET k v", "+OK"),
    ]);
    assert_eq!(info_field(&mut conn, "role").as_deref(), Some("master"));
}

/// WAIT waits for the client's own last write, as Redis's does (`c->woff`):
/// a replica that never acknowledges anything holds up the client that
/// wrote, not a client that has written nothing. (The same script against
/// redis-server 7.0.15: `:0` after the timeout, then `:1` at once.)
pub fn wait_counts_from_the_clients_own_last_write(bin: &str) {
    let master = Server::start(bin, &["--save", ""]);
    let _silent_replica = raw_replica(&master, "PSYNC ? -1");
    let mut conn = master.client();
    wait_until("the replica is registered", || {
        info_field(&mut conn, "connected_slaves").as_deref() == Some("1")
    });
    let mut writer = master.raw();
    writer.converse(&[("SET k v", "+OK"), ("WAIT 1 100", ":0")]);
    // Timeout 0 waits for ever: this answers only if nothing is awaited.
    let mut reader = master.raw();
    reader.converse(&[("GET k", "$1\r\nv"), ("WAIT 1 0", ":1")]);
}
