//! `bench check`: reads the delivery logs written by `publisher --log` and
//! `subscriber --log` (`client::delivery`) and measures, per subscriber,
//! what it received against what was sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use client::delivery::{CheckReport, Received, Record, Sent, SubscriberReport};

use crate::report::{latency_cells, percentiles, LATENCY_HEADER};

/// The records of every log, sent and received apart, each in file order.
#[derive(Debug, Default)]
pub struct Logs {
    pub sent: Vec<Sent>,
    pub received: Vec<Received>,
}

/// A log that cannot be read or holds a line that is no record.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Malformed {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Reads every file in order; blank lines are skipped.
pub fn read_logs(paths: &[PathBuf]) -> Result<Logs, InputError> {
    let mut logs = Logs::default();
    for path in paths {
        read_log(path, &mut logs)?;
    }
    Ok(logs)
}

fn read_log(path: &Path, logs: &mut Logs) -> Result<(), InputError> {
    let name = || path.display().to_string();
    let file = File::open(path).map_err(|source| InputError::Unreadable {
        path: name(),
        source,
    })?;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let malformed = |reason: String| InputError::Malformed {
            path: name(),
            line: index + 1,
            reason,
        };
        let line = line.map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => malformed("not UTF-8".to_string()),
            _ => InputError::Unreadable {
                path: name(),
                source: error,
            },
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line).map_err(|error| malformed(error.to_string()))? {
            Record::Sent(sent) => logs.sent.push(sent),
            Record::Received(received) => logs.received.push(received),
        }
    }
    Ok(())
}

/// Measures each subscriber's received records against the sent ones.
pub fn analyse(logs: &Logs) -> CheckReport {
    let mut sent: HashMap<&str, &Sent> = HashMap::new();
    for record in &logs.sent {
        sent.entry(record.id.as_str()).or_insert(record);
    }
    let mut by_subscriber: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for record in &logs.received {
        by_subscriber
            .entry(record.subscriber.as_str())
            .or_default()
            .push(record);
    }
    CheckReport {
        sent: count(sent.len()),
        subscribers: by_subscriber
            .into_iter()
            .map(|(subscriber, received)| analyse_subscriber(subscriber, &received, &sent))
            .collect(),
    }
}

fn analyse_subscriber(
    subscriber: &str,
    received: &[&Received],
    sent: &HashMap<&str, &Sent>,
) -> SubscriberReport {
    let mut times: HashMap<&str, u64> = HashMap::new();
    let mut highest: HashMap<&str, u64> = HashMap::new();
    let mut changed: HashSet<&str> = HashSet::new();
    let mut latencies = Vec::new();
    let mut out_of_order = 0;
    for record in received {
        let id = record.id.as_str();
        let seen = times.entry(id).or_default();
        *seen += 1;
        let first = *seen == 1;
        let highest = highest.entry(record.origin.as_str()).or_insert(record.seq);
        if record.seq < *highest {
            out_of_order += 1;
        }
        *highest = (*highest).max(record.seq);
        if let Some(sent) = sent.get(id) {
            if sent.digest != record.digest {
                changed.insert(id);
            }
            if first {
                latencies.push(record.received_ms - sent.sent_ms);
            }
        }
    }
    let filter_count = |keep: &dyn Fn(&&str, &u64) -> bool| {
        count(times.iter().filter(|(id, n)| keep(id, n)).count())
    };
    SubscriberReport {
        subscriber: subscriber.to_string(),
        received: count(times.len()),
        lost: count(sent.keys().filter(|id| !times.contains_key(*id)).count()),
        duplicated: filter_count(&|_, &n| n > 1),
        out_of_order,
        changed: count(changed.len()),
        unknown: filter_count(&|id, _| !sent.contains_key(id)),
        latency_ms: percentiles(latencies),
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// What fails the check, one phrase per subscriber: anything lost,
/// duplicated or changed, or no subscriber at all for sent messages.
pub fn problems(report: &CheckReport) -> Vec<String> {
    if report.subscribers.is_empty() && report.sent > 0 {
        return vec![format!("{} sent, no received records", report.sent)];
    }
    report
        .subscribers
        .iter()
        .filter_map(|s| {
            let counts = [
                (s.lost, "lost"),
                (s.duplicated, "duplicated"),
                (s.changed, "changed"),
            ];
            let what: Vec<String> = counts
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, name)| format!("{n} {name}"))
                .collect();
            (!what.is_empty()).then(|| format!("{}: {}", s.subscriber, what.join(", ")))
        })
        .collect()
}

/// The report as plain text: the sent count, then one table row per subscriber.
pub fn table(report: &CheckReport) -> String {
    const COLUMNS: [&str; 7] = [
        "subscriber",
        "received",
        "lost",
        "duplicated",
        "out_of_order",
        "changed",
        "unknown",
    ];
    let header = COLUMNS.iter().chain(&LATENCY_HEADER).map(|h| h.to_string());
    let mut rows = vec![header.collect()];
    rows.extend(report.subscribers.iter().map(|s| {
        let mut row = vec![s.subscriber.clone()];
        let counts = [
            s.received,
            s.lost,
            s.duplicated,
            s.out_of_order,
            s.changed,
            s.unknown,
        ];
        row.extend(counts.map(|n| n.to_string()));
        row.extend(latency_cells(s.latency_ms.as_ref()));
        row
    }));
    format!("sent: {}\n{}", report.sent, crate::report::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::delivery::digest;

    const ORIGIN: &str = "h:1";

    fn sent(seq: u64, sent_ms: i64) -> Sent {
        Sent {
            id: format!("{ORIGIN}/{seq}"),
            digest: digest(format!("m{seq}").as_bytes()),
            sent_ms,
            acked_ms: sent_ms + 1,
        }
    }

    fn received(subscriber: &str, seq: u64, received_ms: i64) -> Received {
        Received {
            subscriber: subscriber.to_string(),
            id: format!("{ORIGIN}/{seq}"),
            origin: ORIGIN.to_string(),
            seq,
            digest: digest(format!("m{seq}").as_bytes()),
            published_at_ms: 0,
            received_ms,
        }
    }

    /// Messages 1..=n sent at 0 ms.
    fn sent_all(n: u64) -> Vec<Sent> {
        (1..=n).map(|seq| sent(seq, 0)).collect()
    }

    fn only(report: &CheckReport) -> &SubscriberReport {
        assert_eq!(report.subscribers.len(), 1, "{report:?}");
        &report.subscribers[0]
    }

    #[test]
    fn a_complete_delivery_passes() {
        let logs = Logs {
            sent: sent_all(3),
            received: (1..=3).map(|seq| received("S1", seq, 5)).collect(),
        };
        let report = analyse(&logs);
        assert_eq!(report.sent, 3);
        let s = only(&report);
        assert_eq!((s.received, s.lost, s.duplicated), (3, 0, 0));
        assert_eq!((s.out_of_order, s.changed, s.unknown), (0, 0, 0));
        assert!(problems(&report).is_empty());
    }

    #[test]
    fn counts_lost_per_subscriber() {
        let mut received_records: Vec<Received> =
            [1, 3].iter().map(|&seq| received("S1", seq, 5)).collect();
        received_records.extend((1..=3).map(|seq| received("S2", seq, 5)));
        let report = analyse(&Logs {
            sent: sent_all(3),
            received: received_records,
        });
        let [s1, s2] = &report.subscribers[..] else {
            panic!("two subscribers: {report:?}")
        };
        assert_eq!((s1.subscriber.as_str(), s1.received, s1.lost), ("S1", 2, 1));
        assert_eq!((s2.subscriber.as_str(), s2.received, s2.lost), ("S2", 3, 0));
        assert_eq!(problems(&report), ["S1: 1 lost"]);
    }

    #[test]
    fn counts_duplicated_ids_once_each() {
        let received = [1, 2, 2, 2, 3, 3]
            .iter()
            .map(|&seq| received("S1", seq, 5))
            .collect();
        let report = analyse(&Logs {
            sent: sent_all(3),
            received,
        });
        let s = only(&report);
        assert_eq!((s.received, s.duplicated, s.out_of_order), (3, 2, 0));
        assert_eq!(problems(&report), ["S1: 2 duplicated"]);
    }

    #[test]
    fn counts_out_of_order_per_origin_without_failing() {
        let mut received: Vec<Received> = [2, 1, 3]
            .iter()
            .map(|&seq| received("S1", seq, 5))
            .collect();
        // Another origin's lower seq is not out of order.
        let mut other = received_of_origin("h:2", 1);
        other.subscriber = "S1".to_string();
        received.push(other);
        let report = analyse(&Logs {
            sent: sent_all(3),
            received,
        });
        let s = only(&report);
        assert_eq!((s.out_of_order, s.unknown), (1, 1));
        assert!(problems(&report).is_empty(), "{report:?}");
    }

    fn received_of_origin(origin: &str, seq: u64) -> Received {
        Received {
            id: format!("{origin}/{seq}"),
            origin: origin.to_string(),
            ..received("S1", seq, 5)
        }
    }

    #[test]
    fn counts_changed_payloads() {
        let mut records: Vec<Received> = (1..=3).map(|seq| received("S1", seq, 5)).collect();
        records[1].digest = digest(b"something else");
        let report = analyse(&Logs {
            sent: sent_all(3),
            received: records,
        });
        assert_eq!(only(&report).changed, 1);
        assert_eq!(problems(&report), ["S1: 1 changed"]);
    }

    #[test]
    fn sent_messages_without_any_subscriber_fail() {
        let report = analyse(&Logs {
            sent: sent_all(2),
            received: Vec::new(),
        });
        assert_eq!(problems(&report), ["2 sent, no received records"]);
    }

    #[test]
    fn latency_is_measured_from_send_to_first_receipt() {
        let logs = Logs {
            sent: vec![sent(1, 100), sent(2, 200)],
            received: vec![
                received("S1", 1, 110),
                received("S1", 2, 230),
                received("S1", 1, 900), // a duplicate: not a latency sample
            ],
        };
        let latency = only(&analyse(&logs)).latency_ms.clone().unwrap();
        assert_eq!((latency.p50, latency.max), (10, 30));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recv.log");
        let good = serde_json::to_string(&Record::Sent(sent(1, 0))).unwrap();
        std::fs::write(&path, format!("{good}\n\n{{\"kind\":\"sent\"}}\n")).unwrap();
        let error = read_logs(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("{}: line 3: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn table_has_a_row_per_subscriber() {
        let logs = Logs {
            sent: sent_all(2),
            received: vec![received("S1", 1, 5)],
        };
        let text = table(&analyse(&logs));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "sent: 2");
        assert!(lines[1].starts_with("subscriber  received  lost"), "{text}");
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            ["S1", "1", "1", "0", "0", "0", "0", "5", "5", "5", "5", "5"]
        );
    }
}
