//! API.md §7 metrics scraped from a live three-broker cluster: every metric
//! is there, and each moves as it should (a publish moves the topic's and
//! the subscriptions' gauges and the request and commit histograms, a nack
//! and a dead letter move their counters, a killed peer drops
//! `rumor_peer_alive`, an election moves `rumor_term`).

mod support;

use std::time::Duration;

use client::wire::StartFrom;
use client::Client;
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

/// Every metric API.md §7 names, besides those of v1.
const NAMES: &[&str] = &[
    "rumor_http_request_duration_seconds",
    "rumor_commit_duration_seconds",
    "rumor_commit_batch_size",
    "rumor_topic_messages",
    "rumor_topic_bytes",
    "rumor_subscription_pending",
    "rumor_subscription_oldest_unacked_age_seconds",
    "rumor_peer_alive",
    "rumor_peer_lag_events",
    "rumor_term",
    "rumor_is_leader",
    "rumor_db_bytes",
    "rumor_wal_bytes",
    "rumor_redeliveries_total",
    "rumor_dead_letters_total",
];

/// Waits until `series` (a metric name with its labels) has a value that
/// `accept` takes on `client`'s broker; returns it.
async fn until(client: &Client, series: &str, accept: impl Fn(f64) -> bool) -> f64 {
    eventually_ok(WAIT, &format!("{series} as expected"), || async {
        let text = client.metrics().await.map_err(|e| e.to_string())?;
        match metric(&text, series) {
            Some(value) if accept(value) => Ok(value),
            other => Err(format!("{series} is {other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_live_cluster_move_as_it_works() {
    let mut cluster = Cluster::start(3, &[]).await;
    let (a, b) = (cluster.client(0), cluster.client(1));
    let text = a.metrics().await.unwrap();
    for name in NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in:\n{text}"
        );
    }

    // A publish moves the topic's gauges and its subscriber's backlog, on
    // the broker that took it and on a peer.
    topic_of(&a, "p", "t").await;
    subscribed(&a, "s", "t", StartFrom::Earliest).await;
    a.publish_batch("t", "p", vec!["abc".into(), "défg".into()])
        .await
        .unwrap();
    for client in [&a, &b] {
        until(client, "rumor_topic_messages{topic=\"t\"}", |v| v == 2.0).await;
        until(client, "rumor_topic_bytes{topic=\"t\"}", |v| v == 8.0).await;
        let pending = "rumor_subscription_pending{subscriber=\"s\",topic=\"t\"}";
        until(client, pending, |v| v == 2.0).await;
    }
    let age = "rumor_subscription_oldest_unacked_age_seconds{subscriber=\"s\",topic=\"t\"}";
    until(&a, age, |v| v > 0.0).await;
    let published = "rumor_http_request_duration_seconds_count{route=\"/topics/{name}/messages\",status=\"201\"}";
    until(&a, published, |v| v >= 1.0).await;
    until(&a, "rumor_commit_duration_seconds_count", |v| v >= 1.0).await;
    until(&a, "rumor_commit_batch_size_sum", |v| v >= 1.0).await;
    until(&a, "rumor_db_bytes", |v| v > 0.0).await;
    let pulled = a.pull("s", &at_once(Some("t"), None)).await.unwrap();
    a.ack("s", &pulled.cursor).await.unwrap();
    let pending = "rumor_subscription_pending{subscriber=\"s\",topic=\"t\"}";
    until(&b, pending, |v| v == 0.0).await;
    until(&a, age, |v| v == 0.0).await;

    // A nack gives a message out again; one at max_deliveries goes to the
    // dead letters.
    a.create_topic("dead", "p").await.unwrap();
    let broker = cluster.broker(0);
    for (id, settings) in [
        ("again", json!({"ack_wait_ms": 60000})),
        (
            "once",
            json!({"ack_wait_ms": 60000, "max_deliveries": 1, "dead_letter_topic": "dead"}),
        ),
    ] {
        subscribed_shared(broker, id, "t", settings).await;
        let leased = a.pull(id, &at_once(Some("t"), None)).await.unwrap();
        let ids: Vec<String> = leased.messages.iter().map(|m| m.id.clone()).collect();
        a.nack(id, &ids, 0).await.unwrap();
        a.pull(id, &at_once(Some("t"), None)).await.unwrap();
    }
    until(&a, "rumor_redeliveries_total{topic=\"t\"}", |v| v == 2.0).await;
    until(&a, "rumor_dead_letters_total{topic=\"t\"}", |v| v == 2.0).await;

    // Peers: alive and caught up; a killed leader drops out and the
    // survivors elect another in a later term.
    let (leader, term) = cluster.agreed_leader(WAIT).await;
    let leader_index = (0..3).find(|&i| cluster.id(i) == leader).unwrap();
    let survivor = cluster.client((leader_index + 1) % 3);
    let alive = format!("rumor_peer_alive{{peer=\"{leader}\"}}");
    until(&survivor, &alive, |v| v == 1.0).await;
    until(
        &survivor,
        &format!("rumor_peer_lag_events{{peer=\"{leader}\"}}"),
        |v| v == 0.0,
    )
    .await;
    until(&survivor, "rumor_term", |v| v == term as f64).await;
    let leaders: f64 = {
        let mut sum = 0.0;
        for i in 0..3 {
            sum += metric_now(&cluster.client(i), "rumor_is_leader").await;
        }
        sum
    };
    assert_eq!(leaders, 1.0, "one broker leads");
    cluster.kill(leader_index);
    until(&survivor, &alive, |v| v == 0.0).await;
    until(&survivor, "rumor_term", |v| v > term as f64).await;
}
