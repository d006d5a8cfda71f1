//! The brokers' own protocol (not part of the public API): event sync with
//! liveness and term heartbeats (`POST /peer/sync`) and bully election
//! messages (`POST /peer/election`).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wire::{Headers, SharedSettings, StartFrom, TopicLimits};

/// Per origin, the highest seq below which a broker holds every event.
pub type Have = BTreeMap<String, u64>;

/// `POST /peer/sync`: events the receiver lacks, plus the sender's state.
/// A broker sends its events already encoded (`EncodedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest<E = PeerEvent> {
    pub from: String,
    pub term: u64,
    pub leader: Option<String>,
    pub events: Vec<E>,
    /// Leader mode, from the leader: per origin, the seq up to which a
    /// majority holds every event (what followers may deliver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<Have>,
}

/// The receiver's state after applying a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub from: String,
    pub term: u64,
    pub leader: Option<String>,
    pub have: Have,
    /// What of it the receiver holds on disk, when that may be less: in
    /// gossip mode a broker takes a peer's events without syncing them at
    /// once. Absent: all of `have` (a broker that does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<Have>,
}

/// One event as brokers exchange it. In JSON an object `{"origin", "seq",
/// "lamport", "change"}`, except a publish, which is most of what brokers
/// exchange: an array `[origin, seq, lamport, topic, publisher, payload,
/// published_at_ms]`, then `headers` and `msg_id` when it has either. (A
/// replica spent about a third of its parsing on the object form's nine
/// keys.) Both forms are read for every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEvent {
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
    pub change: PeerChange,
}

/// A `PeerEvent`'s object form, as it is read.
#[derive(Deserialize)]
struct EventObject {
    origin: String,
    seq: u64,
    lamport: u64,
    change: PeerChange,
}

impl Serialize for PeerEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let PeerChange::Publish {
            topic,
            publisher,
            payload,
            published_at_ms,
            headers,
            msg_id,
        } = &self.change
        else {
            let mut object = serializer.serialize_struct("PeerEvent", 4)?;
            object.serialize_field("origin", &self.origin)?;
            object.serialize_field("seq", &self.seq)?;
            object.serialize_field("lamport", &self.lamport)?;
            object.serialize_field("change", &self.change)?;
            return object.end();
        };
        PublishEvent {
            origin: &self.origin,
            seq: self.seq,
            lamport: self.lamport,
            topic,
            publisher,
            payload,
            published_at_ms: *published_at_ms,
            headers,
            msg_id: msg_id.as_deref(),
        }
        .serialize(serializer)
    }
}

/// A publish event's fields, borrowed: what a broker encodes its own
/// publishes from, without an owned `PeerEvent`. Encoded as `PeerEvent`
/// encodes a publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishEvent<'a> {
    pub origin: &'a str,
    pub seq: u64,
    pub lamport: u64,
    pub topic: &'a str,
    pub publisher: &'a str,
    pub payload: &'a str,
    pub published_at_ms: i64,
    pub headers: &'a Headers,
    pub msg_id: Option<&'a str>,
}

impl Serialize for PublishEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extras = !self.headers.is_empty() || self.msg_id.is_some();
        let mut array = serializer.serialize_tuple(if extras { 9 } else { 7 })?;
        array.serialize_element(self.origin)?;
        array.serialize_element(&self.seq)?;
        array.serialize_element(&self.lamport)?;
        array.serialize_element(self.topic)?;
        array.serialize_element(self.publisher)?;
        array.serialize_element(self.payload)?;
        array.serialize_element(&self.published_at_ms)?;
        if extras {
            array.serialize_element(self.headers)?;
            array.serialize_element(&self.msg_id)?;
        }
        array.end()
    }
}

impl<'de> Deserialize<'de> for PeerEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = PeerEvent;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event object, or a publish as an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PeerEvent, A::Error> {
        let EventObject {
            origin,
            seq,
            lamport,
            change,
        } = EventObject::deserialize(MapAccessDeserializer::new(map))?;
        Ok(PeerEvent {
            origin,
            seq,
            lamport,
            change,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut array: A) -> Result<PeerEvent, A::Error> {
        Ok(PeerEvent {
            origin: element(&mut array, 0)?,
            seq: element(&mut array, 1)?,
            lamport: element(&mut array, 2)?,
            change: PeerChange::Publish {
                topic: element(&mut array, 3)?,
                publisher: element(&mut array, 4)?,
                payload: element(&mut array, 5)?,
                published_at_ms: element(&mut array, 6)?,
                headers: array.next_element()?.unwrap_or_default(),
                msg_id: array.next_element::<Option<String>>()?.flatten(),
            },
        })
    }
}

/// Element `index` of a publish's array, which it must have.
fn element<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
    array: &mut A,
    index: usize,
) -> Result<T, A::Error> {
    array
        .next_element()?
        .ok_or_else(|| de::Error::invalid_length(index, &"a publish of 7 to 9 elements"))
}

/// A `PeerEvent` in its JSON form: encoded once, it goes to every peer
/// that lacks it as it is. Events encoded together (the own events of one
/// commit) share one text: keeping and dropping them costs an allocation
/// per text, not several per event.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    text: Arc<Vec<u8>>,
    span: Range<usize>,
}

impl EncodedEvent {
    /// One event, in a text of its own.
    pub fn new(event: &PeerEvent) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_vec(event)?;
        Ok(EncodedEvent {
            span: 0..text.len(),
            text: Arc::new(text),
        })
    }

    /// The JSON text.
    pub fn json(&self) -> &[u8] {
        &self.text[self.span.clone()]
    }
}

/// Encodes events one after another into one text that all of them share.
#[derive(Debug, Default)]
pub struct EventEncoder {
    text: Vec<u8>,
    /// Where each event's text ends.
    ends: Vec<usize>,
}

impl EventEncoder {
    pub fn push(&mut self, event: &PeerEvent) -> Result<(), serde_json::Error> {
        self.encode(event)
    }

    pub fn push_publish(&mut self, event: &PublishEvent<'_>) -> Result<(), serde_json::Error> {
        self.encode(event)
    }

    /// An event that cannot be encoded leaves nothing behind.
    fn encode(&mut self, event: &impl Serialize) -> Result<(), serde_json::Error> {
        let start = self.text.len();
        serde_json::to_writer(&mut self.text, event).inspect_err(|_| self.text.truncate(start))?;
        self.ends.push(self.text.len());
        Ok(())
    }

    /// The bytes of their text.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Forgets every event but the first `events`.
    pub fn truncate(&mut self, events: usize) {
        self.ends.truncate(events);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// The events, in the order they came.
    pub fn finish(mut self) -> Vec<EncodedEvent> {
        self.text.shrink_to_fit();
        let text = Arc::new(self.text);
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| EncodedEvent {
                text: Arc::clone(&text),
                span: start..end,
            })
            .collect()
    }
}

impl SyncRequest<EncodedEvent> {
    /// The sync as JSON, its events written as they were encoded.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        /// Every field of a `SyncRequest` but its events.
        #[derive(Serialize)]
        struct Head<'a> {
            from: &'a str,
            term: u64,
            leader: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            committed: Option<&'a Have>,
        }
        let head = Head {
            from: &self.from,
            term: self.term,
            leader: self.leader.as_deref(),
            committed: self.committed.as_ref(),
        };
        let events: usize = self.events.iter().map(|event| event.json().len() + 1).sum();
        let mut json = Vec::with_capacity(events + 256);
        serde_json::to_writer(&mut json, &head)?;
        // The head is an object with a field or more: `{...}`; the events
        // go in before its closing brace.
        json.pop();
        json.extend_from_slice(br#","events":["#);
        for (n, event) in self.events.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            json.extend_from_slice(event.json());
        }
        json.extend_from_slice(b"]}");
        Ok(json)
    }
}

/// What an event changes, tagged by its kind: `{"publish": {...}}`, or
/// `"pruned"`. (An internally tagged enum inside a flattened field made
/// serde buffer every event before it read the tag: a third of a
/// replica's parsing.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerChange {
    RegisterPublisher {
        publisher: String,
    },
    RegisterSubscriber {
        subscriber: String,
    },
    CreateTopic {
        topic: String,
        publisher: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<TopicLimits>,
    },
    /// The topic's limits from now on (API.md §6.3), for its incarnation
    /// created at stamp (`created_lamport`, `created_origin`) only.
    SetLimits {
        topic: String,
        publisher: String,
        limits: TopicLimits,
        created_lamport: u64,
        created_origin: String,
    },
    DeleteTopic {
        topic: String,
        publisher: String,
    },
    Subscribe {
        subscriber: String,
        topic: String,
        from: StartFrom,
        /// A shared subscription's settings; `None` for a v1 one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shared: Option<SharedSettings>,
    },
    Unsubscribe {
        subscriber: String,
        topic: String,
    },
    Ack {
        subscriber: String,
        topic: String,
        acked_origin: String,
        acked_seq: u64,
        #[serde(default, skip_serializing_if = "Epoch::is_initial")]
        epoch: Epoch,
    },
    Publish {
        topic: String,
        publisher: String,
        payload: String,
        published_at_ms: i64,
        #[serde(default, skip_serializing_if = "Headers::is_empty")]
        headers: Headers,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg_id: Option<String>,
    },
    /// A subscriber acknowledged these messages of `topic`, one by one
    /// (API.md §6.2).
    AckMessages {
        subscriber: String,
        topic: String,
        ids: Vec<EventId>,
        #[serde(default, skip_serializing_if = "Epoch::is_initial")]
        epoch: Epoch,
    },
    /// A shared subscription's messages `ids` of `topic` are leased until
    /// `until_ms` and may be given out again from `eligible_ms`; with
    /// `delivered`, they were given out now (a pull), else a lease changed
    /// (nack, extend).
    Lease {
        subscriber: String,
        topic: String,
        ids: Vec<EventId>,
        until_ms: i64,
        eligible_ms: i64,
        delivered: bool,
        #[serde(default, skip_serializing_if = "Epoch::is_initial")]
        epoch: Epoch,
    },
    /// The subscriber's position on `topic` becomes `positions` (per
    /// origin, the seq read up to; 0 for an origin not named), backwards or
    /// forwards (API.md §6.4). The event's stamp starts a new epoch of the
    /// subscription: acknowledgements and leases of earlier epochs no
    /// longer count.
    Seek {
        subscriber: String,
        topic: String,
        positions: Have,
    },
    /// A broker joins the cluster.
    AddMember {
        host: String,
        port: u16,
    },
    /// A broker leaves the cluster.
    RemoveMember {
        member: String,
    },
    /// The cluster's replication mode from now on: `gossip` or `leader`.
    SetMode {
        mode: String,
    },
    /// Leader mode: the leader of `term` starts ordering. Everything in
    /// `base` (per origin, the seqs up to which it held every event) not
    /// ordered before is delivered next, then the leader's own events of
    /// the term; `prev` is the lead it follows on. `repeats` are messages
    /// that base brings in which repeat the `msg_id` of a message ordered
    /// before them (API.md §6.1): every broker drops them before it
    /// delivers anything under this lead.
    Lead {
        term: u64,
        prev: Option<EventId>,
        base: Have,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        repeats: Vec<EventId>,
    },
    /// A message the sender no longer holds (retention deleted it): the
    /// receiver only counts the seq as received.
    Pruned,
}

/// The epoch an acknowledgement or a lease was made in: the stamp
/// (`lamport`, `origin`) of the subscription's latest seek that its broker
/// held, or before any seek the initial epoch (0, ""). Ordered by stamp.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    pub lamport: u64,
    pub origin: String,
}

impl Epoch {
    pub fn is_initial(&self) -> bool {
        self.lamport == 0 && self.origin.is_empty()
    }
}

/// Names one event: its origin and seq.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub origin: String,
    pub seq: u64,
}

/// A bully election message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionKind {
    Election,
    Answer,
    Coordinator,
}

/// `POST /peer/election`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionMessage {
    pub from: String,
    pub kind: ElectionKind,
    pub term: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_change_by_kind() {
        let publish = PeerEvent {
            origin: "h:1".to_string(),
            seq: 7,
            lamport: 9,
            change: PeerChange::Publish {
                topic: "t".to_string(),
                publisher: "p".to_string(),
                payload: "hi".to_string(),
                published_at_ms: 5,
                headers: Headers::new(),
                msg_id: None,
            },
        };
        let pruned = PeerEvent {
            change: PeerChange::Pruned,
            ..publish.clone()
        };
        let text = serde_json::to_string(&[&publish, &pruned]).unwrap();
        assert_eq!(
            text,
            r#"[["h:1",7,9,"t","p","hi",5],{"origin":"h:1","seq":7,"lamport":9,"change":"pruned"}]"#
        );
        let back: Vec<PeerEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, [publish.clone(), pruned.clone()]);
        let mut encoder = EventEncoder::default();
        encoder.push(&publish).unwrap();
        encoder.push(&pruned).unwrap();
        let sync = SyncRequest {
            from: "h:1".to_string(),
            term: 3,
            leader: None,
            events: encoder.finish(),
            committed: None,
        };
        assert_eq!(
            String::from_utf8(sync.to_json().unwrap()).unwrap(),
            format!(r#"{{"from":"h:1","term":3,"leader":null,"events":{text}}}"#)
        );
        let as_object = r#"{"origin":"h:1","seq":7,"lamport":9,"change":{"publish":{"topic":"t","publisher":"p","payload":"hi","published_at_ms":5}}}"#;
        assert_eq!(
            serde_json::from_str::<PeerEvent>(as_object).unwrap(),
            publish
        );
    }

    #[test]
    fn a_publish_array_carries_headers_and_msg_id_only_when_it_has_them() {
        let mut headers = Headers::new();
        headers.insert("k".to_string(), "v".to_string());
        let with = |headers: Headers, msg_id: Option<&str>| PeerEvent {
            origin: "h:1".to_string(),
            seq: 1,
            lamport: 2,
            change: PeerChange::Publish {
                topic: "t".to_string(),
                publisher: "p".to_string(),
                payload: "x".to_string(),
                published_at_ms: 3,
                headers,
                msg_id: msg_id.map(str::to_string),
            },
        };
        for (event, text) in [
            (
                with(headers.clone(), None),
                r#"["h:1",1,2,"t","p","x",3,{"k":"v"},null]"#,
            ),
            (
                with(Headers::new(), Some("m")),
                r#"["h:1",1,2,"t","p","x",3,{},"m"]"#,
            ),
            (
                with(headers, Some("m")),
                r#"["h:1",1,2,"t","p","x",3,{"k":"v"},"m"]"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&event).unwrap(), text);
            assert_eq!(serde_json::from_str::<PeerEvent>(text).unwrap(), event);
        }
    }

    #[test]
    fn a_publish_array_of_the_wrong_length_or_types_is_refused() {
        for text in [
            r#"["h:1",1,2,"t","p","x"]"#,
            r#"["h:1",1,2,"t","p","x",3,{},null,"extra"]"#,
            r#"["h:1","1",2,"t","p","x",3]"#,
            r#"["h:1",1,2,"t","p","x",3,["k"]]"#,
            r#"[]"#,
            r#""h:1""#,
        ] {
            assert!(
                serde_json::from_str::<PeerEvent>(text).is_err(),
                "{text} was taken"
            );
        }
    }

    fn publish(seq: u64, payload: &str) -> PeerEvent {
        PeerEvent {
            origin: "h:1".to_string(),
            seq,
            lamport: seq + 1,
            change: PeerChange::Publish {
                topic: "t".to_string(),
                publisher: "p".to_string(),
                payload: payload.to_string(),
                published_at_ms: 5,
                headers: Headers::new(),
                msg_id: None,
            },
        }
    }

    #[test]
    fn a_sync_of_encoded_events_reads_as_the_sync_of_its_events() {
        let events = vec![
            publish(1, "a \"quoted\" payload"),
            PeerEvent {
                change: PeerChange::Pruned,
                ..publish(2, "")
            },
            publish(3, "ü"),
        ];
        let committed = Have::from([("h:1".to_string(), 2), ("h:2".to_string(), 9)]);
        for (events, leader, committed) in [
            (events.clone(), Some("h:2"), Some(committed)),
            (events, None, None),
            (Vec::new(), None, None),
        ] {
            let mut encoder = EventEncoder::default();
            for event in &events {
                encoder.push(event).unwrap();
            }
            fn sync<E>(
                events: Vec<E>,
                leader: Option<&str>,
                committed: Option<Have>,
            ) -> SyncRequest<E> {
                SyncRequest {
                    from: "h:1".to_string(),
                    term: 7,
                    leader: leader.map(str::to_string),
                    events,
                    committed,
                }
            }
            let json = sync(encoder.finish(), leader, committed.clone())
                .to_json()
                .unwrap();
            let read: SyncRequest = serde_json::from_slice(&json).unwrap();
            assert_eq!(read, sync(events, leader, committed));
        }
    }

    #[test]
    fn an_encoder_forgets_what_it_is_told_to() {
        let mut encoder = EventEncoder::default();
        for seq in 1..=3 {
            encoder.push(&publish(seq, "x")).unwrap();
        }
        encoder.truncate(1);
        encoder.push(&publish(4, "y")).unwrap();
        let encoded = encoder.finish();
        let read: Vec<PeerEvent> = encoded
            .iter()
            .map(|event| serde_json::from_slice(event.json()).unwrap())
            .collect();
        assert_eq!(read, [publish(1, "x"), publish(4, "y")]);
        assert_eq!(
            encoded[1].json(),
            EncodedEvent::new(&publish(4, "y")).unwrap().json()
        );
    }
}
