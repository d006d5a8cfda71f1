//! `GET /metrics` in the Prometheus text format (API.md §7): counters and
//! histograms kept as the broker runs, and gauges read from the store and
//! the cluster when scraped (`Gauges`). Label sets are bounded: at most
//! `MAX_SERIES` series per metric, the rest summed under `_other`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::lock;

/// Most series of one metric; the rest are summed under `_other`.
pub const MAX_SERIES: usize = 1000;

/// The label value the series past `MAX_SERIES` are summed under.
const OTHER: &str = "_other";

/// Upper bounds of the duration buckets, in seconds.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds of the commit batch size buckets (requests per commit).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A histogram with fixed buckets, updated without locks.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: Vec<AtomicU64>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = (value.max(0.0) * 1e6) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many values were observed.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `_bucket`, `_sum` and `_count` lines of `name` with `labels`
    /// (`key="value",...` or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let comma = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |bound| bound.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{comma}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// The writer's commits: how long each took, and how many requests it held.
#[derive(Debug)]
pub struct CommitMetrics {
    pub duration: Histogram,
    pub batch_size: Histogram,
    /// Commits that left the log unsynced (see `store::writer::Kind::Received`).
    pub unsynced: AtomicU64,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        CommitMetrics {
            duration: Histogram::new(SECONDS),
            batch_size: Histogram::new(BATCH_SIZES),
            unsynced: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    requests: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    waiting_pulls: AtomicI64,
    pull_reads: AtomicU64,
    peer_syncs: AtomicU64,
    peer_events: AtomicU64,
    /// Per route and status, how long requests took.
    durations: Mutex<BTreeMap<String, BTreeMap<u16, Histogram>>>,
    /// Per topic: messages stored through this broker, given out again,
    /// and moved to dead letters.
    published_per_topic: Mutex<BTreeMap<String, u64>>,
    redeliveries: Mutex<BTreeMap<String, u64>>,
    dead_letters: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            waiting_pulls: AtomicI64::new(0),
            pull_reads: AtomicU64::new(0),
            peer_syncs: AtomicU64::new(0),
            peer_events: AtomicU64::new(0),
            durations: Mutex::default(),
            published_per_topic: Mutex::default(),
            redeliveries: Mutex::default(),
            dead_letters: Mutex::default(),
        }
    }
}

/// What is read from the store and the cluster when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Gauges {
    pub lamport: u64,
    pub term: u64,
    pub is_leader: bool,
    /// Per topic: stored messages and their payload bytes.
    pub topics: Vec<(String, u64, u64)>,
    /// Per (subscriber, topic): unacknowledged messages, and the age of the
    /// oldest in seconds (0 without any).
    pub subscriptions: Vec<(String, String, u64, f64)>,
    /// Per peer: alive, and the events this broker holds that it lacks.
    pub peers: Vec<(String, bool, u64)>,
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

impl Metrics {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request to `route` (its pattern, so the label set stays bounded)
    /// answered `status` after `took`.
    pub fn observe_request(&self, route: &str, status: u16, took: Duration) {
        let mut durations = lock(&self.durations);
        if !durations.contains_key(route) {
            durations.insert(route.to_string(), BTreeMap::new());
        }
        let by_status = durations.get_mut(route).expect("inserted above");
        by_status
            .entry(status)
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(took.as_secs_f64());
    }

    /// `messages` of `topic` stored through this broker.
    pub fn count_published(&self, topic: &str, messages: usize) {
        self.published.fetch_add(messages as u64, Ordering::Relaxed);
        add_per_topic(&self.published_per_topic, topic, messages as u64);
    }

    pub fn count_delivered(&self, messages: usize) {
        self.delivered.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// A message of `topic` given out again (a lease after an earlier one).
    pub fn count_redelivery(&self, topic: &str) {
        add_per_topic(&self.redeliveries, topic, 1);
    }

    /// A message of `topic` moved to its subscription's dead letters.
    pub fn count_dead_letter(&self, topic: &str) {
        add_per_topic(&self.dead_letters, topic, 1);
    }

    /// A pull reads pending messages (at first, and each time it is woken).
    pub fn count_pull_read(&self) {
        self.pull_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer's sync of `events` events was received.
    pub fn count_peer_sync(&self, events: usize) {
        self.peer_syncs.fetch_add(1, Ordering::Relaxed);
        self.peer_events.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Counts a waiting pull until the returned guard is dropped (also when
    /// the client goes away and the request is cancelled).
    pub fn waiting_pull(&self) -> WaitingPull<'_> {
        self.waiting_pulls.fetch_add(1, Ordering::Relaxed);
        WaitingPull(self)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges, commits: &CommitMetrics) -> String {
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
        let counters = [
            (
                "rumor_http_requests_total",
                "HTTP requests received.",
                load(&self.requests),
            ),
            (
                "rumor_messages_published_total",
                "Messages published through this broker.",
                load(&self.published),
            ),
            (
                "rumor_messages_delivered_total",
                "Messages returned to pulling subscribers.",
                load(&self.delivered),
            ),
            (
                "rumor_pull_reads_total",
                "Reads of pending messages by pulls (one at first, one per wake-up).",
                load(&self.pull_reads),
            ),
            (
                "rumor_peer_syncs_received_total",
                "Syncs (events and heartbeats) received from peers.",
                load(&self.peer_syncs),
            ),
            (
                "rumor_peer_events_received_total",
                "Events received in peers' syncs, those already held and those refused included.",
                load(&self.peer_events),
            ),
            (
                "rumor_commits_unsynced_total",
                "Commits under --durability fsync that left the write-ahead log unsynced: \
                 those of nothing but events received from peers, in gossip mode.",
                load(&commits.unsynced),
            ),
        ];
        for (name, help, value) in counters {
            single(&mut out, (name, "counter", help), value);
        }
        let waiting = self.waiting_pulls.load(Ordering::Relaxed) as f64;
        let plain_gauges = [
            (
                "rumor_waiting_pulls",
                "Long polls waiting for messages now.",
                waiting,
            ),
            (
                "rumor_lamport_clock",
                "This broker's Lamport clock.",
                gauges.lamport as f64,
            ),
            ("rumor_term", "The election term.", gauges.term as f64),
            (
                "rumor_is_leader",
                "1 when this broker is the leader.",
                f64::from(u8::from(gauges.is_leader)),
            ),
            (
                "rumor_db_bytes",
                "Size of broker.db in bytes.",
                gauges.db_bytes as f64,
            ),
            (
                "rumor_wal_bytes",
                "Size of broker.db-wal (the write-ahead log) in bytes.",
                gauges.wal_bytes as f64,
            ),
        ];
        for (name, help, value) in plain_gauges {
            single(&mut out, (name, "gauge", help), value);
        }
        self.render_histograms(&mut out, commits);
        self.render_families(&mut out, gauges);
        out
    }

    fn render_histograms(&self, out: &mut String, commits: &CommitMetrics) {
        let name = "rumor_http_request_duration_seconds";
        header(out, (name, "histogram", "Time to answer HTTP requests."));
        for (route, by_status) in lock(&self.durations).iter() {
            for (status, histogram) in by_status {
                let labels = format!("route=\"{}\",status=\"{status}\"", escape(route));
                histogram.render(out, name, &labels);
            }
        }
        let commits = [
            (
                "rumor_commit_duration_seconds",
                "Time of the writer's commits.",
                &commits.duration,
            ),
            (
                "rumor_commit_batch_size",
                "Requests committed together (group commit).",
                &commits.batch_size,
            ),
        ];
        for (name, help, histogram) in commits {
            header(out, (name, "histogram", help));
            histogram.render(out, name, "");
        }
    }

    fn render_families(&self, out: &mut String, gauges: &Gauges) {
        let topic = |name: &String| vec![("topic", name.clone())];
        family(
            out,
            ("rumor_topic_messages", "gauge", "Messages a topic holds."),
            gauges
                .topics
                .iter()
                .map(|(name, messages, _)| (topic(name), *messages as f64)),
            |a, b| a + b,
        );
        family(
            out,
            ("rumor_topic_bytes", "gauge", "Payload bytes a topic holds."),
            gauges
                .topics
                .iter()
                .map(|(name, _, bytes)| (topic(name), *bytes as f64)),
            |a, b| a + b,
        );
        let subscription = |subscriber: &String, name: &String| {
            vec![("subscriber", subscriber.clone()), ("topic", name.clone())]
        };
        family(
            out,
            (
                "rumor_subscription_pending",
                "gauge",
                "Messages a subscription has not acknowledged.",
            ),
            gauges
                .subscriptions
                .iter()
                .map(|(s, t, pending, _)| (subscription(s, t), *pending as f64)),
            |a, b| a + b,
        );
        family(
            out,
            (
                "rumor_subscription_oldest_unacked_age_seconds",
                "gauge",
                "Age of a subscription's oldest unacknowledged message.",
            ),
            gauges
                .subscriptions
                .iter()
                .map(|(s, t, _, age)| (subscription(s, t), *age)),
            f64::max,
        );
        let peer = |id: &String| vec![("peer", id.clone())];
        family(
            out,
            ("rumor_peer_alive", "gauge", "1 while a peer answers."),
            gauges
                .peers
                .iter()
                .map(|(id, alive, _)| (peer(id), f64::from(u8::from(*alive)))),
            |a, b| a + b,
        );
        family(
            out,
            (
                "rumor_peer_lag_events",
                "gauge",
                "Events this broker holds that a peer has not reported holding (of its own, only while it has lost some).",
            ),
            gauges
                .peers
                .iter()
                .map(|(id, _, lag)| (peer(id), *lag as f64)),
            |a, b| a + b,
        );
        let counted = |counts: &Mutex<BTreeMap<String, u64>>| -> Vec<(Labels, f64)> {
            lock(counts)
                .iter()
                .map(|(name, count)| (topic(name), *count as f64))
                .collect()
        };
        family(
            out,
            (
                "rumor_topic_published_total",
                "counter",
                "Messages of a topic published through this broker.",
            ),
            counted(&self.published_per_topic),
            |a, b| a + b,
        );
        family(
            out,
            (
                "rumor_redeliveries_total",
                "counter",
                "Messages given out again after a lease ended or a nack.",
            ),
            counted(&self.redeliveries),
            |a, b| a + b,
        );
        family(
            out,
            (
                "rumor_dead_letters_total",
                "counter",
                "Messages moved to a dead-letter topic.",
            ),
            counted(&self.dead_letters),
            |a, b| a + b,
        );
    }
}

/// One series' labels, as (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// Adds `count` to `topic`'s counter; past `MAX_SERIES` topics, to `_other`.
fn add_per_topic(counts: &Mutex<BTreeMap<String, u64>>, topic: &str, count: u64) {
    let mut counts = lock(counts);
    let key = if counts.contains_key(topic) || counts.len() < MAX_SERIES {
        topic
    } else {
        OTHER
    };
    *counts.entry(key.to_string()).or_default() += count;
}

/// `# HELP` and `# TYPE` of a metric: (name, type, help).
fn header(out: &mut String, (name, kind, help): (&str, &str, &str)) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric without labels.
fn single(out: &mut String, metric: (&str, &str, &str), value: f64) {
    header(out, metric);
    let _ = writeln!(out, "{} {value}", metric.0);
}

/// A metric with labels: the first `MAX_SERIES` series as they come, the
/// rest (and a series already counted under `_other`) merged by `combine`
/// into one whose every label is `_other`.
fn family(
    out: &mut String,
    metric: (&str, &str, &str),
    series: impl IntoIterator<Item = (Labels, f64)>,
    combine: fn(f64, f64) -> f64,
) {
    header(out, metric);
    let mut other: Option<(Labels, f64)> = None;
    let mut shown = 0;
    for (labels, value) in series {
        let is_other = labels.iter().all(|(_, value)| value == OTHER);
        if shown < MAX_SERIES && !is_other {
            let _ = writeln!(out, "{}{{{}}} {value}", metric.0, label_text(&labels));
            shown += 1;
            continue;
        }
        other = Some(match other {
            None => {
                let labels = labels
                    .iter()
                    .map(|(k, _)| (*k, OTHER.to_string()))
                    .collect();
                (labels, value)
            }
            Some((labels, sum)) => (labels, combine(sum, value)),
        });
    }
    if let Some((labels, value)) = other {
        let _ = writeln!(out, "{}{{{}}} {value}", metric.0, label_text(&labels));
    }
}

fn label_text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub struct WaitingPull<'a>(&'a Metrics);

impl Drop for WaitingPull<'_> {
    fn drop(&mut self) {
        self.0.waiting_pulls.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_the_waiting_gauge() {
        let metrics = Metrics::default();
        metrics.count_request();
        metrics.count_published("t", 3);
        let waiting = metrics.waiting_pull();
        let gauges = Gauges {
            lamport: 9,
            ..Gauges::default()
        };
        let commits = CommitMetrics::default();
        let text = metrics.render(&gauges, &commits);
        assert!(text.contains("\nrumor_http_requests_total 1\n"));
        assert!(text.contains("\nrumor_messages_published_total 3\n"));
        assert!(text.contains("\nrumor_waiting_pulls 1\n"));
        assert!(text.contains("# TYPE rumor_lamport_clock gauge\nrumor_lamport_clock 9\n"));
        drop(waiting);
        assert!(metrics
            .render(&gauges, &commits)
            .contains("\nrumor_waiting_pulls 0\n"));
    }

    #[test]
    fn histograms_count_cumulatively_with_a_sum() {
        let metrics = Metrics::default();
        metrics.observe_request("/topics/{name}", 200, Duration::from_millis(3));
        metrics.observe_request("/topics/{name}", 200, Duration::from_secs(100));
        let text = metrics.render(&Gauges::default(), &CommitMetrics::default());
        let name = "rumor_http_request_duration_seconds";
        let labels = "route=\"/topics/{name}\",status=\"200\"";
        assert!(text.contains(&format!("{name}_bucket{{{labels},le=\"0.0025\"}} 0\n")));
        assert!(text.contains(&format!("{name}_bucket{{{labels},le=\"0.005\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{{labels},le=\"60\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} 2\n")));
        assert!(text.contains(&format!("{name}_sum{{{labels}}} 100.003\n")));
        assert!(text.contains(&format!("{name}_count{{{labels}}} 2\n")));
        assert!(text.contains("rumor_commit_batch_size_count 0\n"));
    }

    #[test]
    fn series_past_the_bound_are_summed_under_other() {
        let gauges = Gauges {
            topics: (0..MAX_SERIES + 5)
                .map(|i| (format!("t{i:05}"), 2, 10))
                .collect(),
            ..Gauges::default()
        };
        let text = Metrics::default().render(&gauges, &CommitMetrics::default());
        let series = text
            .lines()
            .filter(|line| line.starts_with("rumor_topic_messages{"))
            .count();
        assert_eq!(series, MAX_SERIES + 1);
        assert!(text.contains("rumor_topic_messages{topic=\"_other\"} 10\n"));
        assert!(text.contains("rumor_topic_bytes{topic=\"_other\"} 50\n"));
        let metrics = Metrics::default();
        for i in 0..MAX_SERIES + 3 {
            metrics.count_dead_letter(&format!("t{i}"));
        }
        let text = metrics.render(&Gauges::default(), &CommitMetrics::default());
        assert!(text.contains("rumor_dead_letters_total{topic=\"_other\"} 3\n"));
        let series = text
            .lines()
            .filter(|line| line.starts_with("rumor_dead_letters_total{"))
            .count();
        assert_eq!(series, MAX_SERIES + 1, "one _other series");
    }
}
