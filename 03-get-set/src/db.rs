//! The keyspace: every key and its value, shared by all connections.
//!
//! One `HashMap` behind one `std::sync::Mutex`, as Redis has one dictionary
//! touched by one thread at a time. Keys and values are `Bytes`: any bytes
//! at all, and cheap to clone, since a clone shares the same buffer.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

#[derive(Default)]
pub struct Db {
    entries: Mutex<HashMap<Bytes, Bytes>>,
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
    /// `HashMap` operation is all-or-nothing even under a panic, so the map
    /// is still sound and we carry on rather than fail every later command.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, Bytes>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
