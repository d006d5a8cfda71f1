//! Pull cursors: tokens naming how far a pull read, per topic and origin,
//! the single messages it leased on shared subscriptions, and the epochs
//! of sought subscriptions it read. Clients
//! treat them as opaque; the broker checks every position in one before
//! acknowledging it (see `WriteTx::ack`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use std::collections::BTreeMap;

use client::peer::{Epoch, EventId};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::store::queries::Sent;

/// How far a subscriber has read one topic's messages from one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub origin: String,
    pub seq: u64,
}

/// The positions reached by one pull, bound to the subscriber that pulled,
/// the messages it leased (acknowledged one by one), and the epochs (the
/// latest seeks, API.md §6.4) of the topics it read: acknowledging it after
/// a later seek acknowledges nothing there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub subscriber: String,
    pub positions: Vec<Position>,
    pub ids: Vec<EventId>,
    /// Per topic read after a seek, its epoch (the others: the initial one).
    pub epochs: Epochs,
}

/// Per topic, the epoch of a subscription that was sought.
pub type Epochs = BTreeMap<String, Epoch>;

/// A v1 cursor, one with leased messages, or one read after seeks.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Encoded {
    Positions(String, Vec<(String, String, u64)>),
    WithIds(String, Vec<(String, String, u64)>, Vec<(String, u64)>),
    WithEpochs(
        String,
        Vec<(String, String, u64)>,
        Vec<(String, u64)>,
        Vec<(String, u64, String)>,
    ),
}

/// A pull returns at most 1000 messages, so its cursor has at most 1000 positions.
const MAX_POSITIONS: usize = client::wire::pull_limits::MAX_MAX as usize;
/// SQLite stores integers as i64.
const MAX_SEQ: u64 = i64::MAX as u64;

impl Cursor {
    /// Marks in `sent` how far this cursor's positions reach, as a read
    /// that gave their messages out would: per topic and origin the
    /// furthest seq in the latest epoch (so marks merge in any order).
    pub fn mark_sent(&self, sent: &mut Sent) {
        for position in &self.positions {
            let read_in = self
                .epochs
                .get(&position.topic)
                .cloned()
                .unwrap_or_default();
            let key = (position.topic.clone(), position.origin.clone());
            let held = sent.entry(key).or_default();
            if (&read_in, position.seq) > (&held.1, held.0) {
                *held = (position.seq, read_in);
            }
        }
    }

    pub fn encode(&self) -> String {
        let positions = self
            .positions
            .iter()
            .map(|p| (p.topic.clone(), p.origin.clone(), p.seq))
            .collect();
        let ids: Vec<(String, u64)> = self
            .ids
            .iter()
            .map(|id| (id.origin.clone(), id.seq))
            .collect();
        let subscriber = self.subscriber.clone();
        let encoded = if !self.epochs.is_empty() {
            let epochs = self
                .epochs
                .iter()
                .map(|(topic, epoch)| (topic.clone(), epoch.lamport, epoch.origin.clone()))
                .collect();
            Encoded::WithEpochs(subscriber, positions, ids, epochs)
        } else if !ids.is_empty() {
            Encoded::WithIds(subscriber, positions, ids)
        } else {
            Encoded::Positions(subscriber, positions)
        };
        let json = serde_json::to_vec(&encoded).expect("tuples of strings and numbers serialize");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor given back by `subscriber`; any other token is a bad request.
    pub fn decode(token: &str, subscriber: &str) -> Result<Cursor, ApiError> {
        let invalid = || {
            ApiError::BadRequest("cursor is malformed: pass the cursor a pull returned".to_string())
        };
        let json = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let (owner, positions, ids, epochs) = match serde_json::from_slice(&json)
            .map_err(|_| invalid())?
        {
            Encoded::Positions(owner, positions) => (owner, positions, Vec::new(), Vec::new()),
            Encoded::WithIds(owner, positions, ids) => (owner, positions, ids, Vec::new()),
            Encoded::WithEpochs(owner, positions, ids, epochs) => (owner, positions, ids, epochs),
        };
        if owner != subscriber {
            return Err(ApiError::BadRequest(format!(
                "cursor belongs to subscriber {owner:?}, not {subscriber:?}"
            )));
        }
        if positions.len() > MAX_POSITIONS
            || ids.len() > MAX_POSITIONS
            || epochs.len() > MAX_POSITIONS
            || positions.iter().any(|(_, _, seq)| *seq > MAX_SEQ)
            || ids.iter().any(|(_, seq)| *seq > MAX_SEQ)
            || epochs.iter().any(|(_, lamport, _)| *lamport > MAX_SEQ)
        {
            return Err(invalid());
        }
        let positions = positions
            .into_iter()
            .map(|(topic, origin, seq)| Position { topic, origin, seq })
            .collect();
        Ok(Cursor {
            subscriber: owner,
            positions,
            ids: ids
                .into_iter()
                .map(|(origin, seq)| EventId { origin, seq })
                .collect(),
            epochs: epochs
                .into_iter()
                .map(|(topic, lamport, origin)| (topic, Epoch { lamport, origin }))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_marks_keep_the_furthest_seq_of_the_latest_epoch_in_any_order() {
        let at = |seq: u64, epoch: u64| Cursor {
            subscriber: "S1".into(),
            positions: vec![Position {
                topic: "news".into(),
                origin: "A:1".into(),
                seq,
            }],
            ids: Vec::new(),
            epochs: match epoch {
                0 => Epochs::new(),
                lamport => Epochs::from([(
                    "news".to_string(),
                    Epoch {
                        lamport,
                        origin: "A:1".into(),
                    },
                )]),
            },
        };
        let cursors = [at(7, 0), at(9, 0), at(3, 5), at(2, 5)];
        let expected = Sent::from([(
            ("news".to_string(), "A:1".to_string()),
            (
                3,
                Epoch {
                    lamport: 5,
                    origin: "A:1".into(),
                },
            ),
        )]);
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let mut sent = Sent::new();
            for i in order {
                cursors[i].mark_sent(&mut sent);
            }
            assert_eq!(sent, expected, "{order:?}");
        }
    }

    fn cursor() -> Cursor {
        Cursor {
            subscriber: "S1".into(),
            positions: vec![
                Position {
                    topic: "news".into(),
                    origin: "localhost:3000".into(),
                    seq: 42,
                },
                Position {
                    topic: "news".into(),
                    origin: "localhost:3001".into(),
                    seq: 7,
                },
            ],
            ids: vec![],
            epochs: Epochs::new(),
        }
    }

    #[test]
    fn epochs_round_trip_beside_positions_and_ids() {
        let sought = Cursor {
            epochs: [(
                "news".to_string(),
                Epoch {
                    lamport: 12,
                    origin: "localhost:3001".into(),
                },
            )]
            .into(),
            ..cursor()
        };
        assert_eq!(Cursor::decode(&sought.encode(), "S1").unwrap(), sought);
    }

    #[test]
    fn leased_messages_round_trip_beside_positions() {
        let leased = Cursor {
            ids: vec![EventId {
                origin: "localhost:3002".into(),
                seq: 9,
            }],
            ..cursor()
        };
        assert_eq!(Cursor::decode(&leased.encode(), "S1").unwrap(), leased);
    }

    #[test]
    fn round_trips() {
        let token = cursor().encode();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&token, "S1").unwrap(), cursor());
    }

    #[test]
    fn empty_cursor_round_trips() {
        let empty = Cursor {
            subscriber: "S1".into(),
            positions: vec![],
            ids: vec![],
            epochs: Epochs::new(),
        };
        assert_eq!(Cursor::decode(&empty.encode(), "S1").unwrap(), empty);
    }

    #[test]
    fn is_bound_to_its_subscriber() {
        let token = cursor().encode();
        assert!(matches!(
            Cursor::decode(&token, "S2"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let huge_seq = URL_SAFE_NO_PAD.encode(r#"["S1",[["news","a:1",9223372036854775808]]]"#);
        for token in ["", "!!!", "bm90IGpzb24", "WzFd", &huge_seq] {
            assert!(
                matches!(Cursor::decode(token, "S1"), Err(ApiError::BadRequest(_))),
                "{token}"
            );
        }
    }
}
