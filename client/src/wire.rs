//! JSON bodies of the HTTP API, exactly as `API.md` §3 writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message's headers (API.md §6.1): names to string values.
pub type Headers = BTreeMap<String, String>;

/// A stored message, wherever the API returns one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: String,
    pub origin: String,
    pub seq: u64,
    pub topic: String,
    pub publisher: String,
    pub payload: String,
    pub lamport: u64,
    pub published_at_ms: i64,
    /// `{}` when the message has none (absent from v1 brokers).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, String>))]
    pub headers: Headers,
    /// The publisher's id for it, if it gave one.
    #[serde(default)]
    pub msg_id: Option<String>,
    /// How many times this subscriber has been given it, this time
    /// included (0 where a message is not being delivered).
    #[serde(default)]
    pub deliveries: u32,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub broker: String,
    pub status: String,
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterInfo {
    #[serde(rename = "self")]
    pub self_id: String,
    pub leader: Option<String>,
    pub term: u64,
    pub mode: String,
    pub lamport: u64,
    pub members: Vec<Member>,
    /// Per origin broker, the seq up to which this broker holds every
    /// event: how far replication has come (absent from older brokers).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, u64>))]
    pub have: crate::peer::Have,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub id: String,
    pub alive: bool,
    /// For a peer: events the answering broker holds that it has not
    /// reported holding; of the peer's own events, only while it has lost
    /// some (absent for the answering broker itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

/// `GET /subscriptions` entry: a registered subscriber and its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriberInfo {
    pub id: String,
    pub subscriptions: Vec<SubscriptionInfo>,
}

/// One live subscription as `GET /subscriptions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionInfo {
    pub topic: String,
    /// Whether it is shared (API.md §6.2).
    pub shared: bool,
    /// Messages it has not acknowledged (held by the answering broker).
    pub pending: u64,
    /// Of those, the ones leased now.
    pub leased: u64,
    /// Age of the oldest unacknowledged one (0 without any).
    pub oldest_unacked_age_ms: u64,
}

/// `POST /cluster/members` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewMember {
    pub host: String,
    pub port: u16,
}

/// `PUT /cluster/mode`, request and response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModeChange {
    pub mode: String,
}

/// `POST /publishers` and `POST /subscribers`, request and response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registration {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub id: String,
}

/// `POST /topics` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTopic {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub publisher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TopicLimits>,
}

/// `POST /topics` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicCreated {
    pub name: String,
    pub created_by: String,
    /// The limits it was created with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TopicLimits>,
}

/// `GET /topics` entry and `GET /topics/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicInfo {
    pub name: String,
    pub created_by: String,
    pub messages: u64,
    pub subscribers: u64,
    /// `{}` for a topic without limits (absent from v1 brokers).
    #[serde(default)]
    pub limits: TopicLimits,
}

/// A topic's limits (API.md §6.3): past one, its oldest messages go first,
/// acknowledged or not. An absent limit is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopicLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// Payload bytes (UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// In the syntax of `--retention` (`90s`, `12h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// `PUT /topics/{name}/limits` request: `limits` replace the topic's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetLimits {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub publisher: String,
    pub limits: TopicLimits,
}

/// `POST /topics/{name}/messages` request: one `payload` (with its
/// `headers` and `msg_id`), or a batch of `payloads` or of `messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub publisher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::HashMap<String, String>>))]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub msg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<NewMessage>>,
}

/// One message of a batch publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewMessage {
    pub payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::HashMap<String, String>>))]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub msg_id: Option<String>,
}

/// Where a published message landed; `duplicate` when its `msg_id` was
/// stored already within the deduplication window (nothing stored then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Published {
    pub id: String,
    pub origin: String,
    pub seq: u64,
    pub lamport: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Limits on a message's headers and client id (API.md §6.1).
pub mod header_limits {
    /// Most headers on one message.
    pub const MAX_HEADERS: usize = 32;
    /// Longest header value, in bytes.
    pub const MAX_VALUE_BYTES: usize = 4 * 1024;
}

/// `POST /topics/{name}/messages` response for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedBatch {
    pub messages: Vec<Published>,
}

/// Where a new subscription starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    #[default]
    Latest,
}

/// `POST /subscribers/{sid}/subscriptions` request; with `ack_wait_ms` the
/// subscription is shared (API.md §6.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscribe {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub topic: String,
    #[serde(default)]
    pub from: StartFrom,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub dead_letter_topic: Option<String>,
}

/// How a shared subscription leases its messages (API.md §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSettings {
    pub ack_wait_ms: u64,
    /// The k-th redelivery waits the k-th delay; the last one repeats.
    pub backoff_ms: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// Limits of a shared subscription's settings.
pub mod shared_limits {
    pub const MIN_ACK_WAIT_MS: u64 = 1_000;
    pub const MAX_ACK_WAIT_MS: u64 = 3_600_000;
    /// Longest delay of `backoff_ms` (and of a nack).
    pub const MAX_DELAY_MS: u64 = 24 * 3_600_000;
    /// Most delays in `backoff_ms`.
    pub const MAX_BACKOFF_STEPS: usize = 32;
}

/// `POST /subscribers/{sid}/subscriptions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub subscriber: String,
    pub topic: String,
}

/// `GET /subscribers/{sid}/messages` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PullQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_ack: Option<bool>,
}

/// `GET /subscribers/{sid}/messages` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pulled {
    pub messages: Vec<Message>,
    pub cursor: String,
}

impl Pulled {
    /// This answer as JSON: the same bytes as `serde_json::to_vec` (tested),
    /// written in larger pieces. Serde writes every key, quote and comma
    /// by a call of its own; for a pull of 1,000 messages that was a fifth
    /// of the broker's work.
    pub fn to_json(&self) -> Vec<u8> {
        let room: usize = self
            .messages
            .iter()
            .map(|m| 256 + m.id.len() + m.payload.len())
            .sum();
        let mut out = Vec::with_capacity(room + self.cursor.len() + 32);
        out.extend_from_slice(b"{\"messages\":[");
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            message.write_json(&mut out);
        }
        out.extend_from_slice(b"],\"cursor\":");
        write_json_str(&mut out, &self.cursor);
        out.push(b'}');
        out
    }
}

impl Message {
    /// This message as JSON: the same bytes as `serde_json::to_vec`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.id.len() + self.payload.len());
        self.write_json(&mut out);
        out
    }

    /// Appends this message as JSON, fields in declaration order (as serde).
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":");
        write_json_str(out, &self.id);
        out.extend_from_slice(b",\"origin\":");
        write_json_str(out, &self.origin);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(number.format(self.seq).as_bytes());
        out.extend_from_slice(b",\"topic\":");
        write_json_str(out, &self.topic);
        out.extend_from_slice(b",\"publisher\":");
        write_json_str(out, &self.publisher);
        out.extend_from_slice(b",\"payload\":");
        write_json_str(out, &self.payload);
        out.extend_from_slice(b",\"lamport\":");
        out.extend_from_slice(number.format(self.lamport).as_bytes());
        out.extend_from_slice(b",\"published_at_ms\":");
        out.extend_from_slice(number.format(self.published_at_ms).as_bytes());
        out.extend_from_slice(b",\"headers\":{");
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, name);
            out.push(b':');
            write_json_str(out, value);
        }
        out.extend_from_slice(b"},\"msg_id\":");
        match &self.msg_id {
            Some(msg_id) => write_json_str(out, msg_id),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"deliveries\":");
        out.extend_from_slice(number.format(self.deliveries).as_bytes());
        out.push(b'}');
    }
}

/// Appends `text` as a JSON string: as it is when nothing in it needs an
/// escape (the usual case), else as serde_json escapes it.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string always serializes");
    }
}

/// `POST /subscribers/{sid}/ack` request: the `cursor` of a pull (v1:
/// everything it returned), or the `ids` of single messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// `POST /subscribers/{sid}/subscriptions/{topic}/seek` (API.md §6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seek {
    pub to: SeekTo,
}

/// Where a seek moves a subscriber's position: the next pull starts there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged, deny_unknown_fields)]
pub enum SeekTo {
    /// `"earliest"` or `"latest"`.
    Edge(StartFrom),
    /// At the first message published at or after `time_ms`.
    Time { time_ms: i64 },
    /// At the message `id` (`<origin>/<seq>`) itself.
    Id { id: String },
}

/// `POST /subscribers/{sid}/nack`: end these leases now and give the
/// messages out again after `delay_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nack {
    pub ids: Vec<String>,
    #[serde(default)]
    pub delay_ms: u64,
}

/// `POST /subscribers/{sid}/extend`: restart these leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extend {
    pub ids: Vec<String>,
}

/// Every error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// A message id: `<origin>/<seq>`, unique in the cluster.
pub fn message_id(origin: &str, seq: u64) -> String {
    use std::fmt::Write;
    // Sized once (`format!` grows the string as it goes); a String takes
    // any write.
    let mut id = String::with_capacity(origin.len() + 1 + 20);
    id.push_str(origin);
    id.push('/');
    let _ = write!(id, "{seq}");
    id
}

/// `GET /topics` query (API.md §5.5): at most `limit` topics (default and
/// cap [`MAX_TOPICS_PAGE`]) whose names come after `after`, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TopicsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The most topics one `GET /topics` lists (and subscribers one
/// `GET /subscriptions`, with the same query).
pub const MAX_TOPICS_PAGE: u32 = 1000;

/// Pull limits of `API.md` §3: `max` defaults to 100 and is capped at 1000;
/// `wait_ms` defaults to 30000 and is capped at 60000.
pub mod pull_limits {
    pub const DEFAULT_MAX: u32 = 100;
    pub const MAX_MAX: u32 = 1000;
    pub const DEFAULT_WAIT_MS: u64 = 30_000;
    pub const MAX_WAIT_MS: u64 = 60_000;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &str, headers: &[(&str, &str)], msg_id: Option<&str>) -> Message {
        Message {
            id: message_id("h:1", 42),
            origin: "h:1".to_string(),
            seq: 42,
            topic: "news.eu".to_string(),
            publisher: "P-1".to_string(),
            payload: payload.to_string(),
            lamport: u64::MAX,
            published_at_ms: -5,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            msg_id: msg_id.map(str::to_string),
            deliveries: 3,
        }
    }

    #[test]
    fn a_pull_answer_is_written_as_serde_writes_it() {
        let awkward = "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f} é 😀 </script>";
        for pulled in [
            Pulled {
                messages: Vec::new(),
                cursor: String::new(),
            },
            Pulled {
                messages: vec![
                    message("plain", &[], None),
                    message(awkward, &[("kind", awkward), ("a", "1")], Some("id-1")),
                    message("", &[("z", "")], Some(awkward)),
                ],
                cursor: "abc.def-_=".to_string(),
            },
        ] {
            let expected = serde_json::to_vec(&pulled).unwrap();
            assert_eq!(
                String::from_utf8(pulled.to_json()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
