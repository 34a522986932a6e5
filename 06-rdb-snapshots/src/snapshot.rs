//! Snapshots: when the keyspace is written to disk as an RDB file, and how.
//!
//! `rdb.rs` knows the file format; this module decides when to use it. A
//! snapshot is taken by SAVE (the client waits), by BGSAVE (it does not),
//! and by the save points of `--save "<seconds> <changes> ..."`: a
//! background save starts once at least `changes` writes were made and at
//! least `seconds` passed since the last successful save.
//!
//! Writing is atomic: the file is written under a temporary name, fsynced,
//! and renamed over the old one, and the rename is fsynced too. A crash at
//! any moment leaves either the old snapshot or the new one, never half of
//! one. Redis does the same (`rdbSave` writes `temp-<pid>.rdb`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Notify;

use crate::db::{instant_at_unix_ms, unix_time_ms, unix_time_us, Expiry};
use crate::rdb;
use crate::Server;

/// How long to wait after a failed background save before a save point
/// may try again (Redis: `CONFIG_BGSAVE_RETRY_DELAY`).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// One save point: save after `seconds` if there were `changes` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavePoint {
    pub seconds: u64,
    pub changes: u64,
}

/// Parses `--save`'s value: pairs of numbers, or "" for no save points.
pub fn parse_save_points(value: &str) -> Result<Vec<SavePoint>> {
    let numbers: Vec<u64> = value
        .split_whitespace()
        .map(|n| {
            n.parse()
                .with_context(|| format!("--save: '{n}' is not a number"))
        })
        .collect::<Result<_>>()?;
    if numbers.len() % 2 != 0 {
        anyhow::bail!("--save takes pairs of <seconds> <changes>, not '{value}'");
    }
    Ok(numbers
        .chunks(2)
        .map(|pair| SavePoint {
            seconds: pair[0],
            changes: pair[1],
        })
        .collect())
}

/// Redis's default save points: after an hour if anything changed, after
/// five minutes for 100 changes, after a minute for 10,000.
pub fn default_save_points() -> Vec<SavePoint> {
    parse_save_points("3600 1 300 100 60 10000").expect("valid")
}

/// The snapshot file and what is known about saving it.
pub struct Snapshots {
    path: PathBuf,
    state: Mutex<State>,
    /// Wakes the background saver for BGSAVE.
    bgsave_requested: Notify,
}

struct State {
    in_progress: bool,
    /// Unix time in seconds of the last successful save (LASTSAVE). As in
    /// Redis, starting up counts as having saved.
    last_save: i64,
    last_failure: Option<Instant>,
}

/// Why a save did not happen.
pub enum SaveError {
    AlreadyInProgress,
    /// Writing failed; the reason is in the log.
    Failed,
}

impl Snapshots {
    pub fn new(path: PathBuf) -> Snapshots {
        Snapshots {
            path,
            state: Mutex::new(State {
                in_progress: false,
                last_save: unix_time_ms() / 1000,
                last_failure: None,
            }),
            bgsave_requested: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn last_save(&self) -> i64 {
        self.state().last_save
    }

    /// BGSAVE: hands the save to the background saver and returns at once.
    pub fn request_background_save(&self) -> Result<(), SaveError> {
        let mut state = self.state();
        if state.in_progress {
            return Err(SaveError::AlreadyInProgress);
        }
        // Claimed here, not in the saver, so that a second BGSAVE right
        // after this one is refused as Redis refuses it.
        state.in_progress = true;
        drop(state);
        self.bgsave_requested.notify_one();
        Ok(())
    }
}

/// SAVE: writes a snapshot now and returns when it is on disk.
pub async fn save(server: &Server) -> Result<(), SaveError> {
    let snapshots = &server.snapshots;
    {
        let mut state = snapshots.state();
        if state.in_progress {
            return Err(SaveError::AlreadyInProgress);
        }
        state.in_progress = true;
    }
    write_snapshot(server).await.map_err(|_| SaveError::Failed)
}

/// The background saver: runs BGSAVEs and checks the save points once a
/// second, for as long as the server runs.
pub async fn save_in_background(server: Arc<Server>) {
    let snapshots = &server.snapshots;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = snapshots.bgsave_requested.notified() => {}
            _ = ticks.tick() => {
                if !save_point_reached(&server) {
                    continue;
                }
                let mut state = snapshots.state();
                if state.in_progress {
                    continue;
                }
                state.in_progress = true;
            }
        }
        // Errors are logged by write_snapshot; a save point retries later.
        let _ = write_snapshot(&server).await;
    }
}

fn save_point_reached(server: &Server) -> bool {
    let dirty = server.db.lock().dirty();
    let state = server.snapshots.state();
    if state.in_progress || dirty == 0 {
        return false;
    }
    if state
        .last_failure
        .is_some_and(|failed| failed.elapsed() < RETRY_AFTER_FAILURE)
    {
        return false;
    }
    let since_save = u64::try_from(unix_time_ms() / 1000 - state.last_save).unwrap_or(0);
    server
        .config
        .save_points
        .iter()
        // Strictly more seconds than the save point names, as Redis counts.
        .any(|point| dirty >= point.changes && since_save > point.seconds)
}

/// Copies the keyspace, encodes it and writes it out atomically. The
/// caller has set `in_progress`; this clears it, whatever happens.
async fn write_snapshot(server: &Server) -> Result<()> {
    let snapshots = &server.snapshots;
    let started = Instant::now();
    // The only moment the keyspace is locked: long enough to clone the
    // handles of every key and value, not to encode or write them.
    let (entries, dirty) = {
        let db = server.db.lock();
        (db.entries(Instant::now()), db.dirty())
    };
    let count = entries.len();
    let path = snapshots.path.clone();
    let result = async {
        // Encoding is CPU work: keep it off the threads that serve clients.
        let now_secs = unix_time_ms() / 1000;
        let bytes = tokio::task::spawn_blocking(move || {
            rdb::encode(entries.iter().map(|(k, v, at)| (k, v, *at)), now_secs)
        })
        .await?;
        write_atomically(&path, &bytes).await
    }
    .await;

    let mut state = snapshots.state();
    state.in_progress = false;
    match &result {
        Ok(()) => {
            state.last_save = unix_time_ms() / 1000;
            state.last_failure = None;
            drop(state);
            server.db.lock().mark_saved(dirty);
            println!(
                "saved {count} keys to {} in {:?}",
                path.display(),
                started.elapsed()
            );
        }
        Err(e) => {
            state.last_failure = Some(Instant::now());
            eprintln!("saving {} failed: {e:#}", path.display());
        }
    }
    result
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one: temporary file, fsync, rename, fsync the
/// directory.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!("temp-{}.rdb", std::process::id()));
    let result = async {
        tokio::fs::write(&temp, bytes).await?;
        // On disk before it gets the real name: otherwise a crash just after
        // the rename could leave a hole where the data should be.
        tokio::fs::File::open(&temp).await?.sync_all().await?;
        tokio::fs::rename(&temp, path).await?;
        // A rename is a change to the directory; make that durable too.
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Loads the snapshot at `path` into the keyspace, if the file exists, and
/// returns how many keys it loaded. Keys whose deadline has passed are
/// skipped, as Redis skips them. A damaged file, or one holding something
/// this step cannot store, stops the start with a clear error rather than
/// losing data silently.
pub async fn load(path: &Path, server: &Server) -> Result<usize> {
    let data = match tokio::fs::read(path).await {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let entries = rdb::decode(&data).with_context(|| format!("cannot load {}", path.display()))?;
    let (now, now_us) = (Instant::now(), unix_time_us());
    let mut db = server.db.lock();
    let mut loaded = 0;
    for entry in entries {
        let expiry = match entry.expires_at_ms {
            Some(at_ms) if at_ms <= now_us / 1000 => continue,
            Some(at_ms) => Expiry::At(instant_at_unix_ms(at_ms, now, now_us)),
            None => Expiry::Clear,
        };
        db.set(entry.key, entry.value, expiry);
        loaded += 1;
    }
    // What was just loaded is exactly what the file holds.
    let dirty = db.dirty();
    db.mark_saved(dirty);
    Ok(loaded)
}
