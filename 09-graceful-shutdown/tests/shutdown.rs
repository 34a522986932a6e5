//! What step 09 adds: shutting down without breaking a promise.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use test_support::{wait_until, Server, TempDir, PATIENCE};

const BIN: &str = env!("CARGO_BIN_EXE_step09-graceful-shutdown");

/// What one writer saw: the keys the server acknowledged, and whether any
/// reply arrived cut in half.
struct Writer {
    acknowledged: Vec<String>,
    torn_reply: bool,
}

/// Writes `SET w<id>:<n> <n>` one after another until the connection ends.
fn write_until_closed(port: u16, id: usize, started: Arc<AtomicUsize>) -> Writer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = Writer {
        acknowledged: Vec::new(),
        torn_reply: false,
    };
    for n in 0.. {
        let key = format!("w{id}:{n}");
        if stream
            .write_all(format!("SET {key} {n}\r\n").as_bytes())
            .is_err()
        {
            break;
        }
        if n == 10 {
            started.fetch_add(1, Ordering::SeqCst);
        }
        let mut reply = [0u8; 5];
        let mut got = 0;
        while got < reply.len() {
            match stream.read(&mut reply[got..]) {
                Ok(0) => break,
                Ok(read) => got += read,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("writer {id}: {e}"),
            }
        }
        match got {
            0 => break, // Closed between replies: as promised.
            5 if &reply == b"+OK\r\n" => writer.acknowledged.push(key),
            _ => {
                writer.torn_reply = true;
                break;
            }
        }
    }
    writer
}

#[test]
fn sigterm_under_load_keeps_every_acknowledged_write() {
    let dir = TempDir::new("shutdown-load");
    let args = ["--dir", dir.arg(), "--appendonly", "yes", "--save", ""];
    let mut server = Server::start(BIN, &args);
    let port = server.port();
    let started = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|id| {
            let started = Arc::clone(&started);
            thread::spawn(move || write_until_closed(port, id, started))
        })
        .collect();
    wait_until("every writer is writing", || {
        started.load(Ordering::SeqCst) == 8
    });

    server.signal("TERM");
    let status = server.wait_for_exit();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains("append-only file written and fsynced"),
        "{log}"
    );

    let writers: Vec<Writer> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        writers.iter().all(|w| !w.torn_reply),
        "a client saw half a reply"
    );
    let server = Server::start(BIN, &args);
    let mut conn = server.client();
    let mut total = 0;
    for writer in &writers {
        for key in &writer.acknowledged {
            let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut conn).unwrap();
            assert_eq!(
                exists, 1,
                "{key} was acknowledged but is gone after the restart"
            );
        }
        total += writer.acknowledged.len();
    }
    assert!(total > 80, "too few writes to prove anything: {total}");
}

#[test]
fn sigint_with_save_points_saves_a_final_snapshot() {
    let dir = TempDir::new("shutdown-sigint");
    let args = ["--dir", dir.arg(), "--save", "3600 1"];
    let mut server = Server::start(BIN, &args);
    server.raw().converse(&[("SET k v", "+OK")]);
    server.signal("INT");
    assert!(server.wait_for_exit().success());
    assert!(server.log().contains("final snapshot saved"));
    let server = Server::start(BIN, &args);
    server.raw().converse(&[("GET k", "$1\r\nv")]);
}

#[test]
fn shutdown_nosave_skips_the_snapshot_and_save_forces_it() {
    let dir = TempDir::new("shutdown-nosave");
    let mut server = Server::start(BIN, &["--dir", dir.arg(), "--save", "3600 1"]);
    let mut raw = server.raw();
    raw.converse(&[("SET k v", "+OK")]);
    // No reply, as with Redis: the connection just closes.
    raw.send(b"SHUTDOWN NOSAVE\r\nGET k\r\n");
    raw.expect_closed();
    assert!(server.wait_for_exit().success());
    assert!(!dir.file("dump.rdb").exists(), "NOSAVE saved anyway");

    let mut server = Server::start(BIN, &["--dir", dir.arg(), "--save", ""]);
    let mut raw = server.raw();
    raw.converse(&[
        ("SET k v", "+OK"),
        ("SHUTDOWN NOW NOPE", "-ERR syntax error"),
    ]);
    raw.send(b"SHUTDOWN SAVE\r\n");
    raw.expect_closed();
    assert!(server.wait_for_exit().success());
    assert!(dir.file("dump.rdb").exists(), "SAVE did not save");
}

#[test]
fn maxclients_refuses_the_connection_over_the_limit() {
    let server = Server::start(BIN, &["--maxclients", "2"]);
    let mut first = server.raw();
    let mut second = server.raw();
    first.converse(&[("PING", "+PONG")]);
    second.converse(&[("PING", "+PONG")]);
    let mut third = server.raw();
    third.expect(b"-ERR max number of clients reached\r\n");
    third.expect_closed();

    // A closed connection gives its place back.
    drop(first);
    wait_until("a place frees up", || {
        let mut next = server.raw();
        next.send(b"PING\r\n");
        next.read_line() == "+PONG"
    });
}

#[test]
fn a_client_that_never_reads_cannot_hold_the_shutdown_forever() {
    let mut server = Server::start(BIN, &["--save", "", "--shutdown-timeout", "1"]);
    let mut raw = server.raw();
    // One reply far larger than every socket buffer on the way (64 MB).
    let size = 64 << 20;
    let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${size}\r\n").into_bytes();
    set.resize(set.len() + size, b'x');
    set.extend_from_slice(b"\r\n");
    raw.send(&set);
    raw.expect(b"+OK\r\n");
    raw.send(b"GET big\r\n");
    // Once the reply has begun, the server is inside a write it cannot
    // finish while we read nothing.
    let mut first = [0u8; 1];
    raw.stream().peek(&mut first).unwrap();

    server.signal("TERM");
    let status = server.wait_for_exit();
    assert!(status.success(), "{}", server.log());
    assert!(
        server.log().contains("still open after"),
        "{}",
        server.log()
    );
}
