//! Checked operations: each validates a request against the current state
//! inside the writer's transaction and records the events it makes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use client::http::Created;
use client::peer::{Epoch, EventId, Have};
use client::wire::{
    message_id, Message, NewMessage, SharedSettings, StartFrom, TopicInfo, TopicLimits,
};
use client::PeerAddr;
use rusqlite::params;

use super::error::StoreError;
use super::queries;
use super::writer::WriteTx;
use crate::config::Mode;
use crate::cursor::Position;
use crate::epochs::{Epochs, Lead};
use crate::event::{now_ms, Change};
use crate::names::{is_broker_id, is_valid_name};
use crate::topic_limits;

/// What a pull of shared subscriptions gave out.
#[derive(Debug, Default)]
pub struct Leased {
    /// The messages leased, with their delivery counts.
    pub messages: Vec<Message>,
    /// The topic of each message moved to dead letters instead.
    pub dead_lettered: Vec<String>,
}

/// Where a seek moves a position (API.md §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekPoint {
    /// Before every message the topic holds.
    Earliest,
    /// After every message this broker holds.
    Latest,
    /// At the first message published at or after this time (ms).
    Time(i64),
    /// At this message itself.
    Message(EventId),
}

/// What became of one message of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now as `(seq, lamport)` of this broker.
    Stored((u64, u64)),
    /// Stored before as `(origin, seq, lamport)`: nothing stored now.
    Duplicate(String, u64, u64),
}

impl WriteTx<'_> {
    pub fn register_publisher(&mut self, id: &str) -> Result<Created, StoreError> {
        if queries::publisher_exists(self.conn, id)? {
            return Ok(Created::Existing);
        }
        self.record(Change::RegisterPublisher {
            publisher: id.to_string(),
        })?;
        Ok(Created::New)
    }

    pub fn register_subscriber(&mut self, id: &str) -> Result<Created, StoreError> {
        if queries::subscriber_exists(self.conn, id)? {
            return Ok(Created::Existing);
        }
        self.record(Change::RegisterSubscriber {
            subscriber: id.to_string(),
        })?;
        Ok(Created::New)
    }

    /// Creates `topic` as `publisher`, with `limits` (checked by the caller).
    pub fn create_topic(
        &mut self,
        topic: &str,
        publisher: &str,
        limits: Option<TopicLimits>,
    ) -> Result<(), StoreError> {
        queries::require_publisher(self.conn, publisher)?;
        if queries::topic_owner(self.conn, topic)?.is_some() {
            return Err(StoreError::TopicExists(topic.to_string()));
        }
        self.record(Change::CreateTopic {
            topic: topic.to_string(),
            publisher: publisher.to_string(),
            limits: limits.filter(|limits| *limits != TopicLimits::default()),
        })?;
        Ok(())
    }

    /// Deletes `topic` as `publisher`, who must own it (`None`: whoever
    /// owns it, for an admin).
    pub fn delete_topic(&mut self, topic: &str, publisher: Option<&str>) -> Result<(), StoreError> {
        let owner = self.require_owner(topic, publisher)?;
        self.record(Change::DeleteTopic {
            topic: topic.to_string(),
            publisher: owner,
        })?;
        Ok(())
    }

    /// Replaces `topic`'s limits (checked by the caller) as `publisher`,
    /// who must own it (`None`: an admin). Returns the topic as it is now.
    pub fn set_limits(
        &mut self,
        topic: &str,
        publisher: Option<&str>,
        limits: TopicLimits,
    ) -> Result<TopicInfo, StoreError> {
        let owner = self.require_owner(topic, publisher)?;
        let (created_lamport, created_origin) = queries::topic_creation(self.conn, topic)?
            .ok_or_else(|| StoreError::TopicNotFound(topic.to_string()))?;
        self.record(Change::SetLimits {
            topic: topic.to_string(),
            publisher: publisher.unwrap_or(&owner).to_string(),
            limits,
            created_lamport,
            created_origin,
        })?;
        queries::topic(self.conn, topic)?
            .ok_or_else(|| StoreError::TopicNotFound(topic.to_string()))
    }

    /// The owner of the existing `topic`, which must be `publisher` (`None`:
    /// anyone may act, an admin).
    fn require_owner(&self, topic: &str, publisher: Option<&str>) -> Result<String, StoreError> {
        let owner = queries::require_topic(self.conn, topic)?;
        if let Some(publisher) = publisher {
            queries::require_publisher(self.conn, publisher)?;
            if owner != publisher {
                return Err(StoreError::NotTopicOwner {
                    topic: topic.to_string(),
                    publisher: publisher.to_string(),
                });
            }
        }
        Ok(owner)
    }

    /// Per origin of `have`, the seq just before its first held message of
    /// `topic` that a seek to `from` starts at (all it holds when none).
    fn positions_before(
        &self,
        topic: &str,
        have: Have,
        from: &queries::SeekFrom<'_>,
    ) -> Result<Have, StoreError> {
        let mut positions = Have::new();
        for (origin, upto) in have {
            let first = queries::first_from(self.conn, (topic, &origin, upto), from)?;
            positions.insert(origin, first.map_or(upto, |first| first - 1));
        }
        Ok(positions)
    }

    /// Moves `subscriber`'s position on `topic` to `to` (API.md §6.4), as a
    /// version vector over what this broker holds: per origin, just before
    /// the first held message the seek starts at (all it holds when none).
    pub fn seek(&mut self, subscriber: &str, topic: &str, to: SeekPoint) -> Result<(), StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        queries::require_topic(self.conn, topic)?;
        queries::require_subscription(self.conn, subscriber, topic)?;
        let have = queries::have(self.conn)?;
        let positions = match to {
            SeekPoint::Earliest => Have::new(),
            SeekPoint::Latest => have,
            SeekPoint::Time(time_ms) => {
                self.positions_before(topic, have, &queries::SeekFrom::Time(time_ms))?
            }
            SeekPoint::Message(id) => {
                let stamp = queries::message_stamp(self.conn, topic, &id)?.ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "{} is not a message of {topic} this broker holds",
                        message_id(&id.origin, id.seq)
                    ))
                })?;
                let mut positions =
                    self.positions_before(topic, have, &queries::SeekFrom::Stamp(&stamp))?;
                // Also when it lies past a gap of its origin here.
                positions.insert(id.origin.clone(), id.seq - 1);
                positions
            }
        };
        self.record(Change::Seek {
            subscriber: subscriber.to_string(),
            topic: topic.to_string(),
            positions,
        })?;
        Ok(())
    }

    /// Publishes `messages` in order, all or none, but for those whose
    /// `msg_id` this publisher stored on the topic at or after
    /// `dedup_since_ms` (or earlier in this request): those are stored
    /// again nowhere. Returns what became of each, in order.
    pub fn publish(
        &mut self,
        topic: &str,
        publisher: &str,
        messages: Vec<NewMessage>,
        published_at_ms: i64,
        dedup_since_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        queries::require_topic(self.conn, topic)?;
        queries::require_publisher(self.conn, publisher)?;
        // Per message: `Ok(k)`: the k-th new one; `Err`: a stored one.
        let mut planned: Vec<Result<usize, (String, u64, u64)>> = Vec::new();
        let mut new: Vec<NewMessage> = Vec::new();
        let mut ids_here: HashMap<String, usize> = HashMap::new();
        for message in messages {
            if let Some(msg_id) = &message.msg_id {
                if let Some(&k) = ids_here.get(msg_id) {
                    planned.push(Ok(k));
                    continue;
                }
                let since = (topic, publisher, msg_id.as_str(), dedup_since_ms);
                if let Some(stored) = queries::stored_msg_id(self.conn, since)? {
                    planned.push(Err(stored));
                    continue;
                }
                ids_here.insert(msg_id.clone(), new.len());
            }
            planned.push(Ok(new.len()));
            new.push(message);
        }
        let stamped = self.record_messages(topic, publisher, &new, published_at_ms)?;
        let me = self.me().to_string();
        let mut first = vec![true; stamped.len()];
        Ok(planned
            .into_iter()
            .map(|plan| match plan {
                Ok(k) if std::mem::take(&mut first[k]) => Outcome::Stored(stamped[k]),
                Ok(k) => Outcome::Duplicate(me.clone(), stamped[k].0, stamped[k].1),
                Err((origin, seq, lamport)) => Outcome::Duplicate(origin, seq, lamport),
            })
            .collect())
    }

    /// The messages that a new lead with `base` brings into the order after
    /// `before` (the epochs of the chain it follows on) and that repeat the
    /// `(topic, publisher, msg_id)` of the first message with that key in
    /// the order, published within `window_ms` of it: the copy an old
    /// leader stored without a majority and never acknowledged, whose
    /// client repeated the publish through the next leader (API.md §6.1).
    /// Measured against the first copy, which is never a repeat, so the
    /// outcome does not depend on which copy is looked at first.
    fn repeats_brought_in(
        &self,
        before: &Epochs,
        base: &Have,
        window_ms: i64,
    ) -> Result<Vec<EventId>, StoreError> {
        let ordered = |origin: &str, seq: u64| {
            seq <= before
                .limit_of(origin)
                .max(base.get(origin).copied().unwrap_or(0))
        };
        let mut repeats = Vec::new();
        for (origin, after, upto) in before.brought_in_by(base) {
            for message in queries::keyed_messages(self.conn, (&origin, after, upto))? {
                let copies = queries::copies(self.conn, &message.key)?;
                let first = copies
                    .iter()
                    .filter(|copy| ordered(&copy.origin, copy.seq))
                    .min_by_key(|copy| before.place(&copy.origin, copy.seq, copy.lamport));
                let repeats_first = first.is_some_and(|first| {
                    (first.origin.as_str(), first.seq) != (message.origin.as_str(), message.seq)
                        && first.published_at_ms.abs_diff(message.published_at_ms)
                            <= window_ms.unsigned_abs()
                });
                if repeats_first {
                    repeats.push(EventId {
                        origin: message.origin,
                        seq: message.seq,
                    });
                }
            }
        }
        Ok(repeats)
    }

    /// Deletes the messages `ids` (a lead's repeats) and their client ids,
    /// where still held: a local deletion, like retention's, that every
    /// broker makes from the same lead. Returns how many it deleted.
    pub fn drop_messages(&mut self, ids: &[EventId]) -> Result<usize, StoreError> {
        self.not_plain();
        let mut dropped = 0;
        for id in ids {
            self.conn
                .prepare_cached(
                    "DELETE FROM msg_ids WHERE (topic, publisher, msg_id, origin, seq) IN (
                         SELECT topic, publisher, msg_id, origin, seq FROM messages
                         WHERE origin = ?1 AND seq = ?2 AND msg_id IS NOT NULL)",
                )?
                .execute(params![id.origin, id.seq])?;
            dropped += self
                .conn
                .prepare_cached(
                    "DELETE FROM message_rows WHERE rowid IN (
                         SELECT row_id FROM messages WHERE origin = ?1 AND seq = ?2)",
                )?
                .execute(params![id.origin, id.seq])?;
        }
        Ok(dropped)
    }

    /// Subscribes `subscriber` to `topic`, shared with `shared` settings
    /// (whose dead-letter topic must exist); an existing subscription with
    /// the same settings is fine, one with others is refused.
    pub fn subscribe(
        &mut self,
        subscriber: &str,
        topic: &str,
        from: StartFrom,
        shared: Option<SharedSettings>,
    ) -> Result<Created, StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        queries::require_topic(self.conn, topic)?;
        if let Some(dead_letters) = shared.as_ref().and_then(|s| s.dead_letter_topic.as_ref()) {
            queries::require_topic(self.conn, dead_letters)?;
        }
        if let Some(existing) = queries::subscription_settings(self.conn, subscriber, topic)? {
            if existing != shared {
                return Err(StoreError::Invalid(format!(
                    "{subscriber} is subscribed to {topic} with other settings: unsubscribe first"
                )));
            }
            return Ok(Created::Existing);
        }
        self.record(Change::Subscribe {
            subscriber: subscriber.to_string(),
            topic: topic.to_string(),
            from,
            shared,
        })?;
        Ok(Created::New)
    }

    pub fn unsubscribe(&mut self, subscriber: &str, topic: &str) -> Result<(), StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        queries::require_topic(self.conn, topic)?;
        queries::require_subscription(self.conn, subscriber, topic)?;
        self.record(Change::Unsubscribe {
            subscriber: subscriber.to_string(),
            topic: topic.to_string(),
        })?;
        Ok(())
    }

    /// Adds a member (a no-op for a present one).
    pub fn add_member(&mut self, host: &str, port: u16) -> Result<Created, StoreError> {
        let id = format!("{host}:{port}");
        if queries::member_present(self.conn, &id)? == Some(true) {
            return Ok(Created::Existing);
        }
        self.record(Change::AddMember {
            host: host.to_string(),
            port,
        })?;
        Ok(Created::New)
    }

    /// Records as members the brokers never added nor removed at run time
    /// (the seed peer list), so that a broker joining later learns them all.
    pub fn note_members(&mut self, brokers: &[PeerAddr]) -> Result<(), StoreError> {
        for broker in brokers {
            if queries::member_present(self.conn, &broker.id())?.is_none() {
                self.record(Change::AddMember {
                    host: broker.host.clone(),
                    port: broker.port,
                })?;
            }
        }
        Ok(())
    }

    /// Removes a member; `member_not_found` unless `known` says it is one.
    pub fn remove_member(&mut self, id: &str, known: bool) -> Result<(), StoreError> {
        if queries::member_present(self.conn, id)? == Some(false) || !known {
            return Err(StoreError::MemberNotFound(id.to_string()));
        }
        self.record(Change::RemoveMember {
            member: id.to_string(),
        })?;
        Ok(())
    }

    /// Leader mode: this broker starts ordering as the leader of `term`. Its
    /// lead follows on the latest lead it holds; its base is its own events
    /// and, of the other origins, what a majority holds (`majority`), never
    /// less than that lead's base (see `epochs`). Events only this broker
    /// holds would make every broker wait for them, should it fail.
    pub fn lead(&mut self, term: u64, majority: &Have, window_ms: i64) -> Result<(), StoreError> {
        let prev = queries::latest_lead(self.conn)?;
        let mut base: Have = queries::have(self.conn)?
            .into_iter()
            .map(|(origin, held)| {
                let held_by_most = majority.get(&origin).copied().unwrap_or(0);
                (origin, held.min(held_by_most))
            })
            .collect();
        base.insert(self.me().to_string(), self.last_seq());
        for (origin, &seq) in prev.iter().flat_map(|lead| &lead.base) {
            let held = base.entry(origin.clone()).or_default();
            *held = (*held).max(seq);
        }
        let repeats = match &prev {
            Some(prev) => self.repeats_after(prev, &base, window_ms)?,
            None => Vec::new(),
        };
        self.record(Change::Lead {
            term,
            prev: prev.map(|lead| lead.id),
            base,
            repeats,
        })?;
        Ok(())
    }

    /// The repeats a lead with `base` following on `prev` brings in (see
    /// `repeats_brought_in`); none when the mode was set after `prev`: what
    /// comes in then was taken in gossip mode, where any broker may have
    /// delivered either copy already.
    fn repeats_after(
        &self,
        prev: &Lead,
        base: &Have,
        window_ms: i64,
    ) -> Result<Vec<EventId>, StoreError> {
        if queries::mode_set_after(self.conn, &prev.id)? {
            return Ok(Vec::new());
        }
        let leads = queries::leads(self.conn)?
            .into_iter()
            .map(|lead| (lead.id.clone(), lead))
            .collect();
        let own_end = base.get(&prev.id.origin).copied().unwrap_or(0);
        match Epochs::build(&leads, &prev.id, own_end) {
            Some(before) => self.repeats_brought_in(&before, base, window_ms),
            None => Ok(Vec::new()),
        }
    }

    /// Sets the cluster's replication mode.
    pub fn set_mode(&mut self, mode: Mode) -> Result<(), StoreError> {
        self.record(Change::SetMode {
            mode: mode.as_str().to_string(),
        })?;
        Ok(())
    }

    /// Records the positions that move forward on the subscriber's topics;
    /// the others are already acknowledged, no longer subscribed, or were
    /// read before a later seek (`epochs`: those the pull read in, per
    /// topic). A cursor no pull could have returned is refused whole.
    pub fn ack(
        &mut self,
        subscriber: &str,
        positions: Vec<Position>,
        epochs: &BTreeMap<String, Epoch>,
    ) -> Result<(), StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        for position in &positions {
            self.check_position(position)?;
        }
        for Position { topic, origin, seq } in positions {
            if !queries::is_subscribed(self.conn, subscriber, &topic)?
                || queries::position(self.conn, subscriber, &topic, &origin)? >= seq
            {
                continue;
            }
            let read_in = epochs.get(&topic).cloned().unwrap_or_default();
            if read_in < queries::epoch(self.conn, subscriber, &topic)? {
                continue;
            }
            self.record(Change::Ack {
                subscriber: subscriber.to_string(),
                topic,
                acked_origin: origin,
                acked_seq: seq,
                epoch: read_in,
            })?;
        }
        Ok(())
    }

    /// Acknowledges the messages `ids`, one by one, for `subscriber`
    /// (API.md §6.2): those this broker holds, on topics the subscriber is
    /// subscribed to, not acknowledged yet, and on a shared subscription
    /// leased to it (given out) before; the others are passed over. One
    /// event per topic and epoch: a leased message's is its lease's (an
    /// acknowledgement of a message given out before a later seek counts
    /// nowhere), the others' the subscription's now.
    pub fn ack_messages(&mut self, subscriber: &str, ids: Vec<EventId>) -> Result<(), StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        let mut by_topic: BTreeMap<(String, Epoch), BTreeSet<EventId>> = BTreeMap::new();
        // Per topic: `None` not subscribed, else whether shared.
        let mut subscriptions: HashMap<String, Option<bool>> = HashMap::new();
        for id in ids {
            let Some(topic) = queries::topic_of_message(self.conn, &id.origin, id.seq)? else {
                continue;
            };
            let shared = match subscriptions.get(&topic) {
                Some(known) => *known,
                None => {
                    let settings = queries::subscription_settings(self.conn, subscriber, &topic)?;
                    let shared = settings.map(|settings| settings.is_some());
                    subscriptions.insert(topic.clone(), shared);
                    shared
                }
            };
            let message = (id.origin.as_str(), id.seq);
            let epoch = match shared {
                None => continue,
                Some(false) => queries::epoch(self.conn, subscriber, &topic)?,
                Some(true) => match queries::lease_of(self.conn, subscriber, message)? {
                    Some(lease) => lease.epoch,
                    None => continue,
                },
            };
            if !queries::is_acknowledged(self.conn, subscriber, &topic, message)? {
                by_topic.entry((topic, epoch)).or_default().insert(id);
            }
        }
        for ((topic, epoch), ids) in by_topic {
            let origins: BTreeSet<String> = ids.iter().map(|id| id.origin.clone()).collect();
            self.record(Change::AckMessages {
                subscriber: subscriber.to_string(),
                topic: topic.clone(),
                ids: ids.into_iter().collect(),
                epoch,
            })?;
            for origin in origins {
                self.advance_position(subscriber, &topic, &origin)?;
            }
        }
        Ok(())
    }

    /// Moves `subscriber`'s position on `topic` for `origin` over the
    /// messages now acknowledged one by one right after it, up to the
    /// first one that is not (or what this broker holds): later reads and
    /// acknowledgements start there instead of passing over them again.
    /// The same acknowledgements, as a position: nothing changes meaning.
    fn advance_position(
        &mut self,
        subscriber: &str,
        topic: &str,
        origin: &str,
    ) -> Result<(), StoreError> {
        let position = queries::position(self.conn, subscriber, topic, origin)?;
        let have = self.have_of(origin)?;
        let reach = match queries::first_unacknowledged(
            self.conn,
            (subscriber, topic, origin),
            position,
            have,
        )? {
            Some(seq) => seq - 1,
            None => have,
        };
        if reach > position {
            self.record(Change::Ack {
                subscriber: subscriber.to_string(),
                topic: topic.to_string(),
                acked_origin: origin.to_string(),
                acked_seq: reach,
                epoch: queries::epoch(self.conn, subscriber, topic)?,
            })?;
        }
        Ok(())
    }

    /// Gives out up to `max` messages of `subscriber`'s shared
    /// subscriptions `shared` that are neither acknowledged nor leased at
    /// `now_ms`, in delivery order (`order` in leader mode), leasing each
    /// for its subscription's `ack_wait_ms` (one event per topic and
    /// redelivery delay). A message given out `max_deliveries` times
    /// already goes to the dead-letter topic instead (see `dead_letter`).
    pub fn lease(
        &mut self,
        subscriber: &str,
        shared: &[(String, SharedSettings)],
        order: Option<&Epochs>,
        (max, now_ms): (u32, i64),
    ) -> Result<Leased, StoreError> {
        let topics: Vec<String> = shared.iter().map(|(topic, _)| topic.clone()).collect();
        let reader = (subscriber, now_ms, &queries::Sent::new());
        let candidates = queries::pending(self.conn, reader, &topics, order, max)?;
        let mut given = Vec::new();
        let mut dead_lettered = Vec::new();
        // Per topic and eligible time: the ids of one lease event.
        let mut leases: BTreeMap<(String, i64, i64), Vec<EventId>> = BTreeMap::new();
        for mut message in candidates {
            let Some((_, settings)) = shared.iter().find(|(topic, _)| *topic == message.topic)
            else {
                continue;
            };
            let before =
                queries::deliveries(self.conn, subscriber, (&message.origin, message.seq))?;
            if settings.max_deliveries.is_some_and(|most| before >= most)
                && self.dead_letter(subscriber, settings, &message, before)?
            {
                dead_lettered.push(message.topic);
                continue;
            }
            message.deliveries = before + 1;
            let until_ms = now_ms.saturating_add(settings.ack_wait_ms as i64);
            let backoff = &settings.backoff_ms;
            let delay = backoff[(message.deliveries as usize - 1).min(backoff.len() - 1)];
            let eligible_ms = until_ms.saturating_add(delay as i64);
            leases
                .entry((message.topic.clone(), until_ms, eligible_ms))
                .or_default()
                .push(EventId {
                    origin: message.origin.clone(),
                    seq: message.seq,
                });
            given.push(message);
        }
        for ((topic, until_ms, eligible_ms), ids) in leases {
            let epoch = queries::epoch(self.conn, subscriber, &topic)?;
            self.record(Change::Lease {
                subscriber: subscriber.to_string(),
                topic,
                ids,
                until_ms,
                eligible_ms,
                delivered: true,
                epoch,
            })?;
        }
        Ok(Leased {
            messages: given,
            dead_lettered,
        })
    }

    /// Moves `message`, given out `deliveries` times without an
    /// acknowledgement, to the subscription's dead-letter topic, in this
    /// transaction: published there (payload unchanged, headers plus
    /// where it came from) and acknowledged here (API.md §6.2). False when
    /// the dead-letter topic is gone (deleted since): the message stays,
    /// to be given out again, rather than the subscription failing.
    fn dead_letter(
        &mut self,
        subscriber: &str,
        settings: &SharedSettings,
        message: &Message,
        deliveries: u32,
    ) -> Result<bool, StoreError> {
        let Some(dead_letters) = &settings.dead_letter_topic else {
            return Ok(false);
        };
        if queries::topic_owner(self.conn, dead_letters)?.is_none() {
            return Ok(false);
        }
        let mut headers = message.headers.clone();
        headers.insert("rumor-dead-letter-id".to_string(), message.id.clone());
        headers.insert("rumor-dead-letter-topic".to_string(), message.topic.clone());
        headers.insert("rumor-deliveries".to_string(), deliveries.to_string());
        let moved = NewMessage {
            payload: message.payload.clone(),
            headers: Some(headers),
            msg_id: message.msg_id.clone(),
        };
        self.record_messages(dead_letters, &message.publisher, &[moved], now_ms())?;
        self.record(Change::AckMessages {
            subscriber: subscriber.to_string(),
            topic: message.topic.clone(),
            ids: vec![EventId {
                origin: message.origin.clone(),
                seq: message.seq,
            }],
            epoch: queries::epoch(self.conn, subscriber, &message.topic)?,
        })?;
        Ok(true)
    }

    /// Changes the leases of `ids` that `subscriber` holds on its shared
    /// subscriptions: ends them now, and lets the messages out again after
    /// `delay_ms` (a nack), or (`None`) restarts them for `ack_wait_ms` (an
    /// extension). Ids not leased now are passed over.
    pub fn relet(
        &mut self,
        subscriber: &str,
        ids: Vec<EventId>,
        nack_delay_ms: Option<u64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        queries::require_subscriber(self.conn, subscriber)?;
        // Per topic, new times and the epoch of the leases: the ids of one event.
        let mut changes: BTreeMap<(String, i64, i64, Epoch), BTreeSet<EventId>> = BTreeMap::new();
        for id in ids {
            let Some(lease) = queries::lease_of(self.conn, subscriber, (&id.origin, id.seq))?
            else {
                continue;
            };
            let Some(Some(settings)) =
                queries::subscription_settings(self.conn, subscriber, &lease.topic)?
            else {
                continue;
            };
            if lease.until_ms <= now_ms
                || queries::is_acknowledged(
                    self.conn,
                    subscriber,
                    &lease.topic,
                    (&id.origin, id.seq),
                )?
            {
                continue;
            }
            let (until_ms, eligible_ms) = match nack_delay_ms {
                Some(delay) => (now_ms, now_ms.saturating_add(delay as i64)),
                None => {
                    let until = now_ms.saturating_add(settings.ack_wait_ms as i64);
                    (until, until + (lease.eligible_ms - lease.until_ms))
                }
            };
            changes
                .entry((lease.topic, until_ms, eligible_ms, lease.epoch))
                .or_default()
                .insert(id);
        }
        for ((topic, until_ms, eligible_ms, epoch), ids) in changes {
            self.record(Change::Lease {
                subscriber: subscriber.to_string(),
                topic,
                ids: ids.into_iter().collect(),
                until_ms,
                eligible_ms,
                delivered: false,
                epoch,
            })?;
        }
        Ok(())
    }

    fn check_position(&self, position: &Position) -> Result<(), StoreError> {
        let refuse = |why: &str| Err(StoreError::Invalid(format!("invalid cursor: {why}")));
        if !is_valid_name(&position.topic) || !is_broker_id(&position.origin) {
            return refuse("it names an invalid topic or origin");
        }
        // An acknowledgement never moves a position past what this broker
        // holds (API.md §5.5): one naming a peer origin's greatest seq
        // would silence that origin for the subscriber on every broker.
        if position.seq > self.have_of(&position.origin)? {
            return refuse(&format!(
                "it acknowledges messages of {} this broker does not hold (yet)",
                position.origin
            ));
        }
        Ok(())
    }
}

/// Deletes up to `?3` messages of topic `?1` published before `?2` (ms).
const TRIM_OLDER: &str = "DELETE FROM message_rows WHERE rowid IN (
    SELECT row_id FROM messages WHERE topic = ?1 AND published_at_ms < ?2 LIMIT ?3)";

/// Deletes up to `?3` messages of topic `?1` older than its `?2` youngest.
const TRIM_BEYOND_COUNT: &str = "DELETE FROM message_rows WHERE rowid IN (
    SELECT row_id FROM messages WHERE topic = ?1
    ORDER BY lamport DESC, origin DESC LIMIT ?3 OFFSET ?2)";

/// Deletes up to `?3` messages of topic `?1` whose payload bytes, with
/// those of every younger message, pass `?2`.
const TRIM_BEYOND_BYTES: &str = "DELETE FROM message_rows WHERE rowid IN (
    SELECT row_id FROM (
        SELECT row_id, sum(length(CAST(payload AS BLOB)))
            OVER (ORDER BY lamport DESC, origin DESC) AS bytes
        FROM messages WHERE topic = ?1)
    WHERE bytes > ?2 LIMIT ?3)";

/// SQL condition: message `m` is held by every peer, given the peers' lowest
/// `have` per origin as JSON in `?2` (NULL: a broker alone). A message a
/// peer still lacks stays, or that peer would only be sent it as `pruned`.
const REPLICATED: &str = "(?2 IS NULL OR m.seq <= coalesce(
    (SELECT value FROM json_each(?2) WHERE key = m.origin), 0))";

/// SQL query: the live subscriptions that still need message `m` (it is
/// past their start, and they acknowledged it neither by position nor by
/// id).
const STILL_NEEDED: &str = "SELECT 1 FROM subscriptions s
    LEFT JOIN positions p ON p.subscriber = s.subscriber
        AND p.topic = s.topic AND p.origin = m.origin
    WHERE s.topic = m.topic AND s.live = 1
      AND (m.lamport, m.origin) > (s.start_lamport, s.start_origin)
      AND m.seq > coalesce(p.seq, 0)
      AND NOT EXISTS (SELECT 1 FROM acks b
                      WHERE b.subscriber = s.subscriber AND b.origin = m.origin AND b.seq = m.seq)";

/// Where the retention sweep's scan of old messages resumes: after this
/// `(origin, seq)`.
pub type ExpiryCursor = Option<(String, u64)>;

/// An expired message, and whether a live subscriber still needs it.
struct Expired {
    rowid: i64,
    seq: u64,
    needed: bool,
}

/// Client ids a sweep step forgets per message it may delete: a row of
/// `msg_ids` is much cheaper to delete, and a publisher giving every
/// message an id makes as many rows as messages.
const FORGET_PER_DELETE: u32 = 8;

/// The times (ms) a retention sweep goes by.
#[derive(Debug, Clone, Copy)]
pub struct SweepTimes {
    pub now_ms: i64,
    /// Messages published before it expire (`--retention`).
    pub expire_before_ms: i64,
    /// The client ids of messages published before it are forgotten
    /// (`retention` keeps them twice `--dedup-window`).
    pub forget_ids_before_ms: i64,
}

/// What one retention sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub deleted: usize,
    /// This step deleted messages and stopped at its limit: more may be
    /// deletable at once.
    pub more: bool,
    pub resume: ExpiryCursor,
}

impl WriteTx<'_> {
    /// Retention, as a local decision of each broker (not an event), in
    /// bounded steps of at most `limit` messages each way. Deletes the
    /// messages every live subscriber of their topic has acknowledged, the
    /// oldest messages of topics past their limits, and the expired
    /// messages that no live subscriber still needs (acknowledged, or
    /// stamped before its subscription started), scanning old messages
    /// onwards from `resume`; and forgets old client ids (`times`).
    pub fn sweep(
        &mut self,
        times: SweepTimes,
        replicated: Option<&Have>,
        resume: ExpiryCursor,
        limit: u32,
    ) -> Result<Swept, StoreError> {
        // It may delete messages a waiting pull would take from a note.
        self.not_plain();
        let replicated = replicated
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Failed(format!("cannot encode the replicated floor: {e}")))?;
        self.forget_covered_acks()?;
        let acknowledged = self.delete_acknowledged(replicated.as_deref(), limit)?
            + self.delete_acknowledged_one_by_one(replicated.as_deref(), limit)?
            + self.trim_to_limits(times.now_ms, limit)?;
        let forget_limit = limit.saturating_mul(FORGET_PER_DELETE);
        let forgotten = self.forget_msg_ids(times.forget_ids_before_ms, forget_limit)?;
        let (expired, resume) =
            self.delete_expired(times.expire_before_ms, replicated.as_deref(), resume, limit)?;
        let deleted = acknowledged + expired;
        let full = acknowledged >= limit as usize || forgotten >= forget_limit as usize;
        Ok(Swept {
            deleted,
            more: (deleted > 0 || forgotten > 0) && (full || resume.is_some()),
            resume,
        })
    }

    /// Forgets up to `limit` client ids of messages published before
    /// `before_ms`: a repeat of one is a new message (API.md §6.1).
    fn forget_msg_ids(&mut self, before_ms: i64, limit: u32) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM msg_ids WHERE (topic, publisher, msg_id, origin, seq) IN (
                     SELECT topic, publisher, msg_id, origin, seq FROM msg_ids
                     WHERE published_at_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![before_ms, limit])?)
    }

    /// Per topic and origin, deletes up to the lowest seq that every live
    /// subscriber of the topic acknowledged (and every peer holds).
    fn delete_acknowledged(
        &mut self,
        replicated: Option<&str>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            &format!(
                "WITH live AS (
                 SELECT topic, count(*) AS subscribers FROM subscriptions
                 WHERE live = 1 GROUP BY topic),
             floors AS (
                 SELECT s.topic, p.origin, min(p.seq) AS seq, count(*) AS subscribers
                 FROM subscriptions s JOIN positions p
                     ON p.subscriber = s.subscriber AND p.topic = s.topic
                 WHERE s.live = 1 GROUP BY s.topic, p.origin)
             DELETE FROM message_rows WHERE rowid IN (
                 SELECT m.row_id FROM floors f JOIN live l USING (topic)
                 JOIN messages m ON m.topic = f.topic AND m.origin = f.origin AND m.seq <= f.seq
                 WHERE f.subscribers = l.subscribers AND {REPLICATED}
                 LIMIT ?1)"
            ),
            params![limit, replicated],
        )?)
    }

    /// Deletes the oldest messages (in delivery order) of each topic past
    /// one of its limits (API.md §6.3), acknowledged or not, at most
    /// `limit`. Unlike the rest of retention it does not wait for every
    /// peer to hold them: every broker trims its copy the same way.
    fn trim_to_limits(&mut self, now_ms: i64, limit: u32) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for (topic, limits) in queries::limited_topics(self.conn)? {
            // Stored limits were checked when they were set.
            let Ok(bounds) = topic_limits::check(&limits) else {
                continue;
            };
            // Each limit as a bound `?2` on what the topic keeps.
            let trims = [
                (
                    bounds.max_age_ms.map(|age| now_ms.saturating_sub(age)),
                    TRIM_OLDER,
                ),
                (bounds.max_messages.map(|n| n as i64), TRIM_BEYOND_COUNT),
                (bounds.max_bytes.map(|n| n as i64), TRIM_BEYOND_BYTES),
            ];
            for (bound, sql) in trims {
                if let Some(bound) = bound {
                    let budget = limit as usize - deleted.min(limit as usize);
                    deleted += self
                        .conn
                        .prepare_cached(sql)?
                        .execute(params![topic, bound, budget])?;
                }
            }
            if deleted >= limit as usize {
                break;
            }
        }
        Ok(deleted)
    }

    /// Drops the acknowledgements by id, and the leases, of messages a
    /// position covers (acknowledging by id moves positions over them, see
    /// `advance_position`): the position says the same, and the tables stay
    /// as small as the acknowledgements that are out of order.
    fn forget_covered_acks(&mut self) -> Result<(), StoreError> {
        for table in ["acks", "leases"] {
            self.conn
                .prepare_cached(&format!(
                    "DELETE FROM {table} WHERE EXISTS (
                         SELECT 1 FROM positions p
                         WHERE p.subscriber = {table}.subscriber AND p.topic = {table}.topic
                           AND p.origin = {table}.origin AND p.seq >= {table}.seq
                           AND p.epoch_lamport = {table}.epoch_lamport
                           AND p.epoch_origin = {table}.epoch_origin)"
                ))?
                .execute([])?;
        }
        Ok(())
    }

    /// Deletes messages acknowledged one by one (API.md §6.2) that every
    /// live subscriber of their topic acknowledged, by id or by position
    /// (and every peer holds).
    fn delete_acknowledged_one_by_one(
        &mut self,
        replicated: Option<&str>,
        limit: u32,
    ) -> Result<usize, StoreError> {
        let none = !self.conn.prepare_cached("SELECT 1 FROM acks")?.exists([])?;
        if none {
            return Ok(0);
        }
        Ok(self.conn.execute(
            &format!(
                // CROSS JOIN: the acknowledgements drive the scan (the
                // planner would otherwise walk every message, with two
                // subqueries each, at every sweep).
                "DELETE FROM message_rows WHERE rowid IN (
                 SELECT m.row_id FROM acks a
                 CROSS JOIN messages m ON m.origin = a.origin AND m.seq = a.seq
                 WHERE {REPLICATED}
                   AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.topic = m.topic AND s.live = 1)
                   AND NOT EXISTS ({STILL_NEEDED})
                 LIMIT ?1)"
            ),
            params![limit, replicated],
        )?)
    }

    /// Looks at up to `limit` messages older than `cutoff_ms` after `resume`
    /// and deletes those no live subscriber needs; says where to resume
    /// (`None`: start from the oldest next time). Each origin is read in seq
    /// order up to its first message that is not yet expired (or not yet
    /// held by every peer): an origin stamps its messages by its own clock, so
    /// a later seq is younger, and a clock set back only delays expiry.
    fn delete_expired(
        &mut self,
        cutoff_ms: i64,
        replicated: Option<&str>,
        resume: ExpiryCursor,
        limit: u32,
    ) -> Result<(usize, ExpiryCursor), StoreError> {
        let origins = queries::have(self.conn)?.into_keys();
        let (resume_origin, resume_seq) = resume.unwrap_or_default();
        let mut budget = limit as usize;
        let mut deleted = 0;
        for origin in origins.filter(|origin| *origin >= resume_origin) {
            let after = if origin == resume_origin {
                resume_seq
            } else {
                0
            };
            let expired = self.expired_of(&origin, after, cutoff_ms, replicated, budget)?;
            let mut delete = self
                .conn
                .prepare_cached("DELETE FROM message_rows WHERE rowid = ?1")?;
            for message in expired.iter().filter(|message| !message.needed) {
                deleted += delete.execute([message.rowid])?;
            }
            budget -= expired.len();
            if budget == 0 {
                let last = expired.last().map_or(after, |message| message.seq);
                return Ok((deleted, Some((origin, last))));
            }
        }
        Ok((deleted, None))
    }

    /// Up to `max` of `origin`'s messages after seq `after`, in seq order,
    /// up to the first one that is not expired or not replicated.
    fn expired_of(
        &self,
        origin: &str,
        after: u64,
        cutoff_ms: i64,
        replicated: Option<&str>,
        max: usize,
    ) -> rusqlite::Result<Vec<Expired>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT m.row_id, m.seq, m.published_at_ms < ?3 AND {REPLICATED},
                        EXISTS ({STILL_NEEDED})
                 FROM messages m
                 WHERE m.origin = ?1 AND m.seq > ?4
                 ORDER BY m.seq"
            ))?
            .query_map(params![origin, replicated, cutoff_ms, after], |row| {
                Ok((
                    row.get::<_, bool>(2)?,
                    Expired {
                        rowid: row.get(0)?,
                        seq: row.get(1)?,
                        needed: row.get(3)?,
                    },
                ))
            })?
            .take_while(|row| !matches!(row, Ok((false, _))))
            .take(max)
            .map(|row| row.map(|(_, message)| message))
            .collect()
    }
}
