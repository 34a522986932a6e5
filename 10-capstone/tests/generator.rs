//! The load generator against real servers: step 03's binary, and two tiny
//! misbehaving ones written here.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;

use test_support::{wait_with_deadline, Server};

const BIN: &str = env!("CARGO_BIN_EXE_step10-capstone");

/// Step 03's server binary, built first if need be. It sits next to ours in
/// the same target directory; a binary crate cannot be a dependency, so we
/// ask cargo to build it (a no-op when `cargo test --workspace` already has).
fn step03() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(BIN)
            .parent()
            .expect("a target directory")
            .to_path_buf();
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--quiet", "-p", "step03-get-set"]);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo");
        assert!(status.success(), "cargo build -p step03-get-set failed");
        let path = dir.join("step03-get-set");
        assert!(path.exists(), "{} was not built", path.display());
        path.to_string_lossy().into_owned()
    })
}

/// Runs the generator to the end (or fails the test after a deadline).
fn generate(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the generator");
    wait_with_deadline(child, "step10-capstone")
}

/// Every number that follows `"key": ` in a JSON document, in order.
fn numbers(json: &str, key: &str) -> Vec<f64> {
    let pattern = format!("\"{key}\": ");
    json.match_indices(&pattern)
        .map(|(at, _)| {
            let rest = &json[at + pattern.len()..];
            let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
            rest[..end]
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key} in {json}"))
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_request_is_answered_and_percentiles_are_ordered() {
    let server = Server::start(step03(), &[]);
    let port = server.port().to_string();
    for extra in [&["-P", "4"][..], &["--rate", "4000", "--threads", "2"]] {
        let mut args = vec![
            "-p", &port, "-c", "4", "-n", "1000", "-t", "set,get", "-r", "100",
        ];
        args.extend(extra);
        args.push("--json");
        let out = generate(&args);
        let json = text(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {json}{}",
            text(&out.stderr)
        );
        assert_eq!(numbers(&json, "requests"), [1000.0, 1000.0], "{json}");
        assert_eq!(numbers(&json, "errors"), [0.0, 0.0], "{json}");
        for (at, _) in json.match_indices("\"latency_us\": {") {
            let latency = &json[at..at + json[at..].find('}').unwrap()];
            let keys = ["min", "p50", "p95", "p99", "p99_9", "max"];
            let values: Vec<f64> = keys.iter().map(|key| numbers(latency, key)[0]).collect();
            assert!(
                values.windows(2).all(|w| w[0] <= w[1]),
                "{keys:?} = {values:?}"
            );
        }
    }
    // The keys really were random: SET wrote up to 100 of them.
    let mut raw = server.raw();
    raw.send(b"DBSIZE\r\n");
    let keys: u64 = raw.read_line().trim_start_matches(':').parse().unwrap();
    assert!((50..=100).contains(&keys), "{keys} keys");
}

#[test]
fn compare_interleaves_rounds_and_draws_a_plot() {
    let a = Server::start(step03(), &[]);
    let b = Server::start(step03(), &[]);
    let svg = std::env::temp_dir().join(format!("step10-test-{}.svg", std::process::id()));
    let targets = format!("first={},second={}", a.addr(), b.addr());
    let out = generate(&[
        "--compare",
        &targets,
        "--rounds",
        "2",
        "-c",
        "2",
        "-n",
        "300",
        "-t",
        "ping",
        "-q",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(
        lines[0].starts_with("PING first: ") && lines[0].contains("(1.00x)"),
        "{report}"
    );
    assert!(lines[1].starts_with("PING second: "), "{report}");
    let chart = std::fs::read_to_string(&svg).expect("the plot was written");
    std::fs::remove_file(&svg).ok();
    assert_eq!(chart.matches("<polyline").count(), 2);
    assert!(chart.contains(">first</text>") && chart.contains(">second</text>"));
}

#[test]
fn error_replies_are_counted_and_fail_the_run() {
    let server = Server::start(step03(), &[]);
    let out = generate(&[
        "-p",
        &server.port().to_string(),
        "-c",
        "3",
        "-n",
        "200",
        "NOSUCH",
        "x",
    ]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("200 requests"), "{report}");
    assert!(
        report.contains("errors: 200 error replies, the first: ERR unknown command 'NOSUCH'"),
        "{report}"
    );
    assert!(
        text(&out.stderr).contains("200 errors"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dropped_connections_are_counted_and_fail_the_run() {
    // A "server" that reads each client's first request and hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let rude = thread::spawn(move || {
        for _ in 0..2 {
            let (mut socket, _) = listener.accept().unwrap();
            let _ = socket.read(&mut [0; 64]);
        }
    });
    let out = generate(&["-p", &port, "-c", "2", "-n", "100", "-t", "ping", "--json"]);
    rude.join().unwrap();
    let json = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(numbers(&json, "dropped_connections"), [2.0], "{json}");
    assert_eq!(numbers(&json, "errors"), [2.0], "{json}");
    let unanswered = numbers(&json, "unanswered")[0];
    assert!(unanswered >= 2.0, "at least the two first requests: {json}");
}

#[test]
fn an_unreachable_server_is_an_error_not_a_zero() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let out = generate(&["-p", &port.to_string(), "-n", "10", "-t", "ping"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect to 127.0.0.1:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_options_exit_with_usage_status() {
    let out = generate(&["-c", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("-c must be at least 1"));
    let out = generate(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Usage: step10-capstone"));
}
