//! Step 01: a TCP echo server.
//!
//! The skeleton every later step keeps: bind a listener, accept connections
//! in a loop, and give each connection a task of its own. Whatever a client
//! sends comes straight back until the client hangs up. One misbehaving
//! client can only ever end its own connection, never the server.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Command-line options, spelled the way redis-server spells them.
struct Config {
    bind: String,
    /// 0 asks the operating system for any free port (the tests use this).
    port: u16,
}

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Config> {
        let mut config = Config {
            bind: "127.0.0.1".to_string(),
            port: 6380,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bind" => config.bind = value()?,
                "--port" => config.port = value()?.parse().context("--port takes 0 to 65535")?,
                _ => bail!("unknown option '{flag}' (this step knows --bind and --port)"),
            }
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_args(std::env::args().skip(1))?;
    let listener = TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    println!(
        "step01-tcp-echo: ready to accept connections on {}",
        listener.local_addr()?
    );

    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE: out of file descriptors. That passes as other
                // clients leave, so pause instead of spinning or giving up.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // One task per connection. `move` hands the socket to the task; the
        // accept loop goes straight back to waiting for the next client.
        tokio::spawn(async move {
            if let Err(e) = echo(socket).await {
                eprintln!("{peer}: connection closed by error: {e}");
            }
        });
    }
}

/// Copies everything the client sends back to it, until end of file.
async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(()); // The client closed its side: we are done.
        }
        socket.write_all(&buf[..n]).await?;
    }
}
