//! The keyspace: every key, its value, and when it expires.
//!
//! Values live in one `HashMap`. Deadlines live beside them in a second map
//! (a "sidecar"), exactly as Redis keeps `db->expires` beside `db->dict`:
//! most keys never expire, so they pay nothing for the feature. A third
//! structure, `schedule`, holds the same deadlines sorted by time, so that
//! the background sweep finds the keys that are due without scanning.
//!
//! Deadlines are `Instant`s on the monotonic clock: a wall-clock jump (NTP
//! stepping the clock, someone running `date -s`) cannot expire keys early
//! or keep them alive. (A suspended machine is another matter: on Linux the
//! monotonic clock stops while suspended, so deadlines move with it.)
//! Absolute Unix times only appear at the edges, where clients send them
//! (EXAT, PXAT) and, from step 05 on, where files store them.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::broadcast;

#[derive(Default)]
pub struct Db {
    keyspace: Mutex<Keyspace>,
}

impl Db {
    /// Locks the keyspace for one command.
    ///
    /// The lock is a `std` mutex, not `tokio::sync::Mutex`: every command
    /// runs in a plain (non-async) function, so the guard is dropped before
    /// the connection next awaits, and a lock that is never held across an
    /// `.await` is best served by the cheaper blocking mutex.
    ///
    /// A handler that panicked while holding the lock "poisons" it. Every
    /// `Keyspace` method leaves its maps consistent before it can panic, so
    /// we carry on rather than fail every later command.
    pub fn lock(&self) -> MutexGuard<'_, Keyspace> {
        self.keyspace.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What SET does to a key's deadline.
pub enum Expiry {
    /// Drop any deadline: a plain SET makes a key persistent again.
    Clear,
    /// Keep the deadline the key already had (SET ... KEEPTTL).
    Keep,
    /// Expire at this moment.
    At(Instant),
}

/// The moment a command runs at, as the keyspace needs to know it: the
/// instant, and whether deadlines that have passed by then count for it.
#[derive(Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub deadlines: Deadlines,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deadlines {
    /// A client's command: a key past its deadline is gone, and is deleted
    /// on the spot (lazy expiry).
    Enforce,
    /// A replica's client: a key past its deadline is gone, but it stays
    /// stored until the master's DEL for it arrives. Deleting it here could
    /// lose a change the master made before the deadline and sent after it
    /// (`PERSIST k`, a later `PEXPIREAT k`). Redis's replicas do the same
    /// (`expireIfNeeded` in `db.c`).
    Hide,
    /// History being replayed: the append-only file at start and, from
    /// step 08, a master's stream. It holds
    /// a DEL for every key that expired while it was written, at the point
    /// where the key expired, so until that DEL the key exists for it,
    /// whatever its deadline says today. Replayed eleven seconds later,
    /// `SET k v EX 10` then `PERSIST k` must still leave `k`. Redis agrees:
    /// no key expires while it loads (`keyIsExpired` in `db.c`).
    Ignore,
}

impl Now {
    /// Whether `deadline` has passed, as far as this command is concerned.
    pub fn is_past(&self, deadline: Instant) -> bool {
        self.deadlines != Deadlines::Ignore && deadline <= self.instant
    }
}

pub struct Keyspace {
    values: HashMap<Bytes, Bytes>,
    /// The sidecar: deadlines of the keys that have one.
    expires: HashMap<Bytes, Instant>,
    /// The same deadlines in the order they fall due. `Bytes` clones share
    /// their buffer, so keeping the key here too costs a pointer, not a copy.
    schedule: BTreeSet<(Instant, Bytes)>,
    /// Commands that redo the changes made since the log was last taken,
    /// or `None` while nobody wants them (no AOF, or replaying one).
    changes: Option<Vec<u8>>,
    /// How many bytes of changes were ever logged: a position in the log
    /// that only grows, so "written up to here" is a single number.
    logged: u64,
    /// How many changes were made since the last snapshot was saved.
    dirty: u64,
    /// The replication stream: every change, as a RESP command.
    feed: broadcast::Sender<Bytes>,
    /// How many bytes were ever sent into the feed (`master_repl_offset`).
    repl_offset: u64,
}

/// How many commands a replica may fall behind the feed before it is
/// dropped (it may then reconnect and sync afresh). A replica that is
/// loading a large snapshot is behind by every write made meanwhile.
const FEED_CAPACITY: usize = 1 << 16;

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace {
            values: HashMap::new(),
            expires: HashMap::new(),
            schedule: BTreeSet::new(),
            changes: None,
            logged: 0,
            dirty: 0,
            feed: broadcast::channel(FEED_CAPACITY).0,
            repl_offset: 0,
        }
    }
}

impl Keyspace {
    /// The value of `key`, unless it is missing or has expired. An expired
    /// key found here is deleted on the spot: Redis calls this lazy expiry.
    pub fn get(&mut self, key: &[u8], now: Now) -> Option<&Bytes> {
        if self.expire_if_due(key, now) {
            return None;
        }
        self.values.get(key)
    }

    pub fn contains(&mut self, key: &[u8], now: Now) -> bool {
        self.get(key, now).is_some()
    }

    /// Stores `value` under `key`, doing to its deadline what `expiry` says.
    pub fn set(&mut self, key: Bytes, value: Bytes, expiry: Expiry) {
        // Relative times are logged as absolute ones (SET ... PXAT), as
        // Redis does, so that replaying the log tomorrow revives nothing.
        match expiry {
            Expiry::Clear => self.log(&[b"SET", &key, &value]),
            Expiry::Keep => self.log(&[b"SET", &key, &value, b"KEEPTTL"]),
            Expiry::At(deadline) => {
                let at_ms = unix_ms_of(deadline, Instant::now(), unix_time_us()).to_string();
                self.log(&[b"SET", &key, &value, b"PXAT", at_ms.as_bytes()]);
            }
        }
        self.values.insert(key.clone(), value);
        match expiry {
            Expiry::Clear => self.unschedule(&key),
            Expiry::At(deadline) => self.schedule(&key, deadline),
            Expiry::Keep => {}
        }
    }

    /// Deletes `key`; whether it existed (and had not expired).
    pub fn remove(&mut self, key: &[u8], now: Now) -> bool {
        !self.expire_if_due(key, now) && self.delete(key)
    }

    /// The deadline of a live key: `None` if the key does not exist,
    /// `Some(None)` if it exists and never expires.
    pub fn deadline(&mut self, key: &[u8], now: Now) -> Option<Option<Instant>> {
        if self.expire_if_due(key, now) {
            return None;
        }
        self.values
            .contains_key(key)
            .then(|| self.expires.get(key).copied())
    }

    /// Gives an existing key a deadline, or takes it away with `None`.
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<Instant>) {
        if !self.values.contains_key(key) {
            return; // Only keys that exist can expire.
        }
        match deadline {
            Some(deadline) => {
                let at_ms = unix_ms_of(deadline, Instant::now(), unix_time_us()).to_string();
                self.log(&[b"PEXPIREAT", key, at_ms.as_bytes()]);
                self.schedule(key, deadline);
            }
            None => {
                self.log(&[b"PERSIST", key]);
                self.unschedule(key);
            }
        }
    }

    /// How many keys there are, counting expired ones not yet swept away
    /// (Redis's DBSIZE counts them too).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Empties the keyspace, handing the old keys and values back so the
    /// caller can free them after releasing the lock. The logs and the
    /// feed carry on.
    pub fn take(&mut self) -> impl Send {
        self.log(&[b"FLUSHALL"]);
        (
            std::mem::take(&mut self.values),
            std::mem::take(&mut self.expires),
            std::mem::take(&mut self.schedule),
        )
    }

    /// Starts keeping a log of changes (see [`Keyspace::take_changes`]).
    pub fn start_logging_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// The commands that redo every change since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<u8> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The end of the change log so far, in bytes since logging started.
    pub fn log_position(&self) -> u64 {
        self.logged
    }

    /// How many changes were made since the last snapshot.
    pub fn dirty(&self) -> u64 {
        self.dirty
    }

    /// A snapshot holding `saved` of the changes reached the disk; changes
    /// made while it was being written still count.
    pub fn mark_saved(&mut self, saved: u64) {
        self.dirty -= saved.min(self.dirty);
    }

    /// Every live key, its value, and its deadline as a Unix time in
    /// milliseconds. Cloning `Bytes` only bumps reference counts, so this
    /// copy of the whole keyspace costs a few pointers per key, however
    /// large the values: the price of a consistent snapshot without fork().
    pub fn entries(&self, now: Instant) -> Vec<(Bytes, Bytes, Option<i64>)> {
        let now_us = unix_time_us();
        self.values
            .iter()
            .filter_map(|(key, value)| {
                let deadline = self.expires.get(key);
                match deadline {
                    Some(deadline) if *deadline <= now => None,
                    Some(deadline) => {
                        let at_ms = unix_ms_of(*deadline, now, now_us);
                        Some((key.clone(), value.clone(), Some(at_ms)))
                    }
                    None => Some((key.clone(), value.clone(), None)),
                }
            })
            .collect()
    }

    /// Active expiry: deletes up to `limit` keys whose deadline has passed,
    /// soonest first, and returns how many it deleted.
    pub fn remove_expired(&mut self, now: Instant, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit {
            match self.schedule.first() {
                Some((deadline, _)) if *deadline <= now => {}
                _ => break,
            }
            let (_, key) = self.schedule.pop_first().expect("checked above");
            self.delete(&key);
            removed += 1;
        }
        removed
    }

    /// Lazy expiry: whether `key` is past its deadline for this command,
    /// deleting it if that is this command's to do.
    fn expire_if_due(&mut self, key: &[u8], now: Now) -> bool {
        match self.expires.get(key) {
            Some(deadline) if now.is_past(*deadline) => {}
            _ => return false,
        }
        if now.deadlines == Deadlines::Enforce {
            // Logged as a DEL, as Redis propagates an expiry: harmless in a
            // log (the deadline it holds has passed anyway), and the
            // replicas rely on it.
            self.delete(key);
        }
        true
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        self.unschedule(key);
        let existed = self.values.remove(key).is_some();
        if existed {
            self.log(&[b"DEL", key]);
        }
        existed
    }

    fn schedule(&mut self, key: &[u8], deadline: Instant) {
        self.unschedule(key);
        let Some((key, _)) = self.values.get_key_value(key) else {
            return;
        };
        // A clone of `Bytes` shares the key's buffer with the value map.
        let key = key.clone();
        self.schedule.insert((deadline, key.clone()));
        self.expires.insert(key, deadline);
    }

    fn unschedule(&mut self, key: &[u8]) {
        // Most keys never expire: skip even hashing the key when no key
        // has a deadline, as Redis does when `db->expires` is empty.
        if self.expires.is_empty() {
            return;
        }
        if let Some((key, old)) = self.expires.remove_entry(key) {
            self.schedule.remove(&(old, key));
        }
    }

    /// Counts one change, and hands the command that redoes it to the
    /// change log (if one is kept) and to the replicas (if any listen).
    fn log(&mut self, args: &[&[u8]]) {
        self.dirty += 1;
        if self.changes.is_none() && self.feed.receiver_count() == 0 {
            return; // Nobody to tell: skip even the encoding.
        }
        let mut command = Vec::new();
        encode_command(&mut command, args);
        if let Some(changes) = &mut self.changes {
            changes.extend_from_slice(&command);
            self.logged += command.len() as u64;
        }
        self.send_to_replicas(command);
    }

    /// Sends a command to the replicas only, not to the AOF: the PINGs and
    /// REPLCONF GETACKs a master sends to keep its replicas talking.
    pub fn feed_replicas(&mut self, args: &[&[u8]]) {
        if self.feed.receiver_count() > 0 {
            let mut command = Vec::new();
            encode_command(&mut command, args);
            self.send_to_replicas(command);
        }
    }

    fn send_to_replicas(&mut self, command: Vec<u8>) {
        if self.feed.receiver_count() > 0 {
            self.repl_offset += command.len() as u64;
            // Fails only if the last receiver left just now: nothing to do.
            let _ = self.feed.send(Bytes::from(command));
        }
    }

    /// A receiver for the replication feed, and the offset it starts at.
    /// Taken under the lock together with a copy of the keyspace, so the
    /// copy plus what the feed then brings is exactly the master's data.
    pub fn subscribe_to_feed(&self) -> (broadcast::Receiver<Bytes>, u64) {
        (self.feed.subscribe(), self.repl_offset)
    }

    /// How many bytes were ever sent to replicas (`master_repl_offset`).
    pub fn repl_offset(&self) -> u64 {
        self.repl_offset
    }
}

/// Appends `args` as a RESP array of bulk strings: how clients send
/// commands, and so how an AOF stores them.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail; `write!` formats in place, with no
    // String allocated per argument.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Milliseconds since the Unix epoch, the unit Redis uses for absolute
/// expiry times.
pub fn unix_time_ms() -> i64 {
    unix_time_us().div_euclid(1000)
}

/// Microseconds since the Unix epoch: the precision at which we pair the
/// wall clock with an `Instant`, so that a deadline converted there and
/// back comes out at the same millisecond.
pub fn unix_time_us() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// The `Instant` that corresponds to Unix time `at_ms`, given that `now`
/// is `now_us` (in microseconds). A moment in the past maps to `now` or
/// earlier: it is due.
pub fn instant_at_unix_ms(at_ms: i64, now: Instant, now_us: i64) -> Instant {
    // In i128: i64::MAX milliseconds do not fit an i64 of microseconds.
    let distance_us = i128::from(at_ms) * 1000 - i128::from(now_us);
    let distance =
        Duration::from_micros(u64::try_from(distance_us.unsigned_abs()).unwrap_or(u64::MAX));
    if distance_us >= 0 {
        // Even i64::MAX ms (292 million years) fits an Instant on Linux; the
        // fallback only guards exotic platforms.
        now.checked_add(distance)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600))
    } else {
        now.checked_sub(distance).unwrap_or(now)
    }
}

/// The Unix time in milliseconds of `deadline`, given that `now` is
/// `now_us`: the inverse of [`instant_at_unix_ms`], rounded to the nearest
/// millisecond so that the round trip is exact.
pub fn unix_ms_of(deadline: Instant, now: Instant, now_us: i64) -> i64 {
    let ahead = deadline.saturating_duration_since(now).as_micros();
    let behind = now.saturating_duration_since(deadline).as_micros();
    let at_us = i128::from(now_us) + ahead as i128 - behind as i128;
    let at_ms = (at_us + 500).div_euclid(1000);
    i64::try_from(at_ms).unwrap_or(if at_ms < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Bytes {
        Bytes::copy_from_slice(name.as_bytes())
    }

    fn at(instant: Instant, deadlines: Deadlines) -> Now {
        Now { instant, deadlines }
    }

    /// `instant`, as a client's command sees it.
    fn client_at(instant: Instant) -> Now {
        at(instant, Deadlines::Enforce)
    }

    /// The three structures agree: every deadline is in both sidecars, and
    /// only for keys that exist.
    fn assert_consistent(keyspace: &Keyspace) {
        assert_eq!(keyspace.expires.len(), keyspace.schedule.len());
        for (deadline, key) in &keyspace.schedule {
            assert_eq!(keyspace.expires.get(key), Some(deadline));
            assert!(keyspace.values.contains_key(key));
        }
    }

    #[test]
    fn deadlines_follow_sets_and_removals() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut keyspace = Keyspace::default();
        keyspace.set(key("a"), key("1"), Expiry::At(later));
        keyspace.set(key("a"), key("2"), Expiry::Keep);
        assert_eq!(keyspace.deadline(b"a", client_at(now)), Some(Some(later)));
        keyspace.set(key("a"), key("3"), Expiry::Clear);
        assert_eq!(keyspace.deadline(b"a", client_at(now)), Some(None));
        keyspace.set(key("b"), key("1"), Expiry::At(later));
        assert!(keyspace.remove(b"b", client_at(now)));
        keyspace.set_deadline(b"missing", Some(later));
        assert_eq!(keyspace.deadline(b"missing", client_at(now)), None);
        assert_consistent(&keyspace);
    }

    #[test]
    fn an_expired_key_is_gone_for_reads() {
        let now = Instant::now();
        let mut keyspace = Keyspace::default();
        keyspace.set(key("a"), key("1"), Expiry::At(now));
        assert_eq!(keyspace.len(), 1);
        assert_eq!(keyspace.get(b"a", client_at(now)), None);
        assert_eq!(keyspace.len(), 0);
        assert_consistent(&keyspace);
    }

    #[test]
    fn replayed_history_sees_keys_past_their_deadline() {
        let now = Instant::now();
        let replaying = at(now, Deadlines::Ignore);
        let mut keyspace = Keyspace::default();
        keyspace.set(key("a"), key("1"), Expiry::At(now));
        // The history made the key persistent before its deadline passed.
        assert_eq!(keyspace.deadline(b"a", replaying), Some(Some(now)));
        keyspace.set_deadline(b"a", None);
        assert_eq!(keyspace.get(b"a", client_at(now)), Some(&key("1")));
        assert_consistent(&keyspace);
    }

    #[test]
    fn a_replica_hides_keys_past_their_deadline_and_keeps_them() {
        let now = Instant::now();
        let replica_client = at(now, Deadlines::Hide);
        let mut keyspace = Keyspace::default();
        keyspace.set(key("a"), key("1"), Expiry::At(now));
        assert_eq!(keyspace.get(b"a", replica_client), None);
        assert_eq!(keyspace.deadline(b"a", replica_client), None);
        assert!(!keyspace.contains(b"a", replica_client));
        // Still stored, for the master's stream to change or delete.
        assert_eq!(keyspace.len(), 1);
        assert_consistent(&keyspace);
    }

    #[test]
    fn the_sweep_removes_due_keys_soonest_first_within_its_limit() {
        let now = Instant::now();
        let mut keyspace = Keyspace::default();
        for i in 0..10 {
            let deadline = now - Duration::from_millis(10 - i);
            keyspace.set(key(&format!("due{i}")), key("v"), Expiry::At(deadline));
        }
        keyspace.set(
            key("later"),
            key("v"),
            Expiry::At(now + Duration::from_secs(1)),
        );
        keyspace.set(key("never"), key("v"), Expiry::Clear);
        assert_eq!(keyspace.remove_expired(now, 4), 4);
        // Soonest first: due0..due3 went, due4 is still there.
        assert!(keyspace.values.contains_key(&b"due4"[..]));
        assert!(!keyspace.values.contains_key(&b"due3"[..]));
        assert_eq!(keyspace.remove_expired(now, 100), 6);
        assert_eq!(keyspace.remove_expired(now, 100), 0);
        assert_eq!(keyspace.len(), 2);
        assert_consistent(&keyspace);
    }

    #[test]
    fn unix_times_map_onto_the_monotonic_clock() {
        let now = Instant::now();
        let now_us = 1_700_000_000_000_250;
        let now_ms = now_us / 1000;
        let ahead = instant_at_unix_ms(now_ms + 1500, now, now_us);
        assert_eq!(ahead - now, Duration::from_micros(1_499_750));
        assert!(instant_at_unix_ms(now_ms - 1500, now, now_us) <= now);
        assert!(instant_at_unix_ms(i64::MAX, now, now_us) > now);
        assert!(instant_at_unix_ms(i64::MIN, now, now_us) <= now);
        // There and back lands on the same millisecond, with a clock read
        // a little later, at another fraction of a millisecond.
        let later = now + Duration::from_micros(1_600);
        let later_us = now_us + 1_600;
        for at_ms in [now_ms - 5, now_ms + 1, now_ms + 1500, 2_000_000_000_000] {
            let instant = instant_at_unix_ms(at_ms, now, now_us);
            assert_eq!(unix_ms_of(instant, later, later_us), at_ms);
        }
    }
}
