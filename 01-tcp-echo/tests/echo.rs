//! Step 01 against its real binary, over raw TCP.

use std::io::Write;
use std::net::Shutdown;
use std::thread;

use test_support::Server;

const BIN: &str = env!("CARGO_BIN_EXE_step01-tcp-echo");

#[test]
fn echoes_what_it_receives() {
    let server = Server::start(BIN, &[]);
    let mut conn = server.raw();
    conn.send(b"hello\n");
    conn.expect(b"hello\n");
    conn.send(b"PING\r\n");
    conn.expect(b"PING\r\n");
}

#[test]
fn echoes_a_megabyte_intact() {
    let server = Server::start(BIN, &[]);
    let mut conn = server.raw();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();

    // Write from a second thread while this one reads: a megabyte is more than
    // the socket buffers hold, so writing it all before reading would deadlock.
    let mut writer = conn.stream().try_clone().unwrap();
    let sent = payload.clone();
    let writing = thread::spawn(move || writer.write_all(&sent).unwrap());
    let echoed = conn.read_exact(payload.len());
    writing.join().unwrap();
    assert!(echoed == payload, "the echo differs from what was sent");
}

#[test]
fn closes_when_the_client_closes() {
    let server = Server::start(BIN, &[]);
    let mut conn = server.raw();
    conn.send(b"bye");
    conn.stream().shutdown(Shutdown::Write).unwrap();
    conn.expect(b"bye");
    conn.expect_closed();
}

#[test]
fn serves_many_clients_at_once() {
    let server = Server::start(BIN, &[]);
    let addr = server.addr();
    let clients: Vec<_> = (0..50)
        .map(|i| {
            thread::spawn(move || {
                let mut conn = test_support::Raw::connect(addr);
                for round in 0..20 {
                    let line = format!("client {i} round {round}\n");
                    conn.send(line.as_bytes());
                    conn.expect(line.as_bytes());
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

#[test]
fn a_reset_connection_is_logged_and_does_not_affect_others() {
    let server = Server::start(BIN, &[]);
    let mut survivor = server.raw();

    // Closing a socket whose received data was never read makes the kernel
    // answer with a RST instead of a polite FIN.
    let mut rude = server.raw();
    rude.send(b"echo me");
    let mut unread = [0u8; 1];
    rude.stream().peek(&mut unread).unwrap();
    drop(rude);
    test_support::wait_until("the server logs the reset", || {
        server.log().contains("Connection reset by peer")
    });

    survivor.send(b"still here?");
    survivor.expect(b"still here?");
    let mut newcomer = server.raw();
    newcomer.send(b"hi");
    newcomer.expect(b"hi");
}
