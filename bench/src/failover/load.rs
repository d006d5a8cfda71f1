//! The steady load of `bench failover`: one publisher and one subscriber,
//! each a failover client over the three brokers
//! (`client::cli::Failover`, which `publisher` and `subscriber` use with
//! `--peers`): a call moves to the next broker when one cannot be reached,
//! and the client sets itself up again on the broker it lands on.
//!
//! The publisher offers message n at n/rate s (see `timeline`) and sends
//! whatever is due in one request: one message while it keeps up, a batch
//! once it fell behind. Every message carries a `msg_id`, so a request
//! sent again to another broker is stored once (API.md §6.1).
//!
//! The subscriber long-polls, takes each message it has not taken before
//! (`SeenMessages`, as `subscriber` does) and acknowledges each pull before
//! the next.
//!
//! Both retry a call that got no answer, or an answer that no broker can
//! take it now, after a short fixed pause, not the programs' growing one:
//! the gaps measured are then the cluster's, not the client's back-off.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use client::cli::{describe, is_transient, run_id, Failover, SeenMessages};
use client::delivery::{digest, unix_ms, Received, Sent};
use client::wire::{Message, NewMessage, Published, PullQuery};
use client::{Client, ClientError, Connect, PeerAddr};

use super::timeline::{offered_by, offered_us};
use crate::latency::subscribe_when_replicated;
use crate::{number_in, numbered_payload, Error};

/// Pause before a call is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a call is tried again before the run fails.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Most messages in one publish request.
const MAX_BATCH: u64 = 100;
/// Bytes of each payload.
const PAYLOAD_BYTES: usize = 100;
/// Most messages one pull returns.
const PULL_MAX: u32 = 500;
/// Longest wait of one pull, in ms: the subscriber looks this often
/// whether it is done.
const PULL_WAIT_MS: u64 = 1000;
/// How long the subscriber waits for missing messages once the publisher
/// is done.
const DRAIN: Duration = Duration::from_secs(20);

/// The time base of a run: µs since the load started, and Unix ms for the
/// delivery logs.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
    started_unix_ms: i64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            started: Instant::now(),
            started_unix_ms: unix_ms(),
        }
    }

    pub fn now_us(&self) -> i64 {
        crate::report::micros(self.started.elapsed())
    }

    /// The instant `at_us` after the start.
    pub fn instant(&self, at_us: i64) -> tokio::time::Instant {
        let after = Duration::from_micros(u64::try_from(at_us).unwrap_or(0));
        tokio::time::Instant::from_std(self.started + after)
    }

    /// `at_us` after the start in Unix ms.
    pub fn unix_ms(&self, at_us: i64) -> i64 {
        self.started_unix_ms + at_us / 1000
    }
}

/// What the load publishes: `total` messages, `rate` a second, to `topic`
/// as publisher `topic`, read by subscriber `topic`.
#[derive(Debug, Clone)]
pub struct Stream {
    pub topic: String,
    pub rate: u32,
    pub total: u64,
}

/// A message whose publish was acknowledged.
#[derive(Debug)]
pub struct Acked {
    /// Its place in the stream.
    pub n: u64,
    pub acked_us: i64,
    /// Its `sent` record for `bench check`.
    pub record: Sent,
}

/// A message the subscriber took.
#[derive(Debug)]
pub struct Taken {
    /// Its place in the stream (the topic is the run's own: every payload
    /// carries it).
    pub n: Option<u64>,
    pub received_us: i64,
    /// Its `received` record for `bench check`.
    pub record: Received,
}

/// What the subscriber got.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub taken: Vec<Taken>,
    /// Deliveries passed over as taken before (their acknowledgement had
    /// not reached the broker that gave them again).
    pub redelivered: u64,
}

/// A failover client over `brokers`, tried in that order.
fn failover_client(brokers: &[PeerAddr]) -> Result<Failover, Error> {
    Failover::new(brokers, &Connect::default()).map_err(|e| Error::Failed(e.to_string()))
}

/// Runs `call` until it succeeds, trying again after [`RETRY_PAUSE`] while
/// it fails for a reason that may pass ([`is_transient`]), up to
/// [`GIVE_UP`]; `what` names the call in the error.
async fn persist<T>(
    what: &str,
    failover: &mut Failover,
    mut call: impl AsyncFnMut(&mut Failover) -> Result<T, ClientError>,
) -> Result<T, Error> {
    let started = Instant::now();
    loop {
        match call(failover).await {
            Err(error) if is_transient(&error) && started.elapsed() < GIVE_UP => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(error) if is_transient(&error) => {
                return Err(Error::Failed(format!(
                    "{what}: {} (gave up after {GIVE_UP:?})",
                    describe(&error)
                )))
            }
            Err(error) => return Err(Error::Failed(format!("{what}: {}", describe(&error)))),
            Ok(answer) => return Ok(answer),
        }
    }
}

/// The publishing side, set up on the first broker that answers.
pub struct Publisher {
    failover: Failover,
    stream: Stream,
    /// The `msg_id`s are `<run>-<n>`.
    run: String,
}

impl Publisher {
    /// Registers the publisher and creates the topic.
    pub async fn ready(brokers: &[PeerAddr], stream: &Stream) -> Result<Publisher, Error> {
        let mut failover = failover_client(brokers)?;
        let topic = stream.topic.as_str();
        let prepare =
            async |f: &mut Failover| f.prepare(async |c| prepare_publisher(c, topic).await).await;
        persist("set up the publisher", &mut failover, prepare).await?;
        Ok(Publisher {
            failover,
            stream: stream.clone(),
            run: run_id(),
        })
    }

    /// Publishes the stream on its schedule; once every message is
    /// acknowledged, sets `done` to their ids.
    pub async fn run(
        &mut self,
        clock: &Clock,
        done: &OnceLock<HashSet<String>>,
    ) -> Result<Vec<Acked>, Error> {
        let (rate, total) = (self.stream.rate, self.stream.total);
        let mut acked = Vec::new();
        let mut next = 0;
        while next < total {
            tokio::time::sleep_until(clock.instant(offered_us(next, rate))).await;
            let due = offered_by(clock.now_us(), rate).max(next + 1);
            let end = due.min(total).min(next + MAX_BATCH);
            acked.extend(self.publish(next..end, clock).await?);
            next = end;
        }
        let _ = done.set(acked.iter().map(|a| a.record.id.clone()).collect());
        Ok(acked)
    }

    /// Publishes messages `range` in one request, sent again until a
    /// broker takes it.
    async fn publish(
        &mut self,
        range: std::ops::Range<u64>,
        clock: &Clock,
    ) -> Result<Vec<Acked>, Error> {
        let messages: Vec<NewMessage> = range
            .clone()
            .map(|n| NewMessage {
                payload: numbered_payload(n, PAYLOAD_BYTES),
                headers: None,
                msg_id: Some(format!("{}-{n}", self.run)),
            })
            .collect();
        let sent_us = clock.now_us();
        let topic = self.stream.topic.as_str();
        let publish = async |f: &mut Failover| {
            f.call_prepared(
                async |c: &Client| prepare_publisher(c, topic).await,
                async |c: &Client| c.publish_messages(topic, topic, messages.clone()).await,
            )
            .await
        };
        let published = persist("publish", &mut self.failover, publish).await?;
        let acked_us = clock.now_us();
        let acked = range.zip(&messages).zip(published.messages);
        let record = |message: &NewMessage, published: Published| Sent {
            id: published.id,
            digest: digest(message.payload.as_bytes()),
            sent_ms: clock.unix_ms(sent_us),
            acked_ms: clock.unix_ms(acked_us),
        };
        Ok(acked
            .map(|((n, message), published)| Acked {
                n,
                acked_us,
                record: record(message, published),
            })
            .collect())
    }
}

/// Registers `topic` as a publisher and creates the topic of that name
/// (an existing one is fine).
async fn prepare_publisher(client: &Client, topic: &str) -> Result<(), ClientError> {
    client.register_publisher(topic).await?;
    match client.create_topic(topic, topic).await {
        Err(error) if error.code() != Some("topic_exists") => Err(error),
        _ => Ok(()),
    }
}

/// The subscribing side, set up on the first broker that answers.
pub struct Subscriber {
    failover: Failover,
    topic: String,
    seen: SeenMessages,
    deliveries: Deliveries,
}

impl Subscriber {
    /// Registers the subscriber and subscribes it to the topic from its
    /// first message.
    pub async fn ready(brokers: &[PeerAddr], topic: &str) -> Result<Subscriber, Error> {
        let mut failover = failover_client(brokers)?;
        let prepare = async |f: &mut Failover| {
            f.prepare(async |c| prepare_subscriber(c, topic).await)
                .await
        };
        persist("set up the subscriber", &mut failover, prepare).await?;
        Ok(Subscriber {
            failover,
            topic: topic.to_string(),
            seen: SeenMessages::default(),
            deliveries: Deliveries::default(),
        })
    }

    /// Pulls, takes and acknowledges until every acknowledged publish
    /// (`published`, once the publisher is done) was taken, or [`DRAIN`]
    /// passed since.
    pub async fn run(
        mut self,
        clock: &Clock,
        published: &OnceLock<HashSet<String>>,
    ) -> Result<Deliveries, Error> {
        let mut missing: Option<(Instant, HashSet<String>)> = None;
        loop {
            if missing.is_none() {
                missing = published
                    .get()
                    .map(|ids| (Instant::now(), self.not_taken(ids)));
            }
            if let Some((since, ids)) = &missing {
                if ids.is_empty() || since.elapsed() >= DRAIN {
                    return Ok(self.deliveries);
                }
            }
            let pulled = self.pull().await?;
            for message in &pulled.messages {
                if let (Some(taken), Some((_, ids))) = (self.take(message, clock), &mut missing) {
                    ids.remove(&taken);
                }
            }
            self.ack(&pulled.cursor).await?;
        }
    }

    /// Which of `ids` were not taken yet.
    fn not_taken(&self, ids: &HashSet<String>) -> HashSet<String> {
        let taken: HashSet<&str> = self
            .deliveries
            .taken
            .iter()
            .map(|t| t.record.id.as_str())
            .collect();
        ids.iter()
            .filter(|id| !taken.contains(id.as_str()))
            .cloned()
            .collect()
    }

    /// One long poll, set up first on a broker failed over to.
    async fn pull(&mut self) -> Result<client::wire::Pulled, Error> {
        let query = PullQuery {
            topic: Some(self.topic.clone()),
            max: Some(PULL_MAX),
            wait_ms: Some(PULL_WAIT_MS),
            auto_ack: None,
        };
        let topic = self.topic.as_str();
        let pull = async |f: &mut Failover| {
            f.call_prepared(
                async |c: &Client| prepare_subscriber(c, topic).await,
                async |c: &Client| c.pull(topic, &query).await,
            )
            .await
        };
        persist("pull", &mut self.failover, pull).await
    }

    /// Takes `message` unless taken before; returns its id when taken.
    fn take(&mut self, message: &Message, clock: &Clock) -> Option<String> {
        if self.seen.has_seen(message) {
            self.deliveries.redelivered += 1;
            return None;
        }
        self.seen.mark_seen(message);
        let received_us = clock.now_us();
        let record = Received {
            subscriber: self.topic.clone(),
            id: message.id.clone(),
            origin: message.origin.clone(),
            seq: message.seq,
            digest: digest(message.payload.as_bytes()),
            published_at_ms: message.published_at_ms,
            received_ms: clock.unix_ms(received_us),
        };
        self.deliveries.taken.push(Taken {
            n: number_in(&message.payload),
            received_us,
            record,
        });
        Some(message.id.clone())
    }

    /// Acknowledges what the pull with `cursor` returned, on this broker
    /// or, failing over, the next; tried again while no broker can take it.
    async fn ack(&mut self, cursor: &str) -> Result<(), Error> {
        let topic = self.topic.as_str();
        let ack = async |f: &mut Failover| {
            match f.call(async |c: &Client| c.ack(topic, cursor).await).await {
                // A broker failed over to that lacks some of the messages
                // refuses the cursor (API.md §5.5): they come again from
                // it, are passed over as taken, and are acknowledged with
                // that pull's cursor.
                Err(error) if error.code() == Some("bad_request") => Ok(()),
                acked => acked,
            }
        };
        persist("acknowledge", &mut self.failover, ack).await
    }
}

/// Registers `topic` as a subscriber and subscribes it to the topic of
/// that name from its first message (both idempotent).
async fn prepare_subscriber(client: &Client, topic: &str) -> Result<(), ClientError> {
    client.register_subscriber(topic).await?;
    subscribe_when_replicated(client, topic).await
}

/// How many messages were taken under more than one id: stored twice.
pub fn stored_twice(taken: &[Taken]) -> u64 {
    let mut ids: HashMap<u64, HashSet<&str>> = HashMap::new();
    for t in taken {
        if let Some(n) = t.n {
            ids.entry(n).or_default().insert(&t.record.id);
        }
    }
    ids.values().filter(|ids| ids.len() > 1).count() as u64
}

/// Message `n` (if its payload had a number) taken under `id` at
/// `received_us`, for tests.
#[cfg(test)]
pub fn taken(n: Option<u64>, id: &str, received_us: i64) -> Taken {
    Taken {
        n,
        received_us,
        record: Received {
            subscriber: "s".to_string(),
            id: id.to_string(),
            origin: "o".to_string(),
            seq: 1,
            digest: String::new(),
            published_at_ms: 0,
            received_ms: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_taken_under_two_ids_was_stored_twice() {
        let taken = |n, id: &str| taken(Some(n), id, 0);
        let all = [
            taken(1, "a/1"),
            taken(2, "a/2"),
            taken(2, "b/7"),
            taken(3, "a/3"),
        ];
        assert_eq!(stored_twice(&all), 1);
        assert_eq!(stored_twice(&all[..2]), 0);
    }
}
