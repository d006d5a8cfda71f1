//! Checked operations: each validates a request against the current state
//! inside the writer's transaction and records the events it makes.

use client::wire::{message_id, Published, StartFrom};

use super::queries;
use super::writer::WriteTx;
use crate::cursor::Position;
use crate::error::ApiError;
use crate::event::Change;

/// Whether a registration or subscription was made now or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

impl WriteTx<'_> {
    pub fn register_publisher(&mut self, id: &str) -> Result<Created, ApiError> {
        if queries::publisher_exists(self.conn, id)? {
            return Ok(Created::Existing);
        }
        self.record(Change::RegisterPublisher {
            publisher: id.to_string(),
        })?;
        Ok(Created::New)
    }

    pub fn register_subscriber(&mut self, id: &str) -> Result<Created, ApiError> {
        if queries::subscriber_exists(self.conn, id)? {
            return Ok(Created::Existing);
        }
        self.record(Change::RegisterSubscriber {
            subscriber: id.to_string(),
        })?;
        Ok(Created::New)
    }

    pub fn create_topic(&mut self, topic: &str, publisher: &str) -> Result<(), ApiError> {
        queries::require_publisher(self.conn, publisher)?;
        if queries::topic_owner(self.conn, topic)?.is_some() {
            return Err(ApiError::TopicExists(topic.to_string()));
        }
        self.record(Change::CreateTopic {
            topic: topic.to_string(),
            publisher: publisher.to_string(),
        })?;
        Ok(())
    }

    pub fn delete_topic(&mut self, topic: &str, publisher: &str) -> Result<(), ApiError> {
        let owner = queries::require_topic(self.conn, topic)?;
        queries::require_publisher(self.conn, publisher)?;
        if owner != publisher {
            return Err(ApiError::NotTopicOwner {
                topic: topic.to_string(),
                publisher: publisher.to_string(),
            });
        }
        self.record(Change::DeleteTopic {
            topic: topic.to_string(),
            publisher: publisher.to_string(),
        })?;
        Ok(())
    }

    /// Publishes `payloads` in order, all or none.
    pub fn publish(
        &mut self,
        topic: &str,
        publisher: &str,
        payloads: Vec<String>,
        published_at_ms: i64,
    ) -> Result<Vec<Published>, ApiError> {
        queries::require_topic(self.conn, topic)?;
        queries::require_publisher(self.conn, publisher)?;
        let mut published = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let event = self.record(Change::Publish {
                topic: topic.to_string(),
                publisher: publisher.to_string(),
                payload,
                published_at_ms,
            })?;
            published.push(Published {
                id: message_id(&event.origin, event.seq),
                origin: event.origin,
                seq: event.seq,
                lamport: event.lamport,
            });
        }
        Ok(published)
    }

    pub fn subscribe(
        &mut self,
        subscriber: &str,
        topic: &str,
        from: StartFrom,
    ) -> Result<Created, ApiError> {
        queries::require_subscriber(self.conn, subscriber)?;
        queries::require_topic(self.conn, topic)?;
        if queries::is_subscribed(self.conn, subscriber, topic)? {
            return Ok(Created::Existing);
        }
        self.record(Change::Subscribe {
            subscriber: subscriber.to_string(),
            topic: topic.to_string(),
            from,
        })?;
        Ok(Created::New)
    }

    pub fn unsubscribe(&mut self, subscriber: &str, topic: &str) -> Result<(), ApiError> {
        queries::require_subscriber(self.conn, subscriber)?;
        queries::require_topic(self.conn, topic)?;
        queries::require_subscription(self.conn, subscriber, topic)?;
        self.record(Change::Unsubscribe {
            subscriber: subscriber.to_string(),
            topic: topic.to_string(),
        })?;
        Ok(())
    }

    /// Records the positions that move forward; the others are already acknowledged.
    pub fn ack(&mut self, subscriber: &str, positions: Vec<Position>) -> Result<(), ApiError> {
        queries::require_subscriber(self.conn, subscriber)?;
        for Position { topic, origin, seq } in positions {
            if queries::position(self.conn, subscriber, &topic, &origin)? >= seq {
                continue;
            }
            self.record(Change::Ack {
                subscriber: subscriber.to_string(),
                topic,
                acked_origin: origin,
                acked_seq: seq,
            })?;
        }
        Ok(())
    }
}

impl WriteTx<'_> {
    /// Retention, as a local decision of each broker (not an event). Deletes
    /// the messages every live subscriber of their topic has acknowledged,
    /// and the messages published before `cutoff_ms` that no live subscriber
    /// still needs (acknowledged, or stamped before its subscription started).
    pub fn sweep(&mut self, cutoff_ms: i64) -> Result<usize, ApiError> {
        let acknowledged = self.conn.execute(
            "WITH live AS (
                 SELECT topic, count(*) AS subscribers FROM subscriptions
                 WHERE live = 1 GROUP BY topic),
             floors AS (
                 SELECT s.topic, p.origin, min(p.seq) AS seq, count(*) AS subscribers
                 FROM subscriptions s JOIN positions p
                     ON p.subscriber = s.subscriber AND p.topic = s.topic
                 WHERE s.live = 1 GROUP BY s.topic, p.origin)
             DELETE FROM messages WHERE rowid IN (
                 SELECT m.rowid FROM floors f JOIN live l USING (topic)
                 JOIN messages m ON m.topic = f.topic AND m.origin = f.origin AND m.seq <= f.seq
                 WHERE f.subscribers = l.subscribers)",
            [],
        )?;
        let expired = self.conn.execute(
            "DELETE FROM messages WHERE rowid IN (
                 SELECT m.rowid FROM messages m
                 WHERE m.published_at_ms < ?1 AND NOT EXISTS (
                     SELECT 1 FROM subscriptions s
                     LEFT JOIN positions p ON p.subscriber = s.subscriber
                         AND p.topic = s.topic AND p.origin = m.origin
                     WHERE s.topic = m.topic AND s.live = 1
                       AND (m.lamport, m.origin) > (s.start_lamport, s.start_origin)
                       AND m.seq > coalesce(p.seq, 0)))",
            [cutoff_ms],
        )?;
        Ok(acknowledged + expired)
    }
}
