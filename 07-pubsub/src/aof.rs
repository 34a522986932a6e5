//! The append-only file: every change to the keyspace, as the command that
//! redoes it, appended to a file and replayed at the next start.
//!
//! The file holds plain RESP commands, the format of Redis's own AOF, so
//! `redis-check-aof` reads it and redis-server can start from it. The
//! keyspace writes the commands into its change log under its lock (see
//! `db.rs`); a writer task moves them to disk, and a connection waits for
//! it before replying. When the data must reach the disk follows
//! `appendfsync`:
//!
//! * `always`: before any reply leaves, so an acknowledged write survives
//!   even a power cut. One fsync covers every change made so far, by every
//!   connection: a pipelined batch pays for one fsync, not one each.
//! * `everysec`: a background task fsyncs once a second. A power cut may
//!   lose the last second of writes; a crash of this process loses nothing,
//!   since the data is already in the operating system's page cache.
//! * `no`: the operating system flushes when it likes (Linux: about every
//!   30 s).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};

use crate::commands::{self, Client};
use crate::resp::{Frame, RequestParser};
use crate::Server;

/// When the file is fsynced: Redis's `appendfsync` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(value: &str) -> Result<Fsync> {
        match value.to_ascii_lowercase().as_str() {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "no" => Ok(Fsync::No),
            _ => bail!("--appendfsync must be always, everysec or no, not '{value}'"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

/// The connections' side of the append-only file: how they wait until the
/// changes they made are written.
pub struct AofFile {
    /// Wakes the writer task when there are changes to write.
    wake: Notify,
    /// How far into the change log the file is written (and, with
    /// `always`, fsynced), counted in bytes since the server started.
    written: watch::Receiver<u64>,
}

/// The writer task's side: the only owner of the file handle.
pub struct AofWriter {
    file: File,
    fsync: Fsync,
    written: watch::Sender<u64>,
}

/// Opens `path` for appending, creating it if needed.
pub async fn open(path: &Path, fsync: Fsync) -> Result<(AofFile, AofWriter)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("cannot open the append-only file {}", path.display()))?;
    let (tx, rx) = watch::channel(0);
    let aof = AofFile {
        wake: Notify::new(),
        written: rx,
    };
    let writer = AofWriter {
        file,
        fsync,
        written: tx,
    };
    Ok((aof, writer))
}

impl AofFile {
    /// Returns once the change log is written up to `position` (see
    /// `Keyspace::log_position`) as durably as `appendfsync` promises.
    pub async fn wait_until_written(&self, position: u64) {
        if *self.written.borrow() >= position {
            return;
        }
        self.wake.notify_one();
        let mut written = self.written.clone();
        // The writer never stops while the server runs; if it ever did, no
        // write could be acknowledged again.
        if written.wait_for(|&end| end >= position).await.is_err() {
            let gone = std::io::Error::other("the writer task stopped");
            fail_stop(&gone);
        }
    }
}

impl AofWriter {
    /// The writer task: whenever woken, take every change logged so far,
    /// append it, fsync if the policy says so, and announce how far the
    /// file now reaches.
    ///
    /// One task doing all the writing is what makes group commit work:
    /// while it waits for one fsync, every connection keeps executing
    /// commands, and the next round takes all their changes at once, so a
    /// busy server pays one fsync for many writes, as Redis does.
    pub async fn run(mut self, server: Arc<Server>) {
        let aof = server
            .aof
            .as_ref()
            .expect("the writer runs only with an AOF");
        loop {
            aof.wake.notified().await;
            let (changes, end) = {
                let mut db = server.db.lock();
                (db.take_changes(), db.log_position())
            };
            if !changes.is_empty() {
                if let Err(e) = self.append(&changes).await {
                    fail_stop(&e);
                }
            }
            self.written.send_replace(end);
        }
    }

    async fn append(&mut self, changes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(changes).await?;
        // A tokio `File` hands writes to a background thread; `flush` waits
        // for that thread to finish and reports its error, if any.
        self.file.flush().await?;
        if self.fsync == Fsync::Always {
            self.file.sync_data().await?;
        }
        Ok(())
    }

    /// A second handle on the file, for the `everysec` task to fsync
    /// through without waiting for the writer.
    pub async fn sync_handle(&self) -> Result<File> {
        Ok(self.file.try_clone().await?)
    }
}

/// The `everysec` policy: fsync once a second, for as long as the server
/// runs. A failure here means writes we acknowledged may not be on disk,
/// which we cannot take back, so we stop the server (see `fail_stop`).
pub async fn sync_every_second(file: File) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = file.sync_data().await {
            fail_stop(&e);
        }
    }
}

/// Called when the AOF cannot be written. The keyspace already holds
/// changes the file does not, and replies may be about to promise them, so
/// we stop. Redis does the same with `always`; with `everysec` and `no` it
/// instead refuses writes (`-MISCONF`) until the disk recovers: more
/// forgiving, and more to get right (an exercise in this step).
pub fn fail_stop(error: &std::io::Error) -> ! {
    eprintln!(
        "cannot write the append-only file: {error}; \
         exiting so that no unsaved write is acknowledged"
    );
    std::process::exit(1);
}

/// Rebuilds the keyspace from the file at `path`, if there is one, by
/// running every command in it. Returns how many commands it ran.
///
/// A command cut short at the very end (the server died mid-write) is
/// dropped and the file truncated to the last whole command, as Redis's
/// `aof-load-truncated yes` does. Anything else that is not a valid
/// command stops the start with an error naming the byte offset: a bad
/// file is for a person to look at (`redis-check-aof`), never to skip.
pub async fn replay(path: &Path, server: &Server) -> Result<usize> {
    let data = match tokio::fs::read(path).await {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let corrupt = |offset: usize, why: String| {
        anyhow::anyhow!(
            "the append-only file {} is corrupt in the command at byte {offset} ({why}); \
             `redis-check-aof --fix` can truncate it there, losing what follows",
            path.display()
        )
    };

    let mut client = Client::new(0);
    // History, not a client's commands: no deadline has passed for it.
    client.replaying = true;
    let size = data.len();
    // The file's own buffer, handed over without a copy.
    let mut input = BytesMut::from(Bytes::from(data));
    let mut requests = RequestParser::default();
    let mut offset = 0; // where the next command starts
    let mut commands = 0;
    while let Some(&first) = input.first() {
        // The file holds only RESP arrays; inline commands are for people.
        if first != b'*' {
            return Err(corrupt(
                offset,
                format!("expected '*', found byte {first:#04x}"),
            ));
        }
        let (args, used) = match requests.next(&mut input) {
            Ok(Some(request)) => request,
            Ok(None) => break, // A truncated last command: handled below.
            Err(error) => {
                let why = error.to_string();
                return Err(corrupt(offset, why.trim_start_matches("ERR ").to_string()));
            }
        };
        if !args.is_empty() {
            if let Frame::Error(error) = commands::execute(&args, &mut client, server) {
                let name = String::from_utf8_lossy(&args[0]);
                return Err(corrupt(offset, format!("{name} answered: {error}")));
            }
            commands += 1;
        }
        offset += used;
    }

    if offset < size {
        eprintln!(
            "warning: {} ends with an incomplete command ({} bytes at byte {offset}); \
             truncating the file there, as Redis's aof-load-truncated does",
            path.display(),
            size - offset
        );
        let file = OpenOptions::new().write(true).open(path).await?;
        file.set_len(offset as u64).await?;
        file.sync_all().await?;
    }
    Ok(commands)
}
