//! Pulls: reading a subscriber's pending messages, waiting for them (long
//! polling), cursors and acknowledgements. A pull leases what it gives
//! out of shared subscriptions (API.md §6.2, `WriteTx::lease`: a write, so
//! in leader mode a follower sends such pulls on to the leader) and reads
//! the rest (a waiting pull of one v1 topic, once woken, takes what the
//! commits since its read added from memory: `store::fresh`); how often a
//! v1 subscriber was given a message is counted here (`GivenCounts`), per
//! broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use client::http::ForwardedRequest;
use client::peer::EventId;
use client::wire::{Ack, Message, Pulled};
use futures_util::future::select_all;
use tokio::time::Instant;

use crate::config::Mode;
use crate::cursor::{Cursor, Epochs, Position};
use crate::error::ApiError;
use crate::event::now_ms;
use crate::store::queries::{self, Sent};
use crate::store::{Commit, WriteTx};
use crate::wakeups::Key;
use crate::{lock, AppState};

/// A checked pull request.
pub struct Pull {
    pub subscriber: String,
    pub topic: Option<String>,
    pub max: u32,
    pub wait: Duration,
    pub auto_ack: bool,
    /// The client's `Authorization` header: an auto-acknowledgement a
    /// follower sends on to the leader acts with it.
    pub authorization: Option<Vec<u8>>,
    /// What a stream gave out already of the subscriber's v1 subscriptions
    /// (empty for a pull).
    pub sent: Sent,
    /// A stream's read: the stream holds the subscriber's slot, and its
    /// own acknowledgements in flight do not hold the read up (`sent`
    /// passes over what they acknowledge).
    pub for_stream: bool,
}

/// Answers a pull: the pending messages at once, or the first to arrive
/// before the deadline, or none at the deadline (or at shutdown). With
/// `auto_ack` the messages are acknowledged after the answer (see
/// [`AcksInFlight`]); the reads pass over what acknowledgements in flight
/// acknowledge.
///
/// The reads are boxed: a future holds room for the largest future it
/// awaits, and a waiting pull (10,000 of them at a time) should hold only
/// what it needs while it waits.
pub async fn pull(app: &web::Data<AppState>, pull: Pull) -> Result<Pulled, ApiError> {
    let deadline = Instant::now() + pull.wait;
    let mut shutdown = app.shutdown.clone();
    let mut waiting = None;
    let subscriber = app.wakeups.watch(Key::Subscriber(pull.subscriber.clone()));
    // After an empty read of one v1 topic: how far it held own events, and
    // the epochs it found, so that a wake-up can take what commits added
    // since from memory (see `store::fresh`).
    let mut read_last: Option<(u64, Epochs)> = None;
    let messages = loop {
        // Every wake-up is enabled before the read it guards, so a commit
        // after that read wakes this pull: the subscriber's before its
        // topics are listed, the topics' before their messages are read
        // (one read for a pull of one topic).
        let mut subscriptions_changed = Box::pin(subscriber.notified());
        subscriptions_changed.as_mut().enable();
        let topics = match &pull.topic {
            Some(topic) => vec![topic.clone()],
            None => Box::pin(subscribed_topics(app, &pull.subscriber)).await?,
        };
        let watches: Vec<_> = topics
            .iter()
            .map(|topic| app.wakeups.watch(Key::Topic(topic.clone())))
            .collect();
        let mut wakes = vec![subscriptions_changed];
        for watch in &watches {
            let mut wake = Box::pin(watch.notified());
            wake.as_mut().enable();
            wakes.push(wake);
        }
        let noted = read_last
            .take()
            .and_then(|(read, epochs)| from_commits(app, &pull, read, epochs));
        let pending = match noted {
            Some(pending) => pending,
            None => Box::pin(read_pending(app, &pull, topics)).await?,
        };
        read_last = pending.read_at.map(|read| (read, pending.epochs.clone()));
        let empty = pending.read.is_empty() && pending.leased.is_empty();
        if !empty || Instant::now() >= deadline || *shutdown.borrow() {
            break pending;
        }
        let next_eligible = pending.next_eligible;
        // A lease that ends meanwhile lets its message out again.
        let wake_at = next_eligible
            .map(|at_ms| {
                let wait_ms = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
                Instant::now() + Duration::from_millis(wait_ms)
            })
            .map_or(deadline, |at| at.min(deadline));
        if waiting.is_none() && !pull.for_stream {
            // A slot among the subscriber's waiting pulls (at most 16).
            waiting = Some((
                app.pulls.take(&pull.subscriber)?,
                app.metrics.waiting_pull(),
            ));
        }
        tokio::select! {
            _ = select_all(wakes) => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shutdown.changed() => {}
        }
    };
    drop(waiting);
    let Pending {
        read,
        leased,
        epochs,
        ..
    } = messages;
    let mut cursor = cursor_after(&pull.subscriber, &read, &leased);
    cursor.epochs = epochs;
    let mut messages = read;
    messages.extend(leased);
    if pull.auto_ack && !messages.is_empty() {
        acknowledge_in_background(app.clone(), cursor.clone(), pull.authorization);
    }
    app.metrics.count_delivered(messages.len());
    Ok(Pulled {
        messages,
        cursor: cursor.encode(),
    })
}

/// Most pulls one subscriber may have waiting at once on this broker
/// (API.md §5.5): each waiting pull holds a connection and memory.
const MAX_PULLS_PER_SUBSCRIBER: usize = 16;

/// The pulls waiting now, and the streams open, per subscriber.
#[derive(Default)]
pub struct PullSlots(Arc<Mutex<HashMap<String, usize>>>);

impl PullSlots {
    /// A slot for one more waiting pull or open stream of `subscriber`,
    /// held until dropped (also when the client goes away); `429
    /// too_many_requests` past the limit.
    pub fn take(&self, subscriber: &str) -> Result<PullSlot, ApiError> {
        let mut going = lock(&self.0);
        let count = going.entry(subscriber.to_string()).or_default();
        if *count >= MAX_PULLS_PER_SUBSCRIBER {
            return Err(ApiError::TooManyRequests(format!(
                "subscriber {subscriber:?} already has {MAX_PULLS_PER_SUBSCRIBER} pulls waiting on this broker"
            )));
        }
        *count += 1;
        Ok(PullSlot {
            slots: self.0.clone(),
            subscriber: subscriber.to_string(),
        })
    }
}

/// One pull's or stream's place among its subscriber's.
pub struct PullSlot {
    slots: Arc<Mutex<HashMap<String, usize>>>,
    subscriber: String,
}

impl Drop for PullSlot {
    fn drop(&mut self) {
        let mut going = lock(&self.slots);
        if let Some(count) = going.get_mut(&self.subscriber) {
            *count -= 1;
            if *count == 0 {
                going.remove(&self.subscriber);
            }
        }
    }
}

/// Auto-acknowledgements not committed yet, per subscriber.
///
/// A pull with `auto_ack=true` answers without waiting for its
/// acknowledgement, which commits lazily, with the next write that cannot
/// wait (no commit of its own, see `Commit::Lazily`). Until then the
/// subscriber's reads on this broker pass over the messages it
/// acknowledges, as if it had committed, so they neither give them again
/// nor wait for the commit. A follower in leader mode sends it through the
/// leader and keeps the mark until the acknowledgement has come back to it
/// (up to 3 s). Should the broker stop before the commit, or
/// the commit fail, they are delivered again: at least once, never lost.
#[derive(Default)]
pub struct AcksInFlight {
    started: AtomicU64,
    /// Per subscriber, each acknowledgement in flight with its number.
    cursors: Mutex<HashMap<String, Vec<(u64, Cursor)>>>,
}

impl AcksInFlight {
    /// What reads for `pull` pass over: what its stream sent, and what its
    /// subscriber's acknowledgements in flight acknowledge. Taken before
    /// the store is read: one that commits in between is in the one or the
    /// other.
    fn passed_over(&self, pull: &Pull) -> Sent {
        let mut sent = pull.sent.clone();
        if let Some(cursors) = lock(&self.cursors).get(&pull.subscriber) {
            for (_, cursor) in cursors {
                cursor.mark_sent(&mut sent);
            }
        }
        sent
    }

    fn start(&self, cursor: &Cursor) -> u64 {
        let number = self.started.fetch_add(1, Ordering::Relaxed);
        lock(&self.cursors)
            .entry(cursor.subscriber.clone())
            .or_default()
            .push((number, cursor.clone()));
        number
    }

    fn finish(&self, subscriber: &str, number: u64) {
        let mut in_flight = lock(&self.cursors);
        if let Some(cursors) = in_flight.get_mut(subscriber) {
            cursors.retain(|(started, _)| *started != number);
            if cursors.is_empty() {
                in_flight.remove(subscriber);
            }
        }
    }
}

/// One acknowledgement's mark in [`AcksInFlight`], taken out when this is
/// dropped: however its task ends, no mark outlives it (a mark left behind
/// would hide its messages on this broker for good).
struct InFlight {
    app: web::Data<AppState>,
    subscriber: String,
    number: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app.acks.finish(&self.subscriber, self.number);
    }
}

/// Acknowledges a pull's cursor after the pull has answered (see
/// [`AcksInFlight`]); a failure leaves the messages to be delivered again.
pub fn acknowledge_in_background(
    app: web::Data<AppState>,
    cursor: Cursor,
    authorization: Option<Vec<u8>>,
) {
    let in_flight = InFlight {
        number: app.acks.start(&cursor),
        app: app.clone(),
        subscriber: cursor.subscriber.clone(),
    };
    actix_web::rt::spawn(async move {
        let subscriber = cursor.subscriber.clone();
        let acked = acknowledge(&app, cursor, authorization.as_deref(), Commit::Lazily).await;
        if let Ok(Some(leader)) = &acked {
            until_back_from(&app, leader).await;
        }
        drop(in_flight);
        if let Err(error) = acked {
            tracing::warn!(
                "auto-acknowledgement for {subscriber} failed, its messages will come again: {error}"
            );
            // The waiting reads that passed over them read again.
            app.wakeups.wake(&Key::Subscriber(subscriber));
        }
    });
}

/// Acknowledges every message up to the cursor's positions (through the
/// leader when this broker follows in leader mode, as the client whose
/// `authorization` it is would), committed as `commit` says; returns the
/// leader it went through, if any.
pub async fn acknowledge(
    app: &AppState,
    cursor: Cursor,
    authorization: Option<&[u8]>,
    commit: Commit,
) -> Result<Option<String>, ApiError> {
    if app.follows_leader() {
        let body = serde_json::to_vec(&Ack {
            cursor: Some(cursor.encode()),
            ids: None,
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let path = format!("/subscribers/{}/ack", cursor.subscriber);
        let forwarded = ForwardedRequest {
            for_cluster: false,
            method: "POST",
            path: &path,
            content_type: Some("application/json"),
            authorization,
            body,
            timeout: None,
        };
        return match app.cluster.forward_to_leader(forwarded).await {
            Some((leader, answer)) if (200..300).contains(&answer.status) => Ok(Some(leader)),
            Some(_) | None => Err(ApiError::NoQuorum),
        };
    }
    app.given.forget(&cursor);
    let Cursor {
        subscriber,
        positions,
        ids,
        epochs,
    } = cursor;
    let change = move |tx: &mut WriteTx<'_>| {
        tx.ack(&subscriber, positions, &epochs)?;
        if ids.is_empty() {
            return Ok(());
        }
        tx.ack_messages(&subscriber, ids)
    };
    match commit {
        Commit::Now => app.record(change).await?,
        Commit::Lazily => app.record_lazily(change).await?,
    }
    Ok(None)
}

/// How long a follower waits for an auto-acknowledgement it sent through
/// the leader to come back to it (see `until_back_from`).
const ACK_RETURN_WAIT: Duration = Duration::from_secs(3);

/// Waits (up to `ACK_RETURN_WAIT`) until this follower holds what `leader`
/// held of its own events once it had recorded an auto-acknowledgement
/// sent through it. A majority without this broker may have taken it, and
/// until it arrives here, reads here without the acknowledgement's mark
/// (see [`AcksInFlight`]) would give its messages again.
async fn until_back_from(app: &AppState, leader: &str) {
    let Some(seq) = app.cluster.holds_now(leader).await else {
        return;
    };
    let mut have = app.store.watch_have();
    let held = have.wait_for(|have| have.get(leader).copied().unwrap_or(0) >= seq);
    if !matches!(tokio::time::timeout(ACK_RETURN_WAIT, held).await, Ok(Ok(_))) {
        tracing::debug!("an acknowledgement sent through {leader} did not come back in time");
    }
}

/// Acknowledges a cursor given back by `subscriber`. An unknown subscriber
/// is reported as such even when the token is not a valid cursor.
pub async fn acknowledge_token(
    app: &AppState,
    subscriber: String,
    token: &str,
    authorization: Option<&[u8]>,
) -> Result<(), ApiError> {
    match Cursor::decode(token, &subscriber) {
        Ok(cursor) => acknowledge(app, cursor, authorization, Commit::Now)
            .await
            .map(drop),
        Err(invalid) => {
            app.store
                .read(move |conn| queries::require_subscriber(conn, &subscriber))
                .await?;
            Err(invalid)
        }
    }
}

/// All the topics `subscriber` is subscribed to; checks that it exists.
async fn subscribed_topics(app: &AppState, subscriber: &str) -> Result<Vec<String>, ApiError> {
    let subscriber = subscriber.to_string();
    let topics = app
        .store
        .read(move |conn| {
            queries::require_subscriber(conn, &subscriber)?;
            Ok(queries::subscribed_topics(conn, &subscriber)?)
        })
        .await?;
    Ok(topics)
}

/// What one read of a pull found.
struct Pending {
    /// Messages of v1 subscriptions.
    read: Vec<Message>,
    /// Messages of shared subscriptions, leased to this pull.
    leased: Vec<Message>,
    /// When a lease of the pull's shared subscriptions next ends.
    next_eligible: Option<i64>,
    /// The epochs of the sought subscriptions among those read.
    epochs: Epochs,
    /// For a pull of one v1 topic in gossip mode that found nothing: how
    /// far it held its own events, which tells what commit it read the
    /// state after (see `store::fresh`).
    read_at: Option<u64>,
}

/// The pending messages of the pull's subscriber on `topics`, as far as
/// they may be delivered (see `Deliverable`). A pull of one topic checks
/// here, in the same read, that the subscriber, the topic and the
/// subscription exist.
async fn read_pending(
    app: &AppState,
    pull: &Pull,
    topics: Vec<String>,
) -> Result<Pending, ApiError> {
    let subscriber = pull.subscriber.clone();
    let topic = pull.topic.clone();
    let sent = app.acks.passed_over(pull);
    let max = pull.max;
    let deliverable = match app.mode() {
        Mode::Gossip => None,
        // Nothing until the leader-mode limit is known.
        Mode::Leader => Some(app.deliverable.current().unwrap_or_default()),
    };
    app.metrics.count_pull_read();
    let now = now_ms();
    let order = deliverable.clone();
    let me = app.config.id.clone();
    let found = app
        .store
        .read(move |conn| {
            let shared = match &topic {
                Some(topic) => {
                    queries::require_subscriber(conn, &subscriber)?;
                    queries::require_topic(conn, topic)?;
                    let settings = queries::require_subscription(conn, &subscriber, topic)?;
                    settings.map(|s| (topic.clone(), s)).into_iter().collect()
                }
                None => queries::shared_topics(conn, &subscriber, &topics)?,
            };
            let v1: Vec<String> = topics
                .into_iter()
                .filter(|topic| shared.iter().all(|(name, _)| name != topic))
                .collect();
            let order = order.as_deref();
            let mut epochs = queries::epochs(conn, &subscriber)?;
            epochs.retain(|topic, _| v1.contains(topic));
            let pending = queries::pending(conn, (&subscriber, now, &sent), &v1, order, max)?;
            if shared.is_empty() {
                let own_seq = queries::have_of(conn, &me)?;
                return Ok((pending, shared, None, epochs, Some(own_seq)));
            }
            let shared_names: Vec<String> = shared.iter().map(|(name, _)| name.clone()).collect();
            let next = queries::next_eligible(conn, &subscriber, &shared_names, now)?;
            // Nothing to lease: no write (in leader mode a majority round)
            // for an idle pull waking up.
            let leasable = !queries::pending(
                conn,
                (&subscriber, now, &Sent::new()),
                &shared_names,
                order,
                1,
            )?
            .is_empty();
            let shared = if leasable { shared } else { Vec::new() };
            Ok((pending, shared, next, epochs, None))
        })
        .await?;
    // Own seq in the snapshot of a read of v1 subscriptions only.
    let (mut read, shared, next_eligible, epochs, own_seq) = found;
    let one_topic = pull.topic.is_some() && deliverable.is_none();
    let read_at = own_seq.filter(|_| one_topic && read.is_empty());
    app.given.count(&pull.subscriber, &mut read);
    let mut pending = Pending {
        read,
        leased: Vec::new(),
        next_eligible,
        epochs,
        read_at,
    };
    let room = max.saturating_sub(pending.read.len() as u32);
    if shared.is_empty() || room == 0 {
        return Ok(pending);
    }
    let subscriber = pull.subscriber.clone();
    let leased = app
        .record(move |tx| tx.lease(&subscriber, &shared, deliverable.as_deref(), (room, now)))
        .await?;
    for message in leased.messages.iter().filter(|m| m.deliveries > 1) {
        app.metrics.count_redelivery(&message.topic);
    }
    for topic in &leased.dead_lettered {
        app.metrics.count_dead_letter(topic);
    }
    pending.leased = leased.messages;
    Ok(pending)
}

/// The pending messages of a pull of one v1 topic whose last read, of own
/// events up to seq `read`, found none: what the commits since added
/// (see `store::fresh`), taken from memory instead of read back; `None`
/// when the store must be read.
fn from_commits(app: &AppState, pull: &Pull, read: u64, epochs: Epochs) -> Option<Pending> {
    let topic = pull.topic.as_deref()?;
    if !matches!(app.mode(), Mode::Gossip) {
        return None;
    }
    // Marks first: an acknowledgement committed in between is in a note.
    let sent = app.acks.passed_over(pull);
    let fresh = app.store.fresh().since(read, &pull.subscriber, topic)?;
    let mut messages = fresh.messages;
    // Marks are positions: one that covers any of them covers the first.
    if let Some(first) = messages.first() {
        let key = (topic.to_string(), first.origin.clone());
        if sent.get(&key).is_some_and(|(seq, _)| *seq >= first.seq) {
            return None;
        }
    }
    messages.truncate(pull.max as usize);
    app.given.count(&pull.subscriber, &mut messages);
    Some(Pending {
        read_at: messages.is_empty().then_some(fresh.upto),
        read: messages,
        leased: Vec::new(),
        next_eligible: None,
        epochs,
    })
}

/// Whether a pull of `subscriber` (of `topic`, or of every subscription)
/// reads a shared subscription.
pub async fn reads_shared(
    app: &AppState,
    subscriber: &str,
    topic: Option<&str>,
) -> Result<bool, ApiError> {
    let (subscriber, topic) = (subscriber.to_string(), topic.map(str::to_string));
    Ok(app
        .store
        .read(move |conn| {
            let topics = match topic {
                Some(topic) => vec![topic],
                None => queries::subscribed_topics(conn, &subscriber)?,
            };
            Ok(!queries::shared_topics(conn, &subscriber, &topics)?.is_empty())
        })
        .await?)
}

/// How many times this broker gave each v1 subscriber each message it has
/// not acknowledged yet. A v1 pull gives out, per topic and origin, a run
/// of messages from just past the subscriber's position up to some seq, so
/// it is remembered by that last seq alone: a message was given once by
/// every earlier pull whose run reached it. An acknowledgement forgets the
/// runs it covers, so a subscriber that acknowledges what it pulls costs a
/// number per topic and origin, and a pull reads no more than that.
#[derive(Default)]
pub struct GivenCounts(Mutex<HashMap<String, Runs>>);

/// Per topic, per origin: where each earlier pull's run ended, ascending.
type Runs = HashMap<String, HashMap<String, Vec<u64>>>;

/// Most runs remembered per subscriber, topic and origin (a subscriber
/// that pulls without ever acknowledging); past it the lowest is dropped
/// and its messages' counts come out low.
const MAX_RUNS: usize = 1024;

impl GivenCounts {
    /// Counts one more delivery of each of `messages` (read by one pull)
    /// to `subscriber`.
    fn count(&self, subscriber: &str, messages: &mut [Message]) {
        if messages.is_empty() {
            return;
        }
        let mut given = lock(&self.0);
        let runs = given.entry(subscriber.to_string()).or_default();
        for message in messages.iter_mut() {
            let earlier = runs
                .get(message.topic.as_str())
                .and_then(|origins| origins.get(message.origin.as_str()))
                .map_or(0, |ends| {
                    ends.len() - ends.partition_point(|&end| end < message.seq)
                });
            message.deliveries = 1 + u32::try_from(earlier).unwrap_or(u32::MAX - 1);
        }
        for ((topic, origin), end) in run_ends(messages) {
            let ends = runs
                .entry(topic.to_string())
                .or_default()
                .entry(origin.to_string())
                .or_default();
            ends.insert(ends.partition_point(|&earlier| earlier < end), end);
            if ends.len() > MAX_RUNS {
                ends.remove(0);
            }
        }
    }

    /// Forgets the runs `cursor` acknowledges.
    fn forget(&self, cursor: &Cursor) {
        let mut given = lock(&self.0);
        let Some(runs) = given.get_mut(&cursor.subscriber) else {
            return;
        };
        for position in &cursor.positions {
            let Some(origins) = runs.get_mut(&position.topic) else {
                continue;
            };
            if let Some(ends) = origins.get_mut(&position.origin) {
                ends.drain(..ends.partition_point(|&end| end <= position.seq));
                if ends.is_empty() {
                    origins.remove(&position.origin);
                }
            }
            if origins.is_empty() {
                runs.remove(&position.topic);
            }
        }
        if runs.is_empty() {
            given.remove(&cursor.subscriber);
        }
    }
}

/// Per topic and origin, the highest seq among `messages`.
fn run_ends(messages: &[Message]) -> BTreeMap<(&str, &str), u64> {
    let mut highest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for message in messages {
        let seq = highest
            .entry((&message.topic, &message.origin))
            .or_default();
        *seq = (*seq).max(message.seq);
    }
    highest
}

/// The cursor acknowledging what a pull gave out: of the messages `read`,
/// the highest seq per topic and origin; the `leased` ones one by one (a
/// position would pass over messages leased to other pulls).
fn cursor_after(subscriber: &str, read: &[Message], leased: &[Message]) -> Cursor {
    Cursor {
        subscriber: subscriber.to_string(),
        positions: run_ends(read)
            .into_iter()
            .map(|((topic, origin), seq)| Position {
                topic: topic.to_string(),
                origin: origin.to_string(),
                seq,
            })
            .collect(),
        ids: leased
            .iter()
            .map(|message| EventId {
                origin: message.origin.clone(),
                seq: message.seq,
            })
            .collect(),
        epochs: Epochs::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(topic: &str, seqs: &[u64]) -> Vec<Message> {
        seqs.iter()
            .map(|&seq| Message {
                id: client::wire::message_id("A:1", seq),
                origin: "A:1".to_string(),
                seq,
                topic: topic.to_string(),
                publisher: "P".to_string(),
                payload: String::new(),
                lamport: seq,
                published_at_ms: 0,
                headers: Default::default(),
                msg_id: None,
                deliveries: 0,
            })
            .collect()
    }

    fn given(counts: &GivenCounts, topic: &str, seqs: &[u64]) -> Vec<u32> {
        let mut pulled = messages(topic, seqs);
        counts.count("S", &mut pulled);
        pulled.iter().map(|m| m.deliveries).collect()
    }

    #[test]
    fn a_message_was_given_once_by_every_earlier_run_that_reached_it() {
        let counts = GivenCounts::default();
        assert_eq!(given(&counts, "t", &[1, 2, 3]), [1, 1, 1]);
        assert_eq!(given(&counts, "t", &[1, 2, 3, 4]), [2, 2, 2, 1]);
        assert_eq!(given(&counts, "u", &[1, 2]), [1, 1], "another topic");
        // Acknowledging up to 2 forgets nothing the runs to 3 and 4 hold
        // above it.
        let mut cursor = cursor_after("S", &messages("t", &[1, 2]), &[]);
        counts.forget(&cursor);
        assert_eq!(given(&counts, "t", &[3, 4, 5]), [3, 2, 1]);
        cursor = cursor_after("S", &messages("t", &[5]), &[]);
        counts.forget(&cursor);
        assert_eq!(given(&counts, "t", &[6]), [1]);
        cursor = cursor_after("S", &messages("u", &[2]), &[]);
        counts.forget(&cursor);
        assert_eq!(given(&counts, "t", &[6]), [2]);
        counts.forget(&cursor_after("S", &messages("t", &[6]), &[]));
        assert!(
            lock(&counts.0).is_empty(),
            "nothing left once all is acknowledged"
        );
    }
}
