//! Shared helpers for every step's integration tests.
//!
//! A test starts the step's real binary with [`Server::start`], which asks the
//! server for an ephemeral port (`--port 0`), waits for the line announcing
//! the address it really bound, and kills the process when the `Server` is
//! dropped. Tests then talk to it with a real Redis client ([`Server::client`]),
//! with raw bytes ([`Server::raw`]) or with `redis-cli` ([`redis_cli`]).

pub mod suite;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for anything before failing: generous, because CI
/// machines are slow, yet finite, so a hung server fails the test instead of
/// hanging the suite.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The line every step prints once its listener is bound.
const READY: &str = "ready to accept connections on ";

/// A running step binary; killed when dropped.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The server's working directory: files it writes by default (a
    /// dump.rdb, say) land here and vanish with it, not in the source tree.
    _workdir: TempDir,
}

impl Server {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_<name>")`) on a free port
    /// with the given extra arguments, and waits until it accepts connections.
    pub fn start(binary: &str, args: &[&str]) -> Server {
        let workdir = TempDir::new("workdir");
        let mut child = server_command(binary, args)
            .current_dir(workdir.path())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));

        // Both pipes are drained for the whole life of the process: a server
        // that logs into a full pipe would block, and the test with it.
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        drain(stdout, Arc::clone(&log), Some(ready_tx));
        drain(stderr, Arc::clone(&log), None);

        let addr = match ready_rx.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{binary} did not report that it is ready; its output:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            log,
            _workdir: workdir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server printed so far, stdout and stderr interleaved.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A synchronous `redis` crate connection to the server.
    pub fn client(&self) -> redis::Connection {
        let url = format!("redis://{}/", self.addr);
        let client = redis::Client::open(url).expect("valid URL");
        let conn = client
            .get_connection()
            .expect("connect with the redis crate");
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn
    }

    /// A raw TCP connection, for bytes no well-behaved client would send.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// A memory figure of the server process in KiB, from /proc (Linux
    /// only): `"VmRSS"` for resident memory, `"VmSize"` for address space,
    /// which also counts allocations that were never touched.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// Sends a signal by name ("TERM", "INT"), as `kill -TERM` would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the server to exit by itself (after a signal or SHUTDOWN)
    /// and returns how it exited; fails the test if it does not.
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit; its output:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGKILL, as a crash or `kill -9` would, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    ready: Option<mpsc::Sender<SocketAddr>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &ready {
                if let Some((_, addr)) = line.split_once(READY) {
                    if let Ok(addr) = addr.trim().parse() {
                        let _ = tx.send(addr);
                    }
                }
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// A raw socket with helpers that fail loudly instead of hanging.
pub struct Raw {
    stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// Wraps a connection made some other way (say, one a test accepted).
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads exactly `expected.len()` bytes and asserts they are `expected`.
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_exact(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "unexpected reply"
        );
    }

    /// Sends each inline command of `script` and expects its reply, exactly;
    /// both are written without their final CRLF.
    pub fn converse(&mut self, script: &[(&str, &str)]) {
        for (request, reply) in script {
            self.send(format!("{request}\r\n").as_bytes());
            let expected = format!("{reply}\r\n");
            let got = self.read_exact(expected.len());
            assert_eq!(
                String::from_utf8_lossy(&got),
                expected,
                "unexpected reply to {request}"
            );
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
        buf
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    pub fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            self.stream.read_exact(&mut byte).expect("reading a line");
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Asserts that the server closes the connection, with nothing more to say.
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the connection to close, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection to close, got {e}"),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Runs `redis-cli -p <port> <args>` and returns its output, or `None` when
/// redis-cli is not installed. In CI (`CI=true`) a missing redis-cli is a
/// failure, not a skip: CI installs it, so its absence is a broken setup.
pub fn redis_cli(port: u16, args: &[&str], stdin: Option<&[u8]>) -> Option<Output> {
    if !tool_available("redis-cli") {
        return None;
    }
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("feed redis-cli");
    }
    drop(pipe);
    Some(wait_with_deadline(child, "redis-cli"))
}

/// Whether an external tool (redis-cli, redis-server, ...) can be used. Outside
/// CI a missing tool skips that part of a test with a note; in CI it panics.
pub fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            panic!("{tool} is required in CI (.ci/run installs it) but is not installed");
        }
        eprintln!("note: {tool} is not installed; skipping the part of this test that needs it");
    }
    found
}

/// Waits for a child process, killing it if it outlives [`PATIENCE`]. Its
/// output is read while it runs, so a chatty child never blocks on a full pipe.
pub fn wait_with_deadline(mut child: Child, what: &str) -> Output {
    fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {PATIENCE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `binary` with `args` to completion (for servers that must refuse
/// to start) and returns its output; fails the test if it does not exit.
pub fn run_to_exit(binary: &str, args: &[&str]) -> Output {
    let child = server_command(binary, args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    wait_with_deadline(child, binary)
}

/// A step's binary on a port of its choosing, with `args`, its output
/// piped to the test.
fn server_command(binary: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A temporary directory for one test's files, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("byor-{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A real redis-server for interoperability tests, on a free port; shut
/// down when dropped. `None` when redis-server is not installed (outside
/// CI; in CI that is a failure, as with [`redis_cli`]).
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub fn start(args: &[&str]) -> Option<RedisServer> {
        if !tool_available("redis-server") {
            return None;
        }
        // redis-server cannot be asked for an ephemeral port, so borrow one
        // from the kernel and hand it over.
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = RedisServer { child, port };
        wait_until("redis-server accepts connections", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap();
        let mut conn = client.get_connection().expect("connect to redis-server");
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        // A server still loading its files answers LOADING; wait that out.
        wait_until("redis-server has loaded its data", || {
            redis::cmd("PING").query::<String>(&mut conn).is_ok()
        });
        conn
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago, for servers that must be restarted on
/// the same port (a master its replicas reconnect to).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
/// Tests wait for a state with this, never with a bare sleep.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
