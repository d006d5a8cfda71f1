//! Delivery logs: what `publisher --log` and `subscriber --log` write, one
//! JSON record per line, and the report `bench check` makes of them.
//!
//! A log is opened for appending and each record is written with one
//! `write` call, so a program that crashes leaves only whole lines.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One line of a delivery log; `kind` tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Sent(Sent),
    Received(Received),
}

/// A message the publisher had acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// `<origin>/<seq>`.
    pub id: String,
    /// [`digest`] of the payload.
    pub digest: String,
    /// Unix ms when the request carrying the message was sent.
    pub sent_ms: i64,
    /// Unix ms when the broker's acknowledgement arrived.
    pub acked_ms: i64,
}

/// A message a subscriber printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub subscriber: String,
    pub id: String,
    pub origin: String,
    pub seq: u64,
    /// [`digest`] of the payload as received.
    pub digest: String,
    pub published_at_ms: i64,
    /// Unix ms when the subscriber printed the message.
    pub received_ms: i64,
}

/// FNV-1a 64 of `payload`, as 16 lowercase hex digits.
pub fn digest(payload: &[u8]) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = payload.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A delivery log file open for appending.
#[derive(Debug)]
pub struct DeliveryLog {
    file: File,
}

impl DeliveryLog {
    /// Opens `path` for appending, creating it when missing.
    pub fn append_to(path: &Path) -> io::Result<DeliveryLog> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(DeliveryLog { file })
    }

    /// Appends `record` as one line, in one write (the file is unbuffered).
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// What `bench check --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Distinct message ids in the sent records.
    pub sent: u64,
    /// One entry per distinct `subscriber`, in name order.
    pub subscribers: Vec<SubscriberReport>,
}

/// What one subscriber received, measured against the sent records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberReport {
    pub subscriber: String,
    /// Distinct message ids received.
    pub received: u64,
    /// Sent ids never received.
    pub lost: u64,
    /// Ids received more than once.
    pub duplicated: u64,
    /// Records whose seq is lower than one received before from the same origin.
    pub out_of_order: u64,
    /// Ids received with a digest other than the sent one.
    pub changed: u64,
    /// Ids received that no sent record names (informational).
    pub unknown: u64,
    /// `received_ms - sent_ms` of each sent id's first receipt; `None`
    /// when no sent id was received.
    pub latency_ms: Option<Latency>,
}

/// Latency percentiles (nearest rank), in whole ms unless `T` says
/// otherwise (`bench publish` and `bench latency` report `f64` ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency<T = i64> {
    pub p50: T,
    pub p90: T,
    pub p99: T,
    pub p99_9: T,
    pub max: T,
}

impl<T> Latency<T> {
    /// Each percentile passed through `f`, e.g. to change the unit.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> Latency<U> {
        Latency {
            p50: f(self.p50),
            p90: f(self.p90),
            p99: f(self.p99),
            p99_9: f(self.p99_9),
            max: f(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_fnv1a_64_in_lowercase_hex() {
        assert_eq!(digest(b""), "cbf29ce484222325");
        assert_eq!(digest(b"a"), "af63dc4c8601ec8c");
        assert_eq!(digest(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn records_are_tagged_by_kind() {
        let sent = Record::Sent(Sent {
            id: "h:1/2".into(),
            digest: digest(b"x"),
            sent_ms: 10,
            acked_ms: 12,
        });
        let line = serde_json::to_string(&sent).unwrap();
        assert!(
            line.starts_with(r#"{"kind":"sent","id":"h:1/2","#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), sent);
    }

    #[test]
    fn log_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let record = Record::Received(Received {
            subscriber: "S1".into(),
            id: "h:1/1".into(),
            origin: "h:1".into(),
            seq: 1,
            digest: digest(b"m"),
            published_at_ms: 1,
            received_ms: 2,
        });
        for _ in 0..2 {
            DeliveryLog::append_to(&path)
                .unwrap()
                .write(&record)
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(serde_json::from_str::<Record>(lines[1]).unwrap(), record);
    }
}
