//! One run: one workload against one server, spread over `--threads` OS
//! threads, each with its own single-threaded tokio runtime.
//!
//! Why not one multi-threaded runtime? It would work as well: measured on
//! one pinned core, both spend the same CPU per request (BENCHMARKS.md),
//! since nearly all of it is the kernel's. But a connection's task never
//! needs to move, and with a runtime per thread `--threads N` means exactly
//! N threads, each owning its connections, sharing nothing but two atomic
//! counters: easier to reason about, and nothing to tune.

use std::io::{IsTerminal, Write};
use std::net;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::net::TcpStream;

use crate::args::{Length, Load, Target};
use crate::conn::{self, Counters, Timetable, Window};
use crate::stats::Tally;
use crate::workload::{Batch, Rng, Workload};

/// In open loop, the most requests one write carries when the writer is
/// behind and many have fallen due at once.
const OPEN_LOOP_BATCH: usize = 64;

/// What a run produced: everything counted, and how long the measured part
/// (after the warm-up) took.
pub struct Outcome {
    pub tally: Tally,
    pub elapsed: Duration,
}

/// Runs `workload` against `target`. `label` names the run on the progress
/// line, which is drawn only when stderr is a terminal.
pub fn run(target: &Target, workload: &Workload, load: &Load, label: &str) -> Result<Outcome> {
    // Connect every client before the clock starts, and with the blocking
    // std API: a refused connection fails the run here, before any load.
    let mut shares: Vec<Vec<(usize, net::TcpStream)>> =
        (0..load.threads).map(|_| Vec::new()).collect();
    for k in 0..load.clients {
        let stream = net::TcpStream::connect((target.host.as_str(), target.port))
            .with_context(|| format!("cannot connect to {}", target.address()))?;
        // Like redis-benchmark (through hiredis): each write leaves at once.
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        shares[k % load.threads].push((k, stream));
    }

    let counters = Arc::new(Counters {
        unclaimed: AtomicU64::new(match load.length {
            Length::Requests(n) => n,
            Length::Time(_) => 0,
        }),
        done: AtomicU64::new(0),
    });
    // The first thread to get going starts the clock for all of them.
    let start = OnceLock::new();
    // Each thread holds a sender and drops it when it is done: once all are
    // gone, the progress line knows the run is over.
    let (alive, all_done) = mpsc::channel::<()>();

    thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let alive = alive.clone();
                let (start, counters) = (&start, &counters);
                scope.spawn(move || {
                    let result = worker(share, workload, load, start, counters);
                    drop(alive);
                    result
                })
            })
            .collect();
        drop(alive);

        if std::io::stderr().is_terminal() {
            show_progress(label, &all_done, &counters, &start, load.warmup);
        }

        let mut tally = Tally::new();
        let mut end = None;
        for worker in workers {
            let (part, finished) = worker
                .join()
                .map_err(|_| anyhow!("a worker thread panicked"))??;
            tally.merge(&part);
            end = end.max(Some(finished));
        }
        let measure_from = *start.get().expect("set by the workers") + load.warmup;
        let elapsed = end.map_or(Duration::ZERO, |end| {
            end.saturating_duration_since(measure_from)
        });
        Ok(Outcome { tally, elapsed })
    })
}

/// One thread's share of the connections, run to the end on a runtime of
/// its own. Returns what they counted and when the last one finished.
fn worker(
    share: Vec<(usize, net::TcpStream)>,
    workload: &Workload,
    load: &Load,
    start: &OnceLock<Instant>,
    counters: &Arc<Counters>,
) -> Result<(Tally, Instant)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let start = *start.get_or_init(Instant::now);
        let mut tasks = Vec::with_capacity(share.len());
        for (k, stream) in share {
            let stream = TcpStream::from_std(stream)?;
            // Seeding by connection number makes runs repeatable: servers
            // being compared are asked for the same keys in the same order.
            let rng = Rng::new(k as u64);
            let counters = Arc::clone(counters);
            tasks.push(match load.rate {
                None => {
                    let batch = Batch::new(workload, load.pipeline, load.keyspace);
                    let window = Window {
                        measure_from: start + load.warmup,
                        stop: match load.length {
                            Length::Time(time) => Some(start + load.warmup + time),
                            Length::Requests(_) => None,
                        },
                    };
                    tokio::spawn(async move {
                        conn::closed_loop(stream, batch, rng, window, &counters).await
                    })
                }
                Some(rate) => {
                    let batch = Batch::new(workload, OPEN_LOOP_BATCH, load.keyspace);
                    let table = timetable(start, rate, load);
                    let place = (k as u64, load.clients as u64);
                    tokio::spawn(async move {
                        conn::open_loop(stream, place, batch, rng, table, &counters).await
                    })
                }
            });
        }
        let mut tally = Tally::new();
        for task in tasks {
            tally.merge(&task.await.context("a connection task panicked")?);
        }
        Ok((tally, Instant::now()))
    })
}

/// The open-loop schedule: the warm-up's requests, then the measured ones.
fn timetable(start: Instant, rate: f64, load: &Load) -> Timetable {
    let due_within = |time: Duration| (rate * time.as_secs_f64()).ceil() as u64;
    let warmup = due_within(load.warmup);
    Timetable {
        start,
        rate,
        warmup,
        total: match load.length {
            Length::Requests(n) => warmup + n,
            Length::Time(time) => due_within(load.warmup + time),
        },
    }
}

/// Redraws one status line on stderr four times a second until every
/// worker thread has hung up, then erases it.
fn show_progress(
    label: &str,
    all_done: &Receiver<()>,
    counters: &Counters,
    start: &OnceLock<Instant>,
    warmup: Duration,
) {
    let mut stderr = std::io::stderr();
    while let Err(RecvTimeoutError::Timeout) = all_done.recv_timeout(Duration::from_millis(250)) {
        let Some(&start) = start.get() else { continue };
        let measuring = start.elapsed().saturating_sub(warmup).as_secs_f64();
        let done = counters.done.load(Relaxed);
        // `\r` returns to the line's start and `ESC [2K` clears it.
        let _ = if measuring > 0.0 {
            let rate = done as f64 / measuring;
            write!(stderr, "\r\x1b[2K{label}: {rate:.0} ops/s, {done} requests")
        } else {
            write!(stderr, "\r\x1b[2K{label}: warming up")
        };
    }
    let _ = write!(stderr, "\r\x1b[2K");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timetable_covers_warm_up_then_the_measured_part() {
        let mut load = Load {
            clients: 1,
            pipeline: 1,
            length: Length::Requests(500),
            warmup: Duration::from_millis(250),
            rate: Some(1000.0),
            keyspace: None,
            threads: 1,
        };
        let table = timetable(Instant::now(), 1000.0, &load);
        assert_eq!((table.warmup, table.total), (250, 750));
        load.length = Length::Time(Duration::from_secs(2));
        let table = timetable(Instant::now(), 1000.0, &load);
        assert_eq!((table.warmup, table.total), (250, 2250));
    }
}
