//! Graceful shutdown: stop accepting, let every connection finish what it
//! is doing, then make the persistence promises true before exiting.
//!
//! A shutdown starts with SIGINT (Ctrl-C), SIGTERM (what `kill` and
//! service managers send) or the SHUTDOWN command. All three set one
//! `watch` channel that every connection watches: a connection finishes
//! the command it is executing, sends that reply, and closes, without
//! starting the next. Each connection holds a permit of one `Semaphore`
//! (the same one that enforces `--maxclients`), and drops it when it ends;
//! when every permit is home, every connection is gone. Stragglers get a
//! bounded grace period, `--shutdown-timeout`, and are then closed with
//! the process.
//!
//! Then the AOF is written out and fsynced, a last snapshot is saved if
//! save points are configured (SHUTDOWN NOSAVE skips it, SAVE forces it),
//! and the process exits 0, as Redis's `prepareForShutdown` does.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::snapshot::{self, SaveError};
use crate::Server;

/// Whether to save a snapshot on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveOnExit {
    /// Only if save points are configured: signals and a plain SHUTDOWN.
    IfConfigured,
    /// SHUTDOWN NOSAVE.
    Never,
    /// SHUTDOWN SAVE.
    Always,
}

pub struct Shutdown {
    /// `None` until a shutdown is requested; then how to save.
    requested: watch::Sender<Option<SaveOnExit>>,
    /// One permit per client connection.
    permits: Arc<Semaphore>,
    max_clients: u32,
}

impl Shutdown {
    pub fn new(max_clients: u32) -> Shutdown {
        Shutdown {
            requested: watch::Sender::new(None),
            permits: Arc::new(Semaphore::new(max_clients as usize)),
            max_clients,
        }
    }

    /// Starts the shutdown. The first request decides how to save.
    pub fn request(&self, save: SaveOnExit) {
        self.requested.send_if_modified(|requested| {
            let first = requested.is_none();
            if first {
                *requested = Some(save);
            }
            first
        });
    }

    pub fn is_requested(&self) -> bool {
        self.requested.borrow().is_some()
    }

    /// Completes once a shutdown is requested, even if that happened
    /// before the call: a connection accepted at the last moment still
    /// sees it.
    pub async fn requested(&self) {
        let mut requested = self.requested.subscribe();
        // The sender lives as long as the server, so this cannot fail.
        let _ = requested.wait_for(Option::is_some).await;
    }

    /// A permit for one more client connection, or `None` at
    /// `--maxclients`. The connection gives it back by dropping it.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    fn open_connections(&self) -> usize {
        self.max_clients as usize - self.permits.available_permits()
    }
}

/// SIGTERM and SIGINT, caught instead of killing the process outright.
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

/// Takes over SIGTERM and SIGINT. Called before the server says it is
/// ready, so that no signal can arrive in between and kill it the old way.
pub fn catch_signals() -> std::io::Result<Signals> {
    Ok(Signals {
        terminate: signal(SignalKind::terminate())?,
        interrupt: signal(SignalKind::interrupt())?,
    })
}

/// Waits for SIGINT, SIGTERM or SHUTDOWN, and returns how to save.
pub async fn wait_for_request(server: &Server, mut signals: Signals) -> SaveOnExit {
    let shutdown = &server.shutdown;
    let reason = tokio::select! {
        _ = signals.terminate.recv() => "SIGTERM",
        _ = signals.interrupt.recv() => "SIGINT",
        () = shutdown.requested() => "SHUTDOWN",
    };
    shutdown.request(SaveOnExit::IfConfigured);
    let save = shutdown.requested.borrow().expect("requested above");
    println!("{reason} received: shutting down");
    save
}

/// Drains the connections, then persists what must be persisted. Returns
/// the process's exit code: 0, or 1 if a promise could not be kept.
pub async fn finish(server: &Server, save: SaveOnExit) -> i32 {
    let shutdown = &server.shutdown;
    let grace = server.config.shutdown_timeout;
    println!(
        "waiting up to {grace:?} for {} connections to finish their commands",
        shutdown.open_connections()
    );
    let drained = tokio::time::timeout(grace, shutdown.permits.acquire_many(shutdown.max_clients));
    match drained.await {
        Ok(_) => println!("all connections closed"),
        Err(_) => println!(
            "{} connections still open after {grace:?}; closing them",
            shutdown.open_connections()
        ),
    }

    let mut code = 0;
    if let Some(aof) = &server.aof {
        match aof.write_and_sync_everything(&server.db).await {
            Ok(()) => println!("append-only file written and fsynced"),
            Err(e) => {
                eprintln!("could not fsync the append-only file: {e}");
                code = 1;
            }
        }
    }

    let save = match save {
        SaveOnExit::Always => true,
        SaveOnExit::Never => false,
        SaveOnExit::IfConfigured => !server.config.save_points.is_empty(),
    };
    if save {
        loop {
            match snapshot::save(server).await {
                Ok(()) => {
                    println!("final snapshot saved");
                    break;
                }
                // A BGSAVE is still writing; ours must come after it.
                Err(SaveError::AlreadyInProgress) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(SaveError::Failed) => {
                    eprintln!("could not save the final snapshot");
                    code = 1;
                    break;
                }
            }
        }
    }
    println!("exiting with code {code}");
    code
}
