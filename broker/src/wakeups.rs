//! In-memory wake-ups for long polls. The writer signals, right after a
//! commit, every topic that got messages (or was deleted) and every
//! subscriber whose subscriptions changed; a waiting pull watches its topics
//! and its subscriber.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::lock;

/// What a long poll can wait for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Topic(String),
    Subscriber(String),
    /// This broker recorded events of its own (replication sends them on).
    LocalEvents,
    /// This broker recorded acknowledgements of its own: replication sends
    /// them on too, but in gossip mode gathered (see `cluster::gathering`).
    LocalAcks,
    /// The cluster's mode was set.
    ModeChanged,
    /// A member was added or removed.
    MembersChanged,
    /// Leader mode: a lead was recorded or received (the order may change).
    LeadsChanged,
}

/// The notifiers that pulls are waiting on; an entry lives only while some
/// pull watches it.
#[derive(Default)]
pub struct Wakeups {
    watched: Mutex<HashMap<Key, Arc<Notify>>>,
    /// How many of them are topics.
    topics: AtomicUsize,
}

impl Wakeups {
    /// Starts watching `key`. Create and enable the `notified()` future
    /// *before* reading, so that a commit between the read and the wait is
    /// not missed.
    pub fn watch(&self, key: Key) -> Watch<'_> {
        let notify = match self.lock().entry(key.clone()) {
            Entry::Occupied(watched) => watched.get().clone(),
            Entry::Vacant(new) => {
                if matches!(key, Key::Topic(_)) {
                    self.topics.fetch_add(1, Ordering::AcqRel);
                }
                new.insert(Arc::default()).clone()
            }
        };
        Watch {
            wakeups: self,
            key,
            notify,
        }
    }

    /// Wakes every pull watching `key`.
    pub fn wake(&self, key: &Key) {
        if let Some(notify) = self.lock().get(key) {
            notify.notify_waiters();
        }
    }

    /// Whether some pull is waiting on `key`.
    pub fn watches(&self, key: &Key) -> bool {
        self.lock().contains_key(key)
    }

    /// Whether some pull is waiting for messages of a topic.
    pub fn watches_topics(&self) -> bool {
        self.topics.load(Ordering::Acquire) > 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Notify>>> {
        lock(&self.watched)
    }
}

/// A pull's interest in one key; forgets the key when the last watch ends.
pub struct Watch<'w> {
    wakeups: &'w Wakeups,
    key: Key,
    notify: Arc<Notify>,
}

impl Watch<'_> {
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut watched = self.wakeups.lock();
        // Two holders left: the map and this watch.
        if Arc::strong_count(&self.notify) == 2 {
            watched.remove(&self.key);
            if matches!(self.key, Key::Topic(_)) {
                self.wakeups.topics.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn topic(name: &str) -> Key {
        Key::Topic(name.to_string())
    }

    #[tokio::test]
    async fn an_enabled_waiter_sees_a_wake_that_came_before_it_awaited() {
        let wakeups = Wakeups::default();
        let watch = wakeups.watch(topic("news"));
        let mut waiting = std::pin::pin!(watch.notified());
        waiting.as_mut().enable();
        wakeups.wake(&topic("news"));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn waking_another_key_does_not_wake() {
        let wakeups = Wakeups::default();
        let watch = wakeups.watch(topic("news"));
        let mut waiting = std::pin::pin!(watch.notified());
        waiting.as_mut().enable();
        wakeups.wake(&topic("sports"));
        wakeups.wake(&Key::Subscriber("news".to_string()));
        assert!(tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err());
    }

    #[test]
    fn forgets_a_key_when_its_last_watch_ends() {
        let wakeups = Wakeups::default();
        let first = wakeups.watch(topic("news"));
        let second = wakeups.watch(topic("news"));
        let subscriber = wakeups.watch(Key::Subscriber("S".to_string()));
        assert!(wakeups.watches_topics());
        drop(first);
        assert_eq!(wakeups.lock().len(), 2);
        drop(second);
        assert!(!wakeups.watches_topics());
        drop(subscriber);
        assert!(wakeups.lock().is_empty());
    }
}
