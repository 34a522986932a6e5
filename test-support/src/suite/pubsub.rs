//! Publish/subscribe, as step 07 introduces it: the commands and their
//! reply shapes, patterns, RESP2's subscribed mode and RESP3 pushes, and a
//! subscriber too slow to keep up.

use std::io::{Read, Write};
use std::thread;

use crate::{wait_until, Raw, Server};

/// The pub/sub checks of step 07, for every server step from 07 on.
#[macro_export]
macro_rules! pubsub_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, pubsub;
            subscribe_publish_unsubscribe_reply_as_redis,
            patterns_receive_pmessages,
            publish_counts_every_receiver,
            many_subscribers_each_get_every_message_in_order,
            many_publishers_at_once_never_cut_off_a_reader,
            subscribed_mode_allows_only_subscription_commands,
            resp3_gets_pushes_and_may_run_any_command,
            a_client_library_subscribes_and_receives,
            channels_without_subscribers_are_removed,
            a_slow_subscriber_is_cut_off_and_others_get_everything,
            nothing_arrives_after_the_unsubscribe_confirmation,
            config_get_matches_glob_patterns,
        );
    };
}

pub fn subscribe_publish_unsubscribe_reply_as_redis(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    let mut publisher = server.raw();
    sub.converse(&[(
        "SUBSCRIBE news weather",
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n\
         *3\r\n$9\r\nsubscribe\r\n$7\r\nweather\r\n:2",
    )]);
    publisher.converse(&[("PUBLISH news hello", ":1"), ("PUBLISH nobody hi", ":0")]);
    sub.expect(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    sub.converse(&[
        (
            "UNSUBSCRIBE news",
            "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1",
        ),
        (
            "UNSUBSCRIBE",
            "*3\r\n$11\r\nunsubscribe\r\n$7\r\nweather\r\n:0",
        ),
        ("UNSUBSCRIBE", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0"),
        ("PUNSUBSCRIBE", "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0"),
        // Out of subscribed mode: ordinary commands work again.
        ("ECHO back", "$4\r\nback"),
    ]);
    publisher.converse(&[("PUBLISH weather rain", ":0")]);
}

pub fn patterns_receive_pmessages(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    let mut publisher = server.raw();
    sub.converse(&[(
        "PSUBSCRIBE news.* h?llo",
        "*3\r\n$10\r\npsubscribe\r\n$6\r\nnews.*\r\n:1\r\n\
         *3\r\n$10\r\npsubscribe\r\n$5\r\nh?llo\r\n:2",
    )]);
    publisher.converse(&[
        ("PUBLISH news.art x", ":1"),
        ("PUBLISH news nothing", ":0"),
        ("PUBLISH hallo y", ":1"),
        ("PUBSUB NUMPAT", ":2"),
    ]);
    sub.expect(b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$8\r\nnews.art\r\n$1\r\nx\r\n");
    sub.expect(b"*4\r\n$8\r\npmessage\r\n$5\r\nh?llo\r\n$5\r\nhallo\r\n$1\r\ny\r\n");
    sub.converse(&[(
        "PUNSUBSCRIBE h?llo",
        "*3\r\n$12\r\npunsubscribe\r\n$5\r\nh?llo\r\n:1",
    )]);
    publisher.converse(&[("PUBLISH hello z", ":0"), ("PUBSUB NUMPAT", ":1")]);
}

pub fn publish_counts_every_receiver(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut a = server.raw();
    let mut b = server.raw();
    let mut c = server.raw();
    a.converse(&[("SUBSCRIBE ch", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1")]);
    b.converse(&[("SUBSCRIBE ch", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1")]);
    c.converse(&[("PSUBSCRIBE c*", "*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:1")]);
    let mut publisher = server.raw();
    publisher.converse(&[
        ("PUBLISH ch m", ":3"),
        (
            "PUBSUB NUMSUB ch other",
            "*4\r\n$2\r\nch\r\n:2\r\n$5\r\nother\r\n:0",
        ),
        ("PUBSUB CHANNELS", "*1\r\n$2\r\nch"),
        ("PUBSUB CHANNELS x*", "*0"),
        // No shard channels in this workshop: none, and nobody on them.
        ("PUBSUB SHARDCHANNELS", "*0"),
        ("PUBSUB SHARDNUMSUB ch", "*2\r\n$2\r\nch\r\n:0"),
    ]);
}

pub fn many_subscribers_each_get_every_message_in_order(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut subscribers: Vec<Raw> = (0..50).map(|_| server.raw()).collect();
    for sub in &mut subscribers {
        sub.converse(&[(
            "SUBSCRIBE feed",
            "*3\r\n$9\r\nsubscribe\r\n$4\r\nfeed\r\n:1",
        )]);
    }
    let mut publisher = server.raw();
    let mut requests = Vec::new();
    for i in 0..200 {
        write!(requests, "PUBLISH feed message-{i:03}\r\n").unwrap();
    }
    publisher.send(&requests);
    publisher.expect(&b":50\r\n".repeat(200));
    for sub in &mut subscribers {
        for i in 0..200 {
            let text = format!("message-{i:03}");
            sub.expect(
                format!("*3\r\n$7\r\nmessage\r\n$4\r\nfeed\r\n$11\r\n{text}\r\n").as_bytes(),
            );
        }
    }
}

/// Eight connections pipeline 20,000 PUBLISHes each into one channel at
/// the same time; a subscriber that keeps reading gets all 160,000, as
/// from redis-server (3 MB in all, far below any buffer limit).
pub fn many_publishers_at_once_never_cut_off_a_reader(bin: &str) {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 20_000;
    let server = Server::start(bin, &[]);
    let mut subscriber = server.raw();
    subscriber.converse(&[("SUBSCRIBE hot", "*3\r\n$9\r\nsubscribe\r\n$3\r\nhot\r\n:1")]);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let mut publisher = server.raw();
            thread::spawn(move || {
                publisher.send(&b"PUBLISH hot m\r\n".repeat(EACH));
                publisher.expect(&b":1\r\n".repeat(EACH));
            })
        })
        .collect();
    let message = b"*3\r\n$7\r\nmessage\r\n$3\r\nhot\r\n$1\r\nm\r\n";
    let got = subscriber.read_exact(message.len() * PUBLISHERS * EACH);
    assert!(
        got.chunks(message.len()).all(|chunk| chunk == message),
        "the subscriber's stream holds something else than the messages"
    );
    for publisher in publishers {
        publisher.join().unwrap();
    }
}

pub fn subscribed_mode_allows_only_subscription_commands(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    sub.converse(&[
        ("SUBSCRIBE a", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1"),
        (
            "GET x",
            "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT \
             / RESET are allowed in this context",
        ),
        // A subcommand is looked up first, and named with its command.
        (
            "CONFIG GET port",
            "-ERR Can't execute 'config|get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
             QUIT / RESET are allowed in this context",
        ),
        (
            "CONFIG FOO",
            "-ERR unknown subcommand 'FOO'. Try CONFIG HELP.",
        ),
        ("PING", "*2\r\n$4\r\npong\r\n$0\r\n"),
        ("PING hi", "*2\r\n$4\r\npong\r\n$2\r\nhi"),
        (
            "PING a b",
            "-ERR wrong number of arguments for 'ping' command",
        ),
        // The error left the connection usable, and still subscribed.
        ("PSUBSCRIBE p", "*3\r\n$10\r\npsubscribe\r\n$1\r\np\r\n:2"),
        ("RESET", "+RESET"),
        ("GET x", "$-1"),
        ("PING", "+PONG"),
        ("SUBSCRIBE a", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1"),
        ("QUIT", "+OK"),
    ]);
    sub.expect_closed();
    let mut other = server.raw();
    other.converse(&[
        ("PUBSUB NUMSUB a", "*2\r\n$1\r\na\r\n:0"),
        ("PUBSUB NUMPAT", ":0"),
    ]);
}

pub fn resp3_gets_pushes_and_may_run_any_command(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    sub.send(b"HELLO 3\r\n");
    assert_eq!(sub.read_line(), "%7");
    for _ in 0..14 {
        let line = sub.read_line();
        if line.starts_with('$') {
            sub.read_line();
        }
    }
    sub.converse(&[
        ("SUBSCRIBE a", ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1"),
        ("SET k v", "+OK"),
        ("GET k", "$1\r\nv"),
        ("PING", "+PONG"),
    ]);
    server.raw().converse(&[("PUBLISH a hi", ":1")]);
    sub.expect(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n");
}

pub fn a_client_library_subscribes_and_receives(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut conn = server.client();
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe("library").unwrap();
    pubsub.psubscribe("lib*").unwrap();
    let mut publisher = server.client();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("library")
        .arg("book")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(receivers, 2);
    let mut got = Vec::new();
    for _ in 0..2 {
        let message = pubsub.get_message().unwrap();
        let payload: String = message.get_payload().unwrap();
        got.push((
            message.get_channel_name().to_string(),
            payload,
            message.from_pattern(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("library".to_string(), "book".to_string(), false),
            ("library".to_string(), "book".to_string(), true),
        ]
    );
}

pub fn channels_without_subscribers_are_removed(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    let mut requests = Vec::new();
    for i in 0..10_000 {
        write!(
            requests,
            "SUBSCRIBE short-lived-{i}\r\nUNSUBSCRIBE short-lived-{i}\r\n"
        )
        .unwrap();
    }
    sub.send(&requests);
    for i in 0..10_000 {
        let name = format!("short-lived-{i}");
        let len = name.len();
        sub.expect(format!("*3\r\n$9\r\nsubscribe\r\n${len}\r\n{name}\r\n:1\r\n").as_bytes());
        sub.expect(format!("*3\r\n$11\r\nunsubscribe\r\n${len}\r\n{name}\r\n:0\r\n").as_bytes());
    }
    // And a client that leaves without unsubscribing takes its channels along.
    sub.converse(&[(
        "PSUBSCRIBE left-*",
        "*3\r\n$10\r\npsubscribe\r\n$6\r\nleft-*\r\n:1",
    )]);
    sub.converse(&[(
        "SUBSCRIBE left-open",
        "*3\r\n$9\r\nsubscribe\r\n$9\r\nleft-open\r\n:2",
    )]);
    drop(sub);
    let mut other = server.raw();
    wait_until("the departed subscriber's channels are gone", || {
        other.send(b"PUBSUB NUMPAT\r\n");
        other.read_line() == ":0"
    });
    other.converse(&[("PUBSUB CHANNELS", "*0")]);
}

pub fn a_slow_subscriber_is_cut_off_and_others_get_everything(bin: &str) {
    let server = Server::start(bin, &[]);
    let baseline = server.memory_kib("VmRSS");
    let mut slow = server.raw();
    slow.converse(&[(
        "SUBSCRIBE firehose",
        "*3\r\n$9\r\nsubscribe\r\n$8\r\nfirehose\r\n:1",
    )]);
    let mut fast = server.raw();
    fast.converse(&[(
        "SUBSCRIBE firehose",
        "*3\r\n$9\r\nsubscribe\r\n$8\r\nfirehose\r\n:1",
    )]);

    // 100 MB in 1,000 messages of 100 KB. The slow subscriber never reads;
    // the server may hold 32 MB for it, as Redis would, and no more.
    let (count, size) = (1000, 100 * 1024);
    let reader = thread::spawn(move || {
        for i in 0..count {
            let header = format!("*3\r\n$7\r\nmessage\r\n$8\r\nfirehose\r\n${size}\r\n");
            fast.expect(header.as_bytes());
            let body = fast.read_exact(size + 2);
            assert!(
                body.starts_with(format!("{i:08}").as_bytes()),
                "message {i} out of order"
            );
        }
        fast
    });
    let mut publisher = server.raw();
    let mut peak_growth = 0;
    for i in 0..count {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(size, b'.');
        let mut request =
            format!("*3\r\n$7\r\nPUBLISH\r\n$8\r\nfirehose\r\n${size}\r\n").into_bytes();
        request.extend_from_slice(&payload);
        request.extend_from_slice(b"\r\n");
        publisher.send(&request);
        let receivers = publisher.read_line();
        assert!(
            receivers == ":2" || receivers == ":1",
            "PUBLISH answered {receivers}"
        );
        if i % 50 == 49 {
            let growth = server.memory_kib("VmRSS").saturating_sub(baseline);
            peak_growth = peak_growth.max(growth);
        }
    }
    let _still_subscribed = reader.join().expect("the fast subscriber missed messages");
    assert!(
        peak_growth < 64 * 1024,
        "the server grew by {peak_growth} KiB while a subscriber did not read"
    );

    // The slow one was disconnected: after whatever its socket buffers
    // held, the connection ends.
    let stream = slow.stream();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow subscriber was not disconnected: {e}"),
        }
    }
    server
        .raw()
        .converse(&[("PUBSUB NUMSUB firehose", "*2\r\n$8\r\nfirehose\r\n:1")]);
}

/// Reads one reply or pushed message and returns its lines, bulk strings
/// read whole: `["*3", "message", "a", "hi"]`, or `["+PONG"]`.
fn read_frame(raw: &mut Raw) -> Vec<String> {
    let first = raw.read_line();
    let mut frame = vec![first.clone()];
    if let Some(count) = first.strip_prefix('*') {
        for _ in 0..count.parse::<usize>().unwrap() {
            let header = raw.read_line();
            frame.push(match header.strip_prefix('$') {
                Some("-1") => "(nil)".to_string(),
                Some(_) => raw.read_line(),
                None => header, // an integer, `:1`
            });
        }
    }
    frame
}

pub fn nothing_arrives_after_the_unsubscribe_confirmation(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut sub = server.raw();
    sub.converse(&[("SUBSCRIBE a", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1")]);
    // 300 messages of 64 KB: more than the socket buffers hold, so some
    // are still waiting inside the server when the client leaves.
    let payload = "m".repeat(64 * 1024);
    let mut publisher = server.raw();
    let requests = format!("PUBLISH a {payload}\r\n").repeat(300);
    publisher.send(requests.as_bytes());
    publisher.expect(&b":1\r\n".repeat(300));

    sub.send(b"UNSUBSCRIBE a\r\nPING\r\n");
    let mut before = 0;
    loop {
        let frame = read_frame(&mut sub);
        if frame[0] == "*3" && frame[1] == "unsubscribe" {
            assert_eq!(frame, ["*3", "unsubscribe", "a", ":0"]);
            break;
        }
        assert_eq!(
            frame[..3],
            ["*3", "message", "a"],
            "before the confirmation"
        );
        before += 1;
    }
    assert!(before > 0 && before <= 300);
    // Out of subscribed mode, the next things must be replies, and only
    // replies: no message of channel `a` may follow its confirmation.
    assert_eq!(read_frame(&mut sub), ["+PONG"]);
    sub.converse(&[("ECHO done", "$4\r\ndone")]);
}

/// With the glob matcher of this step, CONFIG GET takes patterns too, as
/// Redis's does: without regard to case, each parameter answered once, and
/// an exact name answered as the client spelled it.
pub fn config_get_matches_glob_patterns(bin: &str) {
    let server = Server::start(bin, &[]);
    let mut raw = server.raw();
    // The port as configured, whatever the test harness chose.
    raw.send(b"CONFIG GET port\r\n");
    let reply = raw.read_exact(4 + 10);
    assert_eq!(&reply[..], b"*2\r\n$4\r\nport\r\n");
    let (length, value) = (raw.read_line(), raw.read_line());
    let port = format!("{length}\r\n{value}");
    raw.converse(&[
        ("CONFIG GET APPENDONLY?", "*0"),
        ("CONFIG GET [p]ort", &format!("*2\r\n$4\r\nport\r\n{port}")),
        (
            "CONFIG GET PORT p*t port",
            &format!("*2\r\n$4\r\nPORT\r\n{port}"),
        ),
    ]);
    raw.send(b"CONFIG GET *\r\n");
    let count: usize = raw.read_line()[1..].parse().unwrap();
    let mut names = Vec::new();
    for i in 0..count {
        raw.read_line(); // the length
        let text = raw.read_line();
        if i % 2 == 0 {
            names.push(text);
        }
    }
    for name in ["appendonly", "dir", "port", "save"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}
