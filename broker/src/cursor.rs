//! Pull cursors: tokens naming how far a pull read, per topic and origin,
//! and the single messages it leased on shared subscriptions. Clients
//! treat them as opaque; the broker checks every position in one before
//! acknowledging it (see `WriteTx::ack`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use client::peer::EventId;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How far a subscriber has read one topic's messages from one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub origin: String,
    pub seq: u64,
}

/// The positions reached by one pull, bound to the subscriber that pulled,
/// and the messages it leased (acknowledged one by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub subscriber: String,
    pub positions: Vec<Position>,
    pub ids: Vec<EventId>,
}

/// A v1 cursor, or one with leased messages.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Encoded {
    Positions(String, Vec<(String, String, u64)>),
    WithIds(String, Vec<(String, String, u64)>, Vec<(String, u64)>),
}

/// A pull returns at most 1000 messages, so its cursor has at most 1000 positions.
const MAX_POSITIONS: usize = client::wire::pull_limits::MAX_MAX as usize;
/// SQLite stores integers as i64.
const MAX_SEQ: u64 = i64::MAX as u64;

impl Cursor {
    pub fn encode(&self) -> String {
        let positions = self
            .positions
            .iter()
            .map(|p| (p.topic.clone(), p.origin.clone(), p.seq))
            .collect();
        let encoded = if self.ids.is_empty() {
            Encoded::Positions(self.subscriber.clone(), positions)
        } else {
            let ids = self
                .ids
                .iter()
                .map(|id| (id.origin.clone(), id.seq))
                .collect();
            Encoded::WithIds(self.subscriber.clone(), positions, ids)
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
        let (owner, positions, ids) = match serde_json::from_slice(&json).map_err(|_| invalid())? {
            Encoded::Positions(owner, positions) => (owner, positions, Vec::new()),
            Encoded::WithIds(owner, positions, ids) => (owner, positions, ids),
        };
        if owner != subscriber {
            return Err(ApiError::BadRequest(format!(
                "cursor belongs to subscriber {owner:?}, not {subscriber:?}"
            )));
        }
        if positions.len() > MAX_POSITIONS
            || ids.len() > MAX_POSITIONS
            || positions.iter().any(|(_, _, seq)| *seq > MAX_SEQ)
            || ids.iter().any(|(_, seq)| *seq > MAX_SEQ)
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
