//! One connection's share of the load, in one of two shapes.
//!
//! * Closed loop (the default, as redis-benchmark): send a batch of `-P`
//!   requests, wait for all their replies, send the next. The server sets
//!   the pace: when it is slow, the generator sends less.
//! * Open loop (`--rate`): requests leave on a timetable fixed in advance,
//!   whatever the replies are doing, and each is timed from when it was due.
//!   When the server stalls, requests keep falling due, and every one of
//!   them is charged the wait.
//!
//! Either way a connection is one task that owns its socket, its buffers and
//! its own [`Tally`]: nothing on the path of a request is shared or locked,
//! except one atomic add per batch for the progress line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::reply::{self, Reply};
use crate::stats::Tally;
use crate::workload::{Batch, Rng};

/// What all connections of one run share, across threads.
pub struct Counters {
    /// Closed loop with `-n`: requests not yet handed to any connection.
    pub unclaimed: AtomicU64,
    /// Replies measured so far, for the progress line.
    pub done: AtomicU64,
}

/// When a closed-loop run measures: from the end of the warm-up until `stop`
/// (`--duration`), or until the requests run out (`-n`).
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub stop: Option<Instant>,
}

/// Claims the next batch: how many requests to send, and whether they count.
fn claim(want: usize, now: Instant, window: Window, counters: &Counters) -> Option<(usize, bool)> {
    if now < window.measure_from {
        return Some((want, false)); // warming up: send, but do not count
    }
    if let Some(stop) = window.stop {
        return (now < stop).then_some((want, true));
    }
    // Take up to `want` from the shared count. `fetch_update` retries if
    // another thread changed the count meanwhile, so two threads never both
    // take the last requests.
    let want = want as u64;
    let before = counters
        .unclaimed
        .fetch_update(Relaxed, Relaxed, |left| Some(left.saturating_sub(want)))
        .expect("the closure always returns Some");
    let got = before.min(want) as usize;
    (got > 0).then_some((got, true))
}

/// Runs one closed-loop connection until the run is over or the connection
/// breaks; what broke it is counted in the returned tally, never lost.
pub async fn closed_loop(
    mut stream: TcpStream,
    mut batch: Batch,
    mut rng: Rng,
    window: Window,
    counters: &Counters,
) -> Tally {
    let mut tally = Tally::new();
    let mut pending = 0; // requests sent and not yet answered
    let result: Result<()> = async {
        let (mut rd, mut wr) = stream.split();
        let mut replies = Replies::new();
        while let Some((count, measured)) =
            claim(batch.capacity(), Instant::now(), window, counters)
        {
            let bytes = batch.next(count, &mut rng);
            let sent = Instant::now();
            pending = count;
            // Write and read at the same time: a batch too big for the
            // socket buffers must not wait for its own replies to be read.
            let write = async { wr.write_all(bytes).await.context("cannot send") };
            let read = async {
                while pending > 0 {
                    let arrived = replies.read(&mut rd).await?;
                    let before = pending;
                    while pending > 0 && replies.take(&mut tally)? {
                        pending -= 1;
                        if measured {
                            tally.record(arrived - sent);
                        }
                    }
                    if measured {
                        counters.done.fetch_add((before - pending) as u64, Relaxed);
                    }
                }
                Ok(())
            };
            tokio::try_join!(write, read)?;
            if !replies.input.is_empty() {
                bail!("the server sent a reply to no request");
            }
            // Let the other connections whose replies have arrived read and
            // time them before this one writes again: otherwise each reply
            // waits behind our write, and that wait, the generator's own,
            // would be reported as the server's latency.
            tokio::task::yield_now().await;
        }
        Ok(())
    }
    .await;
    if let Err(why) = result {
        tally.dropped(&why, pending as u64);
    }
    tally
}

/// The open loop's schedule: request `i`, counted across all connections,
/// is due at `start + i / rate`. Connection `k` of `c` sends requests
/// `k, k + c, k + 2c, ...`, so each one knows its own timetable without
/// asking anyone.
#[derive(Clone, Copy)]
pub struct Timetable {
    pub start: Instant,
    pub rate: f64,
    /// Requests due during the warm-up: sent, not counted.
    pub warmup: u64,
    /// All requests, warm-up included.
    pub total: u64,
}

impl Timetable {
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests connection `k` of `c` sends.
    fn share(&self, k: u64, c: u64) -> u64 {
        self.total.saturating_sub(k).div_ceil(c)
    }
}

/// Tokio's timer counts whole milliseconds, and so does the kernel's wait
/// for events under it, each rounding up: a sleep ends 1 ms late on average
/// and 2 ms late at the 99th percentile (measured on the workshop machine).
/// So the writer wakes this much early and sends everything that falls due
/// before it could next wake up. Sending early costs nothing in accuracy:
/// such a request is timed from when it really left.
const TIMER_SLACK: Duration = Duration::from_millis(3);

/// The writer's note to the reader: `count` requests left at `at`.
struct Sent {
    at: Instant,
    count: usize,
}

/// Runs connection `k` of `c` in open loop, following `table`.
pub async fn open_loop(
    mut stream: TcpStream,
    (k, c): (u64, u64),
    mut batch: Batch,
    mut rng: Rng,
    table: Timetable,
    counters: &Counters,
) -> Tally {
    let mut tally = Tally::new();
    let mine = table.share(k, c);
    let mut received = 0;
    let (mut rd, mut wr) = stream.split();
    // The writer never waits for replies, so writing and reading are two
    // loops running side by side in this one task.
    let (notes, mut sent) = mpsc::unbounded_channel();

    let writer = async {
        let mut next = k; // the index of the next request to send
        let mut lag = Duration::ZERO;
        while next < table.total {
            let wake = table
                .due(next)
                .checked_sub(TIMER_SLACK)
                .unwrap_or(table.start);
            if wake > Instant::now() {
                tokio::time::sleep_until(wake.into()).await;
            }
            let now = Instant::now();
            lag = lag.max(now.saturating_duration_since(table.due(next)));
            let mut count = 0;
            while next < table.total
                && count < batch.capacity()
                && table.due(next) <= now + TIMER_SLACK
            {
                count += 1;
                next += c;
            }
            // The note goes first: a reply can only follow its request.
            let _ = notes.send(Sent { at: now, count });
            wr.write_all(batch.next(count, &mut rng))
                .await
                .context("cannot send")?;
        }
        Ok::<_, anyhow::Error>(lag)
    };

    let reader = async {
        let mut replies = Replies::new();
        // The index of the request the next reply answers.
        let mut index = k;
        // The batch being answered: when it left, and how many replies remain.
        let mut current = Sent {
            at: table.start,
            count: 0,
        };
        while received < mine {
            let arrived = replies.read(&mut rd).await?;
            let mut measured = 0;
            while replies.take(&mut tally)? {
                if current.count == 0 {
                    current = sent
                        .try_recv()
                        .ok()
                        .context("the server sent a reply to no request")?;
                }
                current.count -= 1;
                if index >= table.warmup {
                    // Timed from when it was due or when it left, whichever
                    // came first: a late request is charged its lateness,
                    // an early one only the time it really waited.
                    tally.record(arrived - current.at.min(table.due(index)));
                    measured += 1;
                }
                index += c;
                received += 1;
            }
            counters.done.fetch_add(measured, Relaxed);
        }
        Ok(())
    };

    match tokio::try_join!(writer, reader) {
        Ok((lag, ())) => tally.max_send_lag = lag,
        Err(why) => tally.dropped(&why, mine - received),
    }
    tally
}

/// The read side of a connection: a buffer and the reply cursor.
struct Replies {
    input: BytesMut,
}

impl Replies {
    fn new() -> Replies {
        Replies {
            input: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Waits for more bytes from the server; returns when they arrived,
    /// which is when every reply they complete is timed as done.
    async fn read(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> Result<Instant> {
        self.input.reserve(16 * 1024);
        if rd.read_buf(&mut self.input).await.context("cannot read")? == 0 {
            bail!("the server closed the connection");
        }
        Ok(Instant::now())
    }

    /// Takes one whole reply off the buffer, if there is one, counting it in
    /// `tally` if it is an error.
    fn take(&mut self, tally: &mut Tally) -> Result<bool> {
        let Some((reply, used)) = reply::parse(&self.input)? else {
            return Ok(false);
        };
        if let Reply::Error(message) = reply {
            tally.error_reply(message);
        }
        self.input.advance(used);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_share_out_exactly_the_requested_count() {
        let counters = Counters {
            unclaimed: AtomicU64::new(10),
            done: AtomicU64::new(0),
        };
        let now = Instant::now();
        let window = Window {
            measure_from: now,
            stop: None,
        };
        assert_eq!(claim(4, now, window, &counters), Some((4, true)));
        assert_eq!(claim(4, now, window, &counters), Some((4, true)));
        assert_eq!(claim(4, now, window, &counters), Some((2, true)));
        assert_eq!(claim(4, now, window, &counters), None);
    }

    #[test]
    fn warm_up_batches_do_not_count_and_time_runs_out() {
        let counters = Counters {
            unclaimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
        };
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let window = Window {
            measure_from: now + second,
            stop: Some(now + 2 * second),
        };
        assert_eq!(claim(3, now, window, &counters), Some((3, false)));
        assert_eq!(claim(3, now + second, window, &counters), Some((3, true)));
        assert_eq!(claim(3, now + 2 * second, window, &counters), None);
    }

    #[test]
    fn the_timetable_deals_requests_round_robin() {
        let start = Instant::now();
        let table = Timetable {
            start,
            rate: 1000.0,
            warmup: 0,
            total: 10,
        };
        assert_eq!(table.due(500), start + Duration::from_millis(500));
        let shares: Vec<u64> = (0..3).map(|k| table.share(k, 3)).collect();
        assert_eq!(shares, [4, 3, 3]); // 0,3,6,9 / 1,4,7 / 2,5,8
        assert_eq!(table.share(11, 20), 0);
    }
}
