//! Counters for `GET /metrics`, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    waiting_pulls: AtomicI64,
    pull_reads: AtomicU64,
    peer_syncs: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_published(&self, messages: usize) {
        self.published.fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub fn count_delivered(&self, messages: usize) {
        self.delivered.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// A pull reads pending messages (at first, and each time it is woken).
    pub fn count_pull_read(&self) {
        self.pull_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer's sync was received.
    pub fn count_peer_sync(&self) {
        self.peer_syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a waiting pull until the returned guard is dropped (also when
    /// the client goes away and the request is cancelled).
    pub fn waiting_pull(&self) -> WaitingPull<'_> {
        self.waiting_pulls.fetch_add(1, Ordering::Relaxed);
        WaitingPull(self)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, lamport: u64) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: i128| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |counter: &AtomicU64| i128::from(counter.load(Ordering::Relaxed));
        metric(
            "rumor_http_requests_total",
            "counter",
            "HTTP requests received.",
            load(&self.requests),
        );
        metric(
            "rumor_messages_published_total",
            "counter",
            "Messages published through this broker.",
            load(&self.published),
        );
        metric(
            "rumor_messages_delivered_total",
            "counter",
            "Messages returned to pulling subscribers.",
            load(&self.delivered),
        );
        metric(
            "rumor_waiting_pulls",
            "gauge",
            "Long polls waiting for messages now.",
            i128::from(self.waiting_pulls.load(Ordering::Relaxed)),
        );
        metric(
            "rumor_pull_reads_total",
            "counter",
            "Reads of pending messages by pulls (one at first, one per wake-up).",
            load(&self.pull_reads),
        );
        metric(
            "rumor_peer_syncs_received_total",
            "counter",
            "Syncs (events and heartbeats) received from peers.",
            load(&self.peer_syncs),
        );
        metric(
            "rumor_lamport_clock",
            "gauge",
            "This broker's Lamport clock.",
            i128::from(lamport),
        );
        out
    }
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
        metrics.count_published(3);
        let waiting = metrics.waiting_pull();
        let text = metrics.render(9);
        assert!(text.contains("\nrumor_http_requests_total 1\n"));
        assert!(text.contains("\nrumor_messages_published_total 3\n"));
        assert!(text.contains("\nrumor_waiting_pulls 1\n"));
        assert!(text.contains("# TYPE rumor_lamport_clock gauge\nrumor_lamport_clock 9\n"));
        drop(waiting);
        assert!(metrics.render(9).contains("\nrumor_waiting_pulls 0\n"));
    }
}
