//! Publish/subscribe: channels, patterns, and the subscriptions of one
//! connection.
//!
//! Every channel (and every pattern) that has subscribers owns a
//! `tokio::sync::broadcast` sender. PUBLISH sends the message once into it;
//! the message is a reference-counted `Bytes`, so a thousand subscribers
//! share one copy. Each subscription of a connection is a small task that
//! receives from the broadcast and forwards into that connection's mailbox;
//! the connection `select!`s between its socket and its mailbox.
//!
//! A publisher never waits for subscribers: `broadcast::Sender::send` does
//! not block. A subscriber that cannot keep up must not make the server's
//! memory grow without bound either, so each mailbox counts the bytes
//! waiting in it; past `MAILBOX_LIMIT` (Redis's `client-output-buffer-limit
//! pubsub` hard limit, 32 MB) the subscriber is disconnected, as Redis does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

use crate::glob;
use crate::resp::Frame;

/// Messages a channel's broadcast buffer holds for a subscriber whose
/// forwarding task has not run yet. Forwarders drain it continuously into
/// their mailboxes, and a connection waits before each PUBLISH until the
/// buffers it would send into are at most half full
/// ([`Targets::wait_for_room`]), so a subscriber that keeps reading is never
/// overrun, however many connections publish at once.
const BROADCAST_CAPACITY: usize = 256;

/// The most bytes of undelivered messages one subscriber may have waiting.
pub const MAILBOX_LIMIT: usize = 32 * 1024 * 1024;

/// One published message.
#[derive(Debug)]
pub struct Message {
    pub channel: Bytes,
    pub payload: Bytes,
}

/// A message on its way to one subscriber.
pub enum Delivery {
    /// Through a channel subscription: `message <channel> <payload>`.
    Message(Arc<Message>),
    /// Through a pattern: `pmessage <pattern> <channel> <payload>`.
    PatternMessage(Bytes, Arc<Message>),
}

impl Delivery {
    /// The message as the client sees it: a push in RESP3, an array in
    /// RESP2.
    pub fn into_frame(self) -> Frame {
        let bulk = Frame::Bulk;
        match self {
            Delivery::Message(m) => Frame::Push(vec![
                bulk(Bytes::from_static(b"message")),
                bulk(m.channel.clone()),
                bulk(m.payload.clone()),
            ]),
            Delivery::PatternMessage(pattern, m) => Frame::Push(vec![
                bulk(Bytes::from_static(b"pmessage")),
                bulk(pattern),
                bulk(m.channel.clone()),
                bulk(m.payload.clone()),
            ]),
        }
    }

    fn size(&self) -> usize {
        match self {
            Delivery::Message(m) | Delivery::PatternMessage(_, m) => {
                m.channel.len() + m.payload.len()
            }
        }
    }
}

/// Every channel and pattern with subscribers, server-wide.
#[derive(Default)]
pub struct PubSub {
    channels: Mutex<HashMap<Bytes, Topic>>,
    patterns: Mutex<HashMap<Bytes, Topic>>,
}

/// A channel or a pattern, and how many connections subscribe to it. The
/// count is ours, not `broadcast::Sender::receiver_count`: a receiver is
/// dropped only when its forwarding task winds down, a moment after the
/// client unsubscribed, and PUBLISH must count exactly.
struct Topic {
    sender: broadcast::Sender<Arc<Message>>,
    subscribers: usize,
}

/// The buffers one PUBLISH sends into, and how many subscribers they reach
/// (what PUBLISH answers).
pub struct Targets {
    senders: Vec<broadcast::Sender<Arc<Message>>>,
    receivers: usize,
}

impl Targets {
    fn add(&mut self, topic: &Topic) {
        self.senders.push(topic.sender.clone());
        self.receivers += topic.subscribers;
    }

    /// Waits until every one of these buffers is at most half full.
    ///
    /// `send` never waits: a full buffer is overwritten, and a forwarding
    /// task that had not yet read the overwritten messages lags, which cuts
    /// its subscriber off. Forwarders never wait for anything but the
    /// buffer, so a full buffer only means they have not had a turn on a
    /// worker thread yet; yielding gives them one. The connection calls
    /// this right before the PUBLISH runs, with no `.await` in between, so
    /// only PUBLISHes running at that moment on other worker threads can
    /// add to a buffer after the check: far fewer than the half left free.
    pub async fn wait_for_room(&self) {
        let crowded = |sender: &broadcast::Sender<_>| sender.len() > BROADCAST_CAPACITY / 2;
        while self.senders.iter().any(crowded) {
            tokio::task::yield_now().await;
        }
    }

    /// Sends the message into every buffer; returns how many subscribers
    /// receive it.
    pub fn send(self, channel: Bytes, payload: Bytes) -> usize {
        let message = Arc::new(Message { channel, payload });
        for sender in &self.senders {
            // `send` fails only when there is no receiver at all, which our
            // count already says; nothing to handle.
            let _ = sender.send(Arc::clone(&message));
        }
        self.receivers
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PubSub {
    /// Where a message published to `channel` goes: the buffer of the
    /// channel and of every pattern that matches it. Matching every pattern
    /// is the dear part of a PUBLISH, so it is done once, here.
    pub fn targets(&self, channel: &[u8]) -> Targets {
        let mut targets = Targets {
            senders: Vec::new(),
            receivers: 0,
        };
        if let Some(topic) = lock(&self.channels).get(channel) {
            targets.add(topic);
        }
        for (pattern, topic) in lock(&self.patterns).iter() {
            if glob::matches(pattern, channel) {
                targets.add(topic);
            }
        }
        targets
    }

    /// The channels with at least one subscriber, optionally only those
    /// matching a glob pattern (PUBSUB CHANNELS).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        lock(&self.channels)
            .keys()
            .filter(|channel| pattern.map_or(true, |p| glob::matches(p, channel)))
            .cloned()
            .collect()
    }

    /// How many connections subscribe to `channel` (PUBSUB NUMSUB).
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        lock(&self.channels)
            .get(channel)
            .map_or(0, |t| t.subscribers)
    }

    /// How many distinct patterns have subscribers (PUBSUB NUMPAT).
    pub fn pattern_count(&self) -> usize {
        lock(&self.patterns).len()
    }

    fn topics(&self, kind: Kind) -> MutexGuard<'_, HashMap<Bytes, Topic>> {
        match kind {
            Kind::Channel => lock(&self.channels),
            Kind::Pattern => lock(&self.patterns),
        }
    }

    fn join(&self, kind: Kind, name: &Bytes) -> broadcast::Receiver<Arc<Message>> {
        let mut topics = self.topics(kind);
        let topic = topics.entry(name.clone()).or_insert_with(|| Topic {
            sender: broadcast::channel(BROADCAST_CAPACITY).0,
            subscribers: 0,
        });
        topic.subscribers += 1;
        topic.sender.subscribe()
    }

    /// The last subscriber to leave removes the topic, so that millions of
    /// short-lived channels leave nothing behind.
    fn leave(&self, kind: Kind, name: &[u8]) {
        let mut topics = self.topics(kind);
        if let Some(topic) = topics.get_mut(name) {
            topic.subscribers -= 1;
            if topic.subscribers == 0 {
                topics.remove(name);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
}

/// Where a connection's forwarding tasks deliver.
struct Mailbox {
    sender: mpsc::UnboundedSender<Delivery>,
    /// Bytes delivered but not yet written to the client.
    queued: AtomicUsize,
    /// Signalled when the subscriber fell too far behind.
    overflowed: Arc<Notify>,
}

/// The subscriptions of one connection, and its mailbox.
pub struct Subscriptions {
    channels: HashMap<Bytes, JoinHandle<()>>,
    patterns: HashMap<Bytes, JoinHandle<()>>,
    mailbox: Arc<Mailbox>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        let (sender, deliveries) = mpsc::unbounded_channel();
        Subscriptions {
            channels: HashMap::new(),
            patterns: HashMap::new(),
            mailbox: Arc::new(Mailbox {
                sender,
                queued: AtomicUsize::new(0),
                overflowed: Arc::new(Notify::new()),
            }),
            deliveries,
        }
    }
}

impl Subscriptions {
    /// Channels plus patterns: the count Redis reports in every
    /// (un)subscribe confirmation.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// The names subscribed to, of one kind.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        self.of(kind).keys().cloned().collect()
    }

    fn of(&self, kind: Kind) -> &HashMap<Bytes, JoinHandle<()>> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
        }
    }

    /// Subscribes to a channel or pattern; subscribing twice is harmless.
    pub fn subscribe(&mut self, pubsub: &PubSub, kind: Kind, name: Bytes) {
        if self.of(kind).contains_key(&name) {
            return;
        }
        let receiver = pubsub.join(kind, &name);
        let pattern = (kind == Kind::Pattern).then(|| name.clone());
        let task = tokio::spawn(forward(receiver, pattern, Arc::clone(&self.mailbox)));
        match kind {
            Kind::Channel => self.channels.insert(name, task),
            Kind::Pattern => self.patterns.insert(name, task),
        };
    }

    /// Unsubscribes; whether there was such a subscription.
    pub fn unsubscribe(&mut self, pubsub: &PubSub, kind: Kind, name: &[u8]) -> bool {
        let removed = match kind {
            Kind::Channel => self.channels.remove(name),
            Kind::Pattern => self.patterns.remove(name),
        };
        match removed {
            Some(task) => {
                task.abort();
                pubsub.leave(kind, name);
                true
            }
            None => false,
        }
    }

    /// Leaves everything: on RESET, and when the connection ends.
    pub fn clear(&mut self, pubsub: &PubSub) {
        for kind in [Kind::Channel, Kind::Pattern] {
            for name in self.names(kind) {
                self.unsubscribe(pubsub, kind, &name);
            }
        }
    }

    /// Waits for the next message for this connection. Never returns while
    /// there are no subscriptions, which is what `select!` wants.
    pub async fn next(&mut self) -> Delivery {
        loop {
            let delivery = self
                .deliveries
                .recv()
                .await
                .expect("the mailbox holds its own sender, so it never closes");
            if let Some(delivery) = self.accept(delivery) {
                return delivery;
            }
        }
    }

    /// A message that is already waiting, if any: to batch several into
    /// one write, and to send what arrived before a command's reply.
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            let delivery = self.deliveries.try_recv().ok()?;
            if let Some(delivery) = self.accept(delivery) {
                return Some(delivery);
            }
        }
    }

    /// Takes a delivery off the mailbox's count, and drops it if the client
    /// has meanwhile unsubscribed: after the confirmation of UNSUBSCRIBE, as
    /// in Redis, no message from that channel may follow.
    fn accept(&self, delivery: Delivery) -> Option<Delivery> {
        self.mailbox
            .queued
            .fetch_sub(delivery.size(), Ordering::Relaxed);
        let subscribed = match &delivery {
            Delivery::Message(m) => self.channels.contains_key(&m.channel),
            Delivery::PatternMessage(pattern, _) => self.patterns.contains_key(pattern),
        };
        subscribed.then_some(delivery)
    }

    /// Signalled when this subscriber has fallen too far behind. A handle
    /// of its own, so the connection can wait on it while it also waits on
    /// [`Subscriptions::next`].
    pub fn overflow_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.mailbox.overflowed)
    }
}

/// One subscription's task: from the channel's broadcast into the
/// connection's mailbox, until the subscription ends (the task is aborted)
/// or the subscriber falls too far behind.
async fn forward(
    mut receiver: broadcast::Receiver<Arc<Message>>,
    pattern: Option<Bytes>,
    mailbox: Arc<Mailbox>,
) {
    loop {
        let message = match receiver.recv().await {
            Ok(message) => message,
            // The broadcast buffer overran before this task could drain it.
            Err(RecvError::Lagged(_)) => return mailbox.overflowed.notify_one(),
            Err(RecvError::Closed) => return,
        };
        let delivery = match &pattern {
            Some(pattern) => Delivery::PatternMessage(pattern.clone(), message),
            None => Delivery::Message(message),
        };
        let size = delivery.size();
        if mailbox.queued.fetch_add(size, Ordering::Relaxed) + size > MAILBOX_LIMIT {
            return mailbox.overflowed.notify_one();
        }
        if mailbox.sender.send(delivery).is_err() {
            return; // The connection is gone.
        }
    }
}
