//! Long polling (API.md §3, pull semantics) and shutdown while polls wait.

mod support;

use std::time::{Duration, Instant};

use client::wire::{Message, NewMessage, PullQuery, Pulled, StartFrom};
use client::{Client, ClientError};
use serde_json::json;
use support::{at_once, eventually, metric_now, payloads, start_with_topic, subscribed, Broker};
use tokio::task::{JoinHandle, JoinSet};

const P: &str = "pub-1";
const S: &str = "sub-1";
const T: &str = "news";

/// Time a waiting pull gets to reach the broker before the test publishes.
const SETTLE: Duration = Duration::from_millis(300);

/// A pull running in the background: its result, and when it came.
type Poll = JoinHandle<(Result<Pulled, ClientError>, Instant)>;

/// Starts a broker where `P` created topic `T` and `S` subscribes to it from
/// the latest message; returns the broker and a client of it.
async fn broker_with_subscriber() -> (Broker, Client) {
    let (broker, client) = start_with_topic(&[], P, T).await;
    subscribed(&client, S, T, StartFrom::Latest).await;
    (broker, client)
}

/// A pull of `topic` (`None`: every subscription) that waits up to `wait_ms`.
fn waiting(topic: Option<&str>, wait_ms: u64) -> PullQuery {
    PullQuery {
        topic: topic.map(str::to_string),
        wait_ms: Some(wait_ms),
        ..PullQuery::default()
    }
}

/// Starts a pull of `S` with `query` in the background.
fn spawn_pull(client: &Client, query: PullQuery) -> Poll {
    let poller = client.clone();
    tokio::spawn(async move {
        let pulled = poller.pull(S, &query).await;
        (pulled, Instant::now())
    })
}

/// Waits (up to 10 s) for the answer of `poll`; returns what it pulled and
/// when it came.
async fn answer(poll: Poll) -> (Pulled, Instant) {
    let (pulled, answered_at) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the pull did not return")
        .expect("task");
    (pulled.expect("pull"), answered_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_returns_as_soon_as_a_message_arrives() {
    let (_broker, client) = broker_with_subscriber().await;

    let started = Instant::now();
    let poll = spawn_pull(&client, waiting(Some(T), 10_000));
    tokio::time::sleep(SETTLE).await;
    assert!(!poll.is_finished(), "the pull returned before any message");

    let published_at = Instant::now();
    let published = client.publish(T, P, "now").await.expect("publish");
    let (pulled, answered_at) = answer(poll).await;
    assert_eq!(pulled.messages.len(), 1, "{pulled:?}");
    assert_eq!(pulled.messages[0].id, published.id);
    assert_eq!(pulled.messages[0].payload, "now");
    let latency = answered_at.saturating_duration_since(published_at);
    assert!(
        latency < Duration::from_secs(1),
        "the pull answered {latency:?} after the publish"
    );
    assert!(
        answered_at - started < Duration::from_secs(5),
        "the pull ran {:?} of its 10 s",
        answered_at - started
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_without_topic_wakes_on_any_subscription() {
    let (_broker, client) = broker_with_subscriber().await;
    client.create_topic("second", P).await.expect("topic");
    client
        .subscribe(S, "second", StartFrom::Latest)
        .await
        .expect("subscribe");

    let poll = spawn_pull(&client, waiting(None, 10_000));
    tokio::time::sleep(SETTLE).await;
    let published_at = Instant::now();
    client.publish("second", P, "b").await.expect("publish");
    let (pulled, answered_at) = answer(poll).await;
    assert_eq!(pulled.messages.len(), 1, "{pulled:?}");
    assert_eq!(pulled.messages[0].topic, "second");
    let latency = answered_at.saturating_duration_since(published_at);
    assert!(
        latency < Duration::from_secs(1),
        "answered after {latency:?}"
    );
}

#[tokio::test]
async fn idle_pull_returns_empty_at_its_deadline() {
    let (broker, _client) = broker_with_subscriber().await;

    let started = Instant::now();
    let answer = broker
        .http_get(&format!("/subscribers/{S}/messages?topic={T}&wait_ms=300"))
        .await;
    let took = started.elapsed();
    answer.assert_status(200);
    assert_eq!(answer.json()["messages"], json!([]), "{}", answer.text);
    assert!(
        took >= Duration::from_millis(290),
        "returned after {took:?}, before wait_ms=300"
    );
    assert!(took < Duration::from_secs(3), "returned after {took:?}");

    // wait_ms=0 answers at once.
    let started = Instant::now();
    let answer = broker
        .http_get(&format!("/subscribers/{S}/messages?topic={T}&wait_ms=0"))
        .await;
    answer.assert_status(200);
    assert_eq!(answer.json()["messages"], json!([]));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_ignores_other_topics() {
    let (_broker, client) = broker_with_subscriber().await;
    client.create_topic("elsewhere", P).await.expect("topic");

    let started = Instant::now();
    let poll = spawn_pull(&client, waiting(Some(T), 1000));
    tokio::time::sleep(SETTLE).await;
    client.publish("elsewhere", P, "x").await.expect("publish");
    let (pulled, _) = answer(poll).await;
    let took = started.elapsed();
    assert!(pulled.messages.is_empty(), "{pulled:?}");
    assert!(
        took >= Duration::from_millis(990),
        "a publish on another topic ended the wait after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_publish_wakes_many_waiting_pulls() {
    const PULLS: usize = 200;
    let (_broker, client) = start_with_topic(&[], P, T).await;

    let mut setup = JoinSet::new();
    for i in 0..PULLS {
        let client = client.clone();
        setup.spawn(async move {
            let sid = format!("sub-{i}");
            client.register_subscriber(&sid).await.expect("register");
            client
                .subscribe(&sid, T, StartFrom::Latest)
                .await
                .expect("subscribe");
        });
    }
    while let Some(done) = setup.join_next().await {
        done.expect("setup task");
    }
    assert_eq!(
        client.topic(T).await.expect("topic").subscribers,
        PULLS as u64
    );

    let mut polls = JoinSet::new();
    for i in 0..PULLS {
        let client = client.clone();
        polls.spawn(async move {
            let pulled = client
                .pull(&format!("sub-{i}"), &waiting(Some(T), 10_000))
                .await;
            (i, pulled, Instant::now())
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(polls.len(), PULLS);
    let published_at = Instant::now();
    let published = client.publish(T, P, "all of you").await.expect("publish");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut woken = 0;
    while let Some(done) = tokio::time::timeout_at(deadline, polls.join_next())
        .await
        .unwrap_or_else(|_| panic!("only {woken} of {PULLS} pulls returned"))
    {
        let (i, pulled, answered_at) = done.expect("poll task");
        let pulled = pulled.unwrap_or_else(|e| panic!("pull of sub-{i}: {e}"));
        assert_eq!(pulled.messages.len(), 1, "sub-{i}: {pulled:?}");
        assert_eq!(pulled.messages[0].id, published.id, "sub-{i}");
        let latency = answered_at.saturating_duration_since(published_at);
        assert!(
            latency < Duration::from_secs(3),
            "sub-{i} answered {latency:?} after the publish"
        );
        woken += 1;
    }
    assert_eq!(woken, PULLS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_promptly_while_a_pull_waits() {
    let (mut broker, client) = broker_with_subscriber().await;

    let poll = spawn_pull(&client, waiting(Some(T), 30_000));
    tokio::time::sleep(SETTLE).await;
    assert!(!poll.is_finished(), "the pull returned before any message");

    let started = Instant::now();
    let status = tokio::task::block_in_place(|| broker.terminate());
    let took = started.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );

    // The waiting pull got an answer or a closed connection, not a hang.
    let (outcome, _) = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .expect("the waiting pull still hangs after the broker exited")
        .expect("task");
    if let Ok(pulled) = outcome {
        assert!(pulled.messages.is_empty(), "{pulled:?}");
    }
}

#[tokio::test]
async fn sigint_exits_zero() {
    let (mut broker, _client) = broker_with_subscriber().await;
    let started = Instant::now();
    let status = broker.stop_with(libc::SIGINT);
    assert!(status.success(), "exit status after SIGINT: {status}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_do_not_wait_for_a_poll_tick() {
    const ROUNDS: usize = 5;
    let (_broker, client) = broker_with_subscriber().await;

    let mut latencies = Vec::new();
    for round in 0..ROUNDS {
        let query = PullQuery {
            auto_ack: Some(true),
            ..waiting(Some(T), 10_000)
        };
        let poll = spawn_pull(&client, query);
        tokio::time::sleep(SETTLE).await;
        let published_at = Instant::now();
        client
            .publish(T, P, &format!("round {round}"))
            .await
            .expect("publish");
        let (pulled, answered_at) = answer(poll).await;
        assert_eq!(pulled.messages.len(), 1, "round {round}: {pulled:?}");
        assert_eq!(pulled.messages[0].payload, format!("round {round}"));
        latencies.push(answered_at.saturating_duration_since(published_at));
    }
    latencies.sort();
    let median = latencies[ROUNDS / 2];
    assert!(
        latencies[ROUNDS - 1] < Duration::from_secs(1),
        "latencies from publish to answer: {latencies:?}"
    );
    assert!(
        median < Duration::from_millis(250),
        "median latency {median:?} (all: {latencies:?}) looks like a poll tick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_gets_a_whole_batch() {
    let (_broker, client) = broker_with_subscriber().await;

    let poll = spawn_pull(&client, waiting(Some(T), 10_000));
    tokio::time::sleep(SETTLE).await;
    let batch = client
        .publish_batch(T, P, vec!["b1".into(), "b2".into(), "b3".into()])
        .await
        .expect("publish batch");
    let (pulled, _) = answer(poll).await;
    let ids: Vec<&str> = pulled.messages.iter().map(|m| m.id.as_str()).collect();
    let sent: Vec<&str> = batch.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, sent, "one transaction, seen at once and in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pull_without_topic_picks_up_a_new_subscription() {
    let (_broker, client) = broker_with_subscriber().await;
    client.create_topic("later", P).await.expect("topic");

    let started = Instant::now();
    let poll = spawn_pull(&client, waiting(None, 10_000));
    tokio::time::sleep(SETTLE).await;
    client
        .subscribe(S, "later", StartFrom::Earliest)
        .await
        .expect("subscribe while the pull waits");
    let published_at = Instant::now();
    client
        .publish("later", P, "new topic")
        .await
        .expect("publish");
    let (pulled, answered_at) = answer(poll).await;
    assert_eq!(pulled.messages.len(), 1, "{pulled:?}");
    assert_eq!(pulled.messages[0].payload, "new topic");
    let latency = answered_at.saturating_duration_since(published_at);
    assert!(
        latency < Duration::from_secs(1),
        "answered after {latency:?}"
    );
    assert!(answered_at - started < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_ends_a_waiting_pull_at_once() {
    let (_broker, client) = broker_with_subscriber().await;

    let poll = spawn_pull(&client, waiting(Some(T), 10_000));
    tokio::time::sleep(SETTLE).await;
    let unsubscribed_at = Instant::now();
    client.unsubscribe(S, T).await.expect("unsubscribe");
    let (pulled, answered_at) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the pull did not return")
        .expect("task");
    let error = pulled.expect_err("the pull outlived its subscription");
    assert_eq!(error.code(), Some("not_subscribed"), "{error}");
    let latency = answered_at.saturating_duration_since(unsubscribed_at);
    assert!(
        latency < Duration::from_secs(1),
        "answered after {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_waits_with_at_most_sixteen_pulls_per_broker() {
    let (broker, client) = start_with_topic(&[], P, T).await;
    for sid in [S, "sub-2"] {
        subscribed(&client, sid, T, StartFrom::Latest).await;
    }
    let waiting = |client: Client, sid: &'static str| async move {
        let query = PullQuery {
            topic: Some(T.to_string()),
            wait_ms: Some(20_000),
            ..PullQuery::default()
        };
        client.pull(sid, &query).await
    };
    let mut polls = JoinSet::new();
    for _ in 0..16 {
        polls.spawn(waiting(broker.client(), S));
    }
    eventually(Duration::from_secs(10), "16 pulls wait", || async {
        client
            .metrics()
            .await
            .is_ok_and(|text| text.contains("\nrumor_waiting_pulls 16\n"))
    })
    .await;
    let refused = waiting(broker.client(), S).await.expect_err("a 17th pull");
    assert_eq!(refused.code(), Some("too_many_requests"), "{refused}");
    assert!(refused.to_string().contains("429"), "{refused}");
    // Another subscriber is not held back; the 16 still get the message.
    let other = tokio::spawn(waiting(broker.client(), "sub-2"));
    client.publish(T, P, "for all").await.expect("publish");
    let pulled = other.await.expect("task").expect("sub-2 pulls");
    assert_eq!(payloads(&pulled), ["for all"]);
    while let Some(done) = polls.join_next().await {
        let pulled = done.expect("task").expect("one of the 16");
        assert_eq!(payloads(&pulled), ["for all"]);
    }
    // Their slots are free again.
    client
        .pull(S, &at_once(Some(T), None))
        .await
        .expect("a pull after the others ended");
}

/// Waits (up to 5 s) until `count` pulls wait on the broker.
async fn until_waiting(client: &Client, count: f64) {
    eventually(Duration::from_secs(5), "the pulls wait", || async {
        metric_now(client, "rumor_waiting_pulls").await == count
    })
    .await;
}

/// A woken pull gives out what the publish committed as the broker kept it
/// in memory; a read of the store gives the same messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_pull_gives_what_a_read_of_the_store_gives() {
    let (_broker, client) = broker_with_subscriber().await;
    let poll = spawn_pull(&client, waiting(Some(T), 10_000));
    until_waiting(&client, 1.0).await;
    let messages = vec![
        NewMessage {
            payload: "with headers".into(),
            headers: Some([("k".to_string(), "v".to_string())].into()),
            msg_id: Some("m-1".into()),
        },
        NewMessage {
            payload: "plain".into(),
            headers: None,
            msg_id: None,
        },
    ];
    client
        .publish_messages(T, P, messages)
        .await
        .expect("publish");
    let (woken, _) = answer(poll).await;
    let read = client.pull(S, &at_once(Some(T), None)).await.expect("pull");
    assert_eq!(woken.messages.len(), 2, "{woken:?}");
    for (given, again) in woken.messages.iter().zip(&read.messages) {
        assert_eq!((given.deliveries, again.deliveries), (1, 2));
        let again = Message {
            deliveries: 1,
            ..again.clone()
        };
        assert_eq!(given, &again, "as read from the store");
    }

    // Acknowledged, they are not given again; the next message wakes an
    // auto-acknowledging pull alone, and is not given again either.
    client.ack(S, &read.cursor).await.expect("ack");
    let auto_ack = PullQuery {
        auto_ack: Some(true),
        ..waiting(Some(T), 10_000)
    };
    let poll = spawn_pull(&client, auto_ack);
    until_waiting(&client, 1.0).await;
    client.publish(T, P, "next").await.expect("publish");
    let (woken, _) = answer(poll).await;
    assert_eq!(payloads(&woken), ["next"]);
    let poll = spawn_pull(&client, waiting(Some(T), 10_000));
    until_waiting(&client, 1.0).await;
    client.publish(T, P, "last").await.expect("publish");
    let (woken, _) = answer(poll).await;
    assert_eq!(payloads(&woken), ["last"]);
}
