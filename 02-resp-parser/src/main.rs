//! Step 02: speak RESP.
//!
//! Step 01 echoed bytes. Now the bytes mean something: each connection reads
//! RESP requests (or inline commands typed into `nc`) into a growing buffer,
//! parses as many whole commands as the buffer holds, runs them, and answers
//! all of them with a single write. `resp.rs` holds the protocol, and
//! `commands.rs` the commands: PING, ECHO, HELLO, COMMAND, CONFIG and QUIT.

mod commands;
mod resp;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use commands::Client;
use resp::{Frame, RequestParser};

/// Command-line options, spelled the way redis-server spells them.
pub struct Config {
    bind: String,
    /// 0 asks the operating system for any free port (the tests use this).
    port: u16,
    /// The most bytes a client may send without completing a command
    /// (Redis's `client-query-buffer-limit`); past it, it is cut off.
    query_buffer_limit: usize,
}

impl Config {
    fn from_args(mut args: impl Iterator<Item = String>) -> Result<Config> {
        let mut config = Config {
            bind: "127.0.0.1".to_string(),
            port: 6380,
            query_buffer_limit: 1 << 30,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bind" => config.bind = value()?,
                "--port" => config.port = value()?.parse().context("--port takes 0 to 65535")?,
                "--client-query-buffer-limit" => config.query_buffer_limit = size(&value()?)?,
                _ => bail!("unknown option '{flag}' (this step knows --bind, --port and --client-query-buffer-limit)"),
            }
        }
        Ok(config)
    }
}

/// A size as redis-server's configuration writes it: `1048576`, `512kb`,
/// `1mb`, `1gb` (powers of 1024; `k`, `m`, `g` alone are powers of 1000).
fn size(text: &str) -> Result<usize> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: usize = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => bail!("'{text}' is not a size like 1048576, 512kb or 1gb"),
    };
    let number: usize = digits
        .parse()
        .with_context(|| format!("'{text}' is not a size"))?;
    number
        .checked_mul(unit)
        .with_context(|| format!("'{text}' is too large"))
}

/// What every connection shares: for now only the configuration.
pub struct Server {
    config: Config,
}

/// A batch of replies is written out once it reaches this size, even before
/// the batch is complete, so a client that pipelines thousands of commands
/// does not make us hold all their replies in memory at once.
const FLUSH_AT: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::from_args(std::env::args().skip(1))?;
    let listener = TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    println!(
        "step02-resp-parser: ready to accept connections on {}",
        listener.local_addr()?
    );
    let server = Arc::new(Server { config });

    let mut next_client_id = 1;
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
        let client = Client::new(next_client_id);
        next_client_id += 1;
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            if let Err(e) = serve(socket, client, &server).await {
                eprintln!("{peer}: connection closed by error: {e}");
            }
        });
    }
}

/// Runs one client's connection: read, parse, execute, reply, repeat.
async fn serve(mut socket: TcpStream, mut client: Client, server: &Server) -> Result<()> {
    // Replies leave as soon as they are written instead of waiting for the
    // client's ACK of the previous packet (Nagle's algorithm): we already
    // batch them ourselves, one write per read.
    socket.set_nodelay(true)?;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut requests = RequestParser::default();
    let mut output = Vec::with_capacity(16 * 1024);

    loop {
        input.reserve(16 * 1024);
        if socket.read_buf(&mut input).await? == 0 {
            return Ok(()); // The client hung up.
        }

        // Run every whole command the buffer holds before answering: replies
        // to a pipelining client then leave in one write, not one each.
        loop {
            let args = match requests.next(&mut input) {
                Ok(Some((args, _))) => args,
                Ok(None) => break, // The rest of the command is still in flight.
                Err(error) => {
                    // As Redis does: say what was wrong, then hang up, since
                    // we can no longer tell where the next command starts.
                    eprintln!("protocol error from client {}: {error}", client.id);
                    Frame::Error(error.to_string()).encode(&mut output, client.protocol);
                    socket.write_all(&output).await?;
                    return Ok(());
                }
            };
            if args.is_empty() {
                continue; // Redis ignores blank lines, `*0` and `*-1`.
            }
            let reply = commands::execute(&args, &mut client, server);
            reply.encode(&mut output, client.protocol);
            if client.quitting {
                break;
            }
            if output.len() >= FLUSH_AT {
                socket.write_all(&output).await?;
                output.clear();
            }
        }

        if !output.is_empty() {
            socket.write_all(&output).await?;
            output.clear();
        }
        if client.quitting {
            return Ok(());
        }
        let unfinished = requests.pending() + input.len();
        if unfinished > server.config.query_buffer_limit {
            // As Redis does at `client-query-buffer-limit`: a client that
            // sends this much without finishing a command is cut off.
            eprintln!(
                "client {} sent {unfinished} bytes without completing a command; disconnecting it",
                client.id,
            );
            return Ok(());
        }
    }
}
