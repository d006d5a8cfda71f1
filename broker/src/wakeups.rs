//! In-memory wake-ups for long polls: one `Notify` per topic, signalled by the
//! writer right after a commit that added messages to the topic (or deleted it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Wakeups {
    topics: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// The notifier of a topic. A long poll enables its `notified()` future
    /// *before* reading, so a commit between the read and the wait is not missed.
    pub fn topic(&self, topic: &str) -> Arc<Notify> {
        let mut topics = self.topics.lock().expect("wakeups lock");
        topics.entry(topic.to_string()).or_default().clone()
    }

    /// Wakes every long poll waiting on `topic`; forgets the topic when no
    /// poll holds its notifier, so idle topics cost nothing.
    pub fn wake(&self, topic: &str) {
        let mut topics = self.topics.lock().expect("wakeups lock");
        if let Some(notify) = topics.get(topic) {
            notify.notify_waiters();
            if Arc::strong_count(notify) == 1 {
                topics.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_enabled_waiter_sees_a_wake_that_came_before_it_awaited() {
        let wakeups = Wakeups::default();
        let notify = wakeups.topic("news");
        let mut waiting = std::pin::pin!(notify.notified());
        waiting.as_mut().enable();
        wakeups.wake("news");
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn waking_another_topic_does_not_wake() {
        let wakeups = Wakeups::default();
        let notify = wakeups.topic("news");
        let mut waiting = std::pin::pin!(notify.notified());
        waiting.as_mut().enable();
        wakeups.wake("sports");
        assert!(tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err());
    }

    #[test]
    fn forgets_topics_nobody_waits_on() {
        let wakeups = Wakeups::default();
        drop(wakeups.topic("news"));
        wakeups.wake("news");
        assert!(wakeups.topics.lock().unwrap().is_empty());
    }
}
