//! Cluster behaviour (API.md §4): replication both ways, catch-up after a
//! crash, bully election with failures and pauses, convergence of
//! conflicting operations, and subscriber failover between brokers.
//!
//! Replication is asynchronous: every check across brokers polls with a
//! deadline.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use client::wire::{ClusterInfo, Message, Published, PullQuery, StartFrom};
use client::Client;
use support::{
    at_once, eventually, eventually_ok, lines_of, metric_now, probe, read_all, spawn_piped,
    subscribed, topic_of, Broker, ChildGuard, Cluster,
};
use tokio::task::JoinSet;

const P1: &str = "pub-1";
const P2: &str = "pub-2";
const S1: &str = "sub-1";
const T: &str = "news";

/// Time for a change to reach every live broker.
const REPLICATION: Duration = Duration::from_secs(10);
/// Time for the live brokers to agree on a leader after a change.
const ELECTION: Duration = Duration::from_secs(10);
/// Time for a restarted broker to catch up on 10,000 messages.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Time a waiting pull gets to reach the broker before the test publishes.
const SETTLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Helpers

/// Waits until `client`'s broker holds `messages` messages of topic `T`.
async fn holds_messages(client: &Client, messages: usize, what: &str) {
    eventually_ok(REPLICATION, what, || async {
        let info = probe(client.topic(T)).await?;
        (info.messages == messages as u64)
            .then_some(())
            .ok_or(format!("{info:?}"))
    })
    .await;
}

/// Waits until every live broker knows `topic`.
async fn known_everywhere(cluster: &Cluster, topic: &str) {
    for i in cluster.live() {
        let client = cluster.client(i);
        eventually_ok(
            REPLICATION,
            &format!("broker {i} knows topic {topic}"),
            || probe(client.topic(topic)),
        )
        .await;
    }
}

/// Publishes on `client`, retrying while the broker does not know the
/// publisher or topic yet (a refused publish leaves no trace, so a retry
/// cannot duplicate a message); any other error fails the test.
async fn publish_when_known(client: &Client, publisher: &str, payload: &str) -> Published {
    let what = format!("{} accepts {payload:?} from {publisher}", client.base_url());
    eventually_ok(REPLICATION, &what, || async {
        match client.publish(T, publisher, payload).await {
            Ok(published) => Ok(published),
            Err(e) if matches!(e.code(), Some("publisher_not_found" | "topic_not_found")) => {
                Err(e.to_string())
            }
            Err(e) => panic!("publish {payload:?} on {}: {e}", client.base_url()),
        }
    })
    .await
}

/// A pull of `T` that does not wait, for up to 1000 messages.
fn pull_all() -> PullQuery {
    at_once(Some(T), Some(1000))
}

/// The ids of `messages`, in order.
fn ids(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Asserts that per origin, `messages` come in increasing `seq` order.
#[track_caller]
fn assert_origin_order(messages: &[Message]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for m in messages {
        if let Some(&before) = last.get(m.origin.as_str()) {
            assert!(
                m.seq > before,
                "{} delivered after seq {before} of the same origin: {:?}",
                m.id,
                ids(messages)
            );
        }
        last.insert(&m.origin, m.seq);
    }
}

/// `GET /topics/{topic}` on every live broker, as its message count
/// (`None`: the broker answers `topic_not_found`).
async fn topic_states(cluster: &Cluster, topic: &str) -> Result<Vec<Option<u64>>, String> {
    let mut states = Vec::new();
    for i in cluster.live() {
        let answer =
            tokio::time::timeout(support::PROBE_TIMEOUT, cluster.client(i).topic(topic)).await;
        match answer {
            Ok(Ok(info)) => states.push(Some(info.messages)),
            Ok(Err(e)) if e.code() == Some("topic_not_found") => states.push(None),
            Ok(Err(e)) => return Err(format!("broker {i}: {e}")),
            Err(_) => return Err(format!("broker {i}: no answer")),
        }
    }
    Ok(states)
}

/// `GET /cluster` of every live broker at (about) the same moment; brokers
/// that do not answer in time are left out.
async fn sample(cluster: &Cluster) -> Vec<ClusterInfo> {
    let mut probes = JoinSet::new();
    for i in cluster.live() {
        let client = cluster.client(i);
        probes.spawn(async move { probe(client.cluster()).await });
    }
    let mut infos = Vec::new();
    while let Some(answer) = probes.join_next().await {
        if let Ok(info) = answer.expect("probe task") {
            infos.push(info);
        }
    }
    infos.sort_by(|a, b| support::id_order(&a.self_id, &b.self_id));
    infos
}

/// Fails the test when two brokers of one sample each claim to lead the
/// same term.
#[track_caller]
fn assert_one_leader_per_term(infos: &[ClusterInfo]) {
    let mut leaders: HashMap<u64, &str> = HashMap::new();
    for info in infos {
        if info.leader.as_deref() == Some(info.self_id.as_str()) {
            if let Some(other) = leaders.insert(info.term, &info.self_id) {
                panic!(
                    "{other} and {} both claim to lead term {}: {infos:?}",
                    info.self_id, info.term
                );
            }
        }
    }
}

/// Samples `GET /cluster` on the live brokers every 20 ms, checking each
/// sample for two leaders of one term, until every live broker answers,
/// all name the same leader and term, and `accept(leader, term)` holds;
/// returns that term. Fails the test after `limit`. `samples` counts the
/// samples taken.
async fn sample_until_agreed(
    cluster: &Cluster,
    limit: Duration,
    wanted: &str,
    samples: &mut usize,
    accept: impl Fn(&str, u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let infos = sample(cluster).await;
        *samples += 1;
        assert_one_leader_per_term(&infos);
        let first = &infos.first().map(|i| (i.leader.clone(), i.term));
        let agreed = infos.len() == cluster.live().len()
            && infos
                .iter()
                .all(|i| Some((i.leader.clone(), i.term)) == *first);
        if let (true, Some((Some(leader), term))) = (agreed, first) {
            if accept(leader, *term) {
                return *term;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: live brokers {:?} agree on {wanted}; last sample: {:?}",
            cluster.live(),
            infos
                .iter()
                .map(|i| (&i.self_id, &i.leader, i.term))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The harness itself

#[tokio::test]
async fn harness_pauses_resumes_and_kills_a_paused_broker() {
    let mut broker = Broker::start().await;
    let client = broker.client();
    broker.pause();
    assert!(
        probe(client.health()).await.is_err(),
        "a paused broker answered"
    );
    broker.resume();
    probe(client.health()).await.expect("health after SIGCONT");

    broker.pause();
    let pid = broker.pid();
    broker.kill(); // SIGKILL ends a stopped process; kill() also reaps it
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the paused broker {pid} survived SIGKILL"
    );
}

// ---------------------------------------------------------------------------
// Replication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_replicate_both_ways() {
    let cluster = Cluster::start(3, &[]).await;
    let (c0, c1, c2) = (cluster.client(0), cluster.client(1), cluster.client(2));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;
    subscribed(&c1, S1, T, StartFrom::Earliest).await;

    let mut sent = Vec::new();
    for k in 0..5 {
        let published = c0.publish(T, P1, &format!("from 0 #{k}")).await;
        sent.push(published.expect("publish on broker 0"));
        sent.push(publish_when_known(&c2, P1, &format!("from 2 #{k}")).await);
    }
    assert_eq!(sent.iter().filter(|p| p.origin == cluster.id(0)).count(), 5);
    assert_eq!(sent.iter().filter(|p| p.origin == cluster.id(2)).count(), 5);
    let sent_ids: BTreeSet<String> = sent.iter().map(|p| p.id.clone()).collect();

    let pulled = eventually_ok(
        REPLICATION,
        "S1 on broker 1 gets all 10 messages",
        || async {
            let pulled = probe(c1.pull(S1, &pull_all())).await?;
            let got: BTreeSet<String> = ids(&pulled.messages).into_iter().collect();
            if got == sent_ids && pulled.messages.len() == sent_ids.len() {
                Ok(pulled)
            } else {
                Err(format!("{:?}", ids(&pulled.messages)))
            }
        },
    )
    .await;
    assert_origin_order(&pulled.messages);
    for m in &pulled.messages {
        assert_eq!((m.topic.as_str(), m.publisher.as_str()), (T, P1), "{m:?}");
        let from = if m.origin == cluster.id(0) { 0 } else { 2 };
        assert!(m.payload.starts_with(&format!("from {from} #")), "{m:?}");
    }

    for i in 0..cluster.len() {
        let client = cluster.client(i);
        let what = format!("GET /topics on broker {i} lists {T} with 10 messages");
        eventually_ok(REPLICATION, &what, || async {
            let topics = probe(client.topics()).await?;
            let listed: Vec<_> = topics.iter().filter(|t| t.name == T).collect();
            match listed.as_slice() {
                [topic] if topic.messages == 10 && topic.created_by == P1 => Ok(()),
                _ => Err(format!("{topics:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_one_broker_wakes_a_long_poll_on_another() {
    let cluster = Cluster::start(3, &[]).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;
    subscribed(&c1, S1, T, StartFrom::Latest).await;
    // The publish must be stamped after the subscription (from=latest): wait
    // until broker 0 has the subscribe event (and so its Lamport stamp).
    eventually(REPLICATION, "broker 0 sees S1's subscription", || async {
        probe(c0.topic(T)).await.is_ok_and(|t| t.subscribers == 1)
    })
    .await;

    let poller = c1.clone();
    let poll = tokio::spawn(async move {
        let query = PullQuery {
            topic: Some(T.to_string()),
            wait_ms: Some(10_000),
            ..PullQuery::default()
        };
        let pulled = poller.pull(S1, &query).await;
        (pulled, Instant::now())
    });
    tokio::time::sleep(SETTLE).await;
    assert!(!poll.is_finished(), "the pull returned before any message");

    let published_at = Instant::now();
    let published = c0.publish(T, P1, "wake up").await.expect("publish");
    let (pulled, answered_at) = tokio::time::timeout(Duration::from_secs(12), poll)
        .await
        .expect("the pull on broker 1 did not return")
        .expect("task");
    let pulled = pulled.expect("pull on broker 1");
    assert_eq!(ids(&pulled.messages), vec![published.id], "{pulled:?}");
    let latency = answered_at.saturating_duration_since(published_at);
    assert!(
        latency < Duration::from_secs(1),
        "the pull on broker 1 answered {latency:?} after the publish on broker 0"
    );
}

// ---------------------------------------------------------------------------
// Membership and election

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_view_names_the_greatest_id_as_leader() {
    let cluster = Cluster::start(3, &[]).await;
    let greatest = cluster.id(cluster.greatest_live());
    assert_eq!(greatest, cluster.id(2), "brokers are numbered in id order");
    let (_, term) = cluster
        .agreed_leader_where(ELECTION, &format!("leader {greatest}"), |leader, _| {
            leader == greatest
        })
        .await;
    assert!(term >= 1, "term {term}");

    let mut all_ids = cluster.ids();
    all_ids.sort();
    let infos = eventually_ok(REPLICATION, "every broker sees all three alive", || async {
        let infos = cluster.live_infos().await?;
        let all_alive = infos.iter().all(|info| {
            let mut members: Vec<_> = info.members.iter().map(|m| m.id.clone()).collect();
            members.sort();
            members == all_ids && info.members.iter().all(|m| m.alive)
        });
        if all_alive {
            Ok(infos)
        } else {
            Err(format!("{infos:?}"))
        }
    })
    .await;
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(info.self_id, cluster.id(i), "{info:?}");
        assert_eq!(info.mode, "gossip", "{info:?}");
        assert_eq!(
            (info.leader.as_deref(), info.term),
            (Some(greatest.as_str()), term),
            "{info:?}"
        );
    }

    // The Lamport clock grows with events and travels with them.
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    let before = c0.cluster().await.expect("cluster").lamport;
    topic_of(&c0, P1, T).await;
    let published = c0.publish(T, P1, "tick").await.expect("publish");
    assert!(
        published.lamport > before,
        "stamp {} after clock {before}",
        published.lamport
    );
    let after = c0.cluster().await.expect("cluster").lamport;
    assert!(
        after >= published.lamport,
        "clock {after} behind stamp {}",
        published.lamport
    );
    eventually(REPLICATION, "broker 1's clock passes the stamp", || async {
        probe(c1.cluster())
            .await
            .is_ok_and(|info| info.lamport >= published.lamport)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_then_catches_up_and_leads_again() {
    let mut cluster = Cluster::start(3, &[]).await;
    let (id1, id2) = (cluster.id(1), cluster.id(2));
    let (_, first_term) = cluster
        .agreed_leader_where(ELECTION, &format!("leader {id2}"), |l, _| l == id2)
        .await;
    let (c0, c1, c2) = (cluster.client(0), cluster.client(1), cluster.client(2));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;
    let mut sent = Vec::new();
    for k in 0..3 {
        let published = c0.publish(T, P1, &format!("before #{k}")).await;
        sent.push(published.expect("publish before the kill").id);
    }

    cluster.kill(2);
    let wanted = format!("leader {id1} with a term above {first_term}");
    let (_, second_term) = cluster
        .agreed_leader_where(ELECTION, &wanted, |l, t| l == id1 && t > first_term)
        .await;
    for i in cluster.live() {
        let client = cluster.client(i);
        let what = format!("broker {i} shows {id2} not alive");
        eventually_ok(REPLICATION, &what, || async {
            let info = probe(client.cluster()).await?;
            match info.members.iter().find(|m| m.id == id2) {
                Some(member) if !member.alive => Ok(()),
                _ => Err(format!("{info:?}")),
            }
        })
        .await;
    }

    // Publishing on the survivors still works.
    let mut while_down = Vec::new();
    for k in 0..5 {
        let published = c0.publish(T, P1, &format!("down, on 0 #{k}")).await;
        while_down.push(published.expect("publish on broker 0").id);
        let published = publish_when_known(&c1, P1, &format!("down, on 1 #{k}")).await;
        while_down.push(published.id);
    }
    sent.extend(while_down.iter().cloned());

    cluster.restart(2).await;
    subscribed(&c2, S1, T, StartFrom::Earliest).await;
    let all: BTreeSet<String> = sent.iter().cloned().collect();
    let pulled = eventually_ok(
        REPLICATION,
        "the restarted broker 2 has caught up",
        || async {
            let pulled = probe(c2.pull(S1, &pull_all())).await?;
            let got: BTreeSet<String> = ids(&pulled.messages).into_iter().collect();
            if got == all && pulled.messages.len() == all.len() {
                Ok(pulled)
            } else {
                Err(format!("{:?}", ids(&pulled.messages)))
            }
        },
    )
    .await;
    assert_origin_order(&pulled.messages);

    let wanted = format!("leader {id2} again with a term above {second_term}");
    cluster
        .agreed_leader_where(ELECTION, &wanted, |l, t| l == id2 && t > second_term)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_gives_way_and_one_leader_remains_after_it_resumes() {
    let mut cluster = Cluster::start(3, &[]).await;
    let (id1, id2) = (cluster.id(1), cluster.id(2));
    let mut samples = 0;
    let first_term = sample_until_agreed(
        &cluster,
        ELECTION,
        &format!("leader {id2}"),
        &mut samples,
        |l, _| l == id2,
    )
    .await;

    // Paused for longer than failure detection: until the others elected.
    cluster.pause(2);
    let paused_at = Instant::now();
    let second_term = sample_until_agreed(
        &cluster,
        ELECTION,
        &format!("leader {id1} with a term above {first_term}"),
        &mut samples,
        |l, t| l == id1 && t > first_term,
    )
    .await;
    let paused_for = paused_at.elapsed();

    cluster.resume(2);
    let agreed_term = sample_until_agreed(
        &cluster,
        ELECTION,
        "one leader and term",
        &mut samples,
        |_, _| true,
    )
    .await;
    // Once quiet, the greatest live id leads (API.md §4).
    let final_term = sample_until_agreed(
        &cluster,
        ELECTION,
        &format!("leader {id2}, the greatest id"),
        &mut samples,
        |l, _| l == id2,
    )
    .await;
    assert!(
        final_term > second_term,
        "terms: {first_term}, then {second_term} while paused ({paused_for:?}), \
         {agreed_term} and {final_term} after SIGCONT"
    );
    assert!(samples > 3, "only {samples} samples");
}

// ---------------------------------------------------------------------------
// Anti-entropy and convergence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_broker_catches_up_on_ten_thousand_messages() {
    const BATCHES: usize = 10;
    const BATCH: usize = 1000;
    const TOTAL: usize = BATCHES * BATCH;
    let mut cluster = Cluster::start(3, &[]).await;
    let (c0, c2) = (cluster.client(0), cluster.client(2));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;

    cluster.kill(2);
    let mut sent = HashSet::new();
    for b in 0..BATCHES {
        let payloads = (0..BATCH).map(|k| format!("batch {b} #{k}")).collect();
        let batch = c0.publish_batch(T, P1, payloads).await;
        let batch = batch.unwrap_or_else(|e| panic!("batch {b}: {e}"));
        assert_eq!(batch.messages.len(), BATCH);
        sent.extend(batch.messages.into_iter().map(|m| m.id));
    }
    assert_eq!(sent.len(), TOTAL);

    cluster.restart(2).await;
    let restarted_at = Instant::now();
    eventually_ok(CATCH_UP, "broker 2 holds all 10,000 messages", || async {
        let info = probe(c2.topic(T)).await?;
        if info.messages == TOTAL as u64 {
            Ok(())
        } else {
            Err(format!("{info:?}"))
        }
    })
    .await;
    let caught_up_in = restarted_at.elapsed();

    // And they are readable there, each once.
    subscribed(&c2, S1, T, StartFrom::Earliest).await;
    let mut read = HashSet::new();
    for _ in 0..2 * BATCHES {
        let pulled = c2.pull(S1, &pull_all()).await.expect("pull on broker 2");
        if pulled.messages.is_empty() {
            break;
        }
        assert_origin_order(&pulled.messages);
        for m in &pulled.messages {
            assert!(read.insert(m.id.clone()), "{} read twice", m.id);
        }
        c2.ack(S1, &pulled.cursor).await.expect("ack");
    }
    assert_eq!(
        read.len(),
        TOTAL,
        "read {} distinct messages on broker 2 (caught up in {caught_up_in:?})",
        read.len()
    );
    assert_eq!(read, sent);
}

/// With `--max-replica-lag`, writes wait for a live peer too far behind:
/// however fast clients publish, an acknowledged publish was taken while
/// every replica lacked at most that many of the broker's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_wait_for_a_replica_too_far_behind() {
    const MAX_LAG: u64 = 100;
    const PUBLISHERS: u64 = 4;
    const BATCHES: u64 = 25;
    const BATCH: u64 = 200;
    let cluster = Cluster::start(3, &["--max-replica-lag", &MAX_LAG.to_string()]).await;
    let c0 = cluster.client(0);
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;

    let mut publishers = JoinSet::new();
    for p in 0..PUBLISHERS {
        let (c0, origin) = (c0.clone(), cluster.id(0));
        let replicas = [cluster.client(1), cluster.client(2)];
        publishers.spawn(async move {
            for b in 0..BATCHES {
                let payloads = (0..BATCH).map(|k| format!("{p}.{b}.{k}")).collect();
                let batch = c0.publish_batch(T, P1, payloads).await.expect("publish");
                // Taken when the broker held at least this many events (the
                // other publishers' batches may have been written first).
                let first = batch.messages[0].seq;
                let taken_at = (first - 1).saturating_sub((PUBLISHERS - 1) * BATCH);
                for replica in &replicas {
                    let info = replica.cluster().await.expect("GET /cluster");
                    let held = info.have.get(&origin).copied().unwrap_or(0);
                    assert!(
                        held + MAX_LAG >= taken_at,
                        "{} holds {held} of {origin}'s events after seq {first} was acknowledged",
                        info.self_id
                    );
                }
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.expect("a publisher failed");
    }
    let total = (PUBLISHERS * BATCHES * BATCH) as usize;
    for i in 1..3 {
        holds_messages(&cluster.client(i), total, "the replica holds every message").await;
    }
}

/// Payloads up to 4 MiB, where bodies are limited to 16 MiB by default.
const LARGE_PAYLOADS: [&str; 2] = ["--max-payload-bytes", "4194304"];

/// Two brokers peered with each other, the first with [`LARGE_PAYLOADS`],
/// once the first took a message to `topic` that the second's body limit
/// refuses (3 MiB of control characters, six bytes each in JSON) and has
/// halved its syncs down to that one event. Returns them and the directory
/// of their peer list.
async fn a_peer_refusing_an_event(topic: &str) -> (Broker, Broker, tempfile::TempDir) {
    let ports = support::free_ports(2);
    let (dir, peers) = support::peer_list(&ports);
    let large_args = [&["--peers", peers.as_str()], &LARGE_PAYLOADS[..]].concat();
    let mut large = Broker::spawn_on(ports[0], &large_args);
    let mut small = Broker::spawn_on(ports[1], &["--peers", &peers]);
    large.wait_healthy().await;
    small.wait_healthy().await;
    let client = large.client();
    topic_of(&client, P1, topic).await;
    client
        .publish(topic, P1, &"\u{1}".repeat(3 * 1024 * 1024))
        .await
        .expect("the large broker takes the payload");
    eventually(REPLICATION, "the sync is down to the one event", || {
        let log = large.log();
        async move { log.contains("refuses an event as too large") }
    })
    .await;
    (large, small, dir)
}

/// An event larger than a peer's body limit (a peer with a lower
/// `--max-payload-bytes`) can never reach that peer: it is offered again
/// at the pace of a failure, not in a busy loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_a_peer_is_offered_again_at_a_pace() {
    let (large, small, _dir) = a_peer_refusing_an_event(T).await;
    let client = large.client();
    // The sync is halved down to the one event at once (13 halvings from
    // 5,000 events), then offered at most every 200-500 ms.
    let halved = "refused a sync as too large; sending less";
    let refused = "rumor_http_request_duration_seconds_count{route=\"/peer/sync\",status=\"413\"}";
    let peer = small.client();
    let before = metric_now(&peer, refused).await;
    let window = Duration::from_secs(3);
    let started = Instant::now();
    // Publishes go on meanwhile (and, recorded, do not cut the pause short).
    for n in 0..30 {
        client
            .publish(T, P1, &format!("m{n}"))
            .await
            .expect("publish");
    }
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let offers = metric_now(&peer, refused).await - before;
    let most = window.as_millis() as f64 / 200.0 + 1.0;
    assert!(offers <= most, "{offers} refused syncs in {window:?}");
    let halvings = large.log().matches(halved).count();
    assert!(halvings <= 13, "{halvings} halvings of the sync");
    assert!(large.is_running() && small.is_running());
}

/// A peer that refused syncs as too large, down to one event, and then
/// takes them again is soon sent full syncs again: the sync grows back with
/// every sync it takes, not only once the peer has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_takes_large_syncs_again_gets_full_ones_again() {
    const MESSAGES: usize = 5000;
    const LARGE: &str = "large";
    let (large, small, _dir) = a_peer_refusing_an_event(LARGE).await;
    let client = large.client();
    topic_of(&client, P1, T).await;
    for batch in 0..MESSAGES / 500 {
        let payloads = (0..500).map(|k| format!("{batch}.{k}")).collect();
        client
            .publish_batch(T, P1, payloads)
            .await
            .expect("publish a batch");
    }
    let peer = small.client();
    let taken = "rumor_http_request_duration_seconds_count{route=\"/peer/sync\",status=\"200\"}";
    let before = metric_now(&peer, taken).await;
    // Deleted, the message the peer refused is sent as a marker it takes.
    client
        .delete_topic(LARGE, P1)
        .await
        .expect("delete the large message's topic");

    holds_messages(&peer, MESSAGES, "the peer caught up").await;
    let syncs = metric_now(&peer, taken).await - before;
    // Growing back from one event to 5,000 takes 13 syncs; one event a
    // sync would take 5,000.
    assert!(
        syncs < 100.0,
        "{syncs} syncs to catch up on {MESSAGES} messages"
    );
}

/// A peer that stops answering holds writes back only until it is taken
/// as down: publishes go on, and it catches up once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_does_not_stop_publishes() {
    const BATCHES: usize = 10;
    const BATCH: usize = 200;
    let mut cluster = Cluster::start(3, &["--max-replica-lag", "100"]).await;
    let c0 = cluster.client(0);
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;

    cluster.pause(2);
    for b in 0..BATCHES {
        let payloads = (0..BATCH).map(|k| format!("{b}.{k}")).collect();
        let batch = c0.publish_batch(T, P1, payloads).await;
        let batch = batch.unwrap_or_else(|e| panic!("batch {b} with broker 2 paused: {e}"));
        assert_eq!(batch.messages.len(), BATCH);
    }
    cluster.resume(2);
    holds_messages(&cluster.client(2), BATCHES * BATCH, "broker 2 caught up").await;
}

/// A broker's events reach a peer that missed them through another peer
/// once their own broker is down: brokers relay other origins' events when
/// the origin cannot deliver them itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_broker_that_is_down_reach_a_peer_through_another() {
    const MESSAGES: usize = 500;
    let mut cluster = Cluster::start(3, &[]).await;
    let (c0, c1, c2) = (cluster.client(0), cluster.client(1), cluster.client(2));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;

    cluster.kill(2);
    let payloads = (0..MESSAGES).map(|k| format!("m{k}")).collect();
    let batch = c0.publish_batch(T, P1, payloads).await.expect("publish");
    assert_eq!(batch.messages.len(), MESSAGES);
    holds_messages(&c1, MESSAGES, "broker 1 holds every message").await;

    cluster.kill(0);
    cluster.restart(2).await;
    holds_messages(&c2, MESSAGES, "broker 2 holds every message").await;
    subscribed(&c2, S1, T, StartFrom::Earliest).await;
    let pulled = c2.pull(S1, &pull_all()).await.expect("pull on broker 2");
    let sent: Vec<String> = batch.messages.into_iter().map(|m| m.id).collect();
    assert_eq!(ids(&pulled.messages), sent);
}

/// A peer is sent its own events only when it lost them. What it answered
/// to the sync before is up to a heartbeat old, and it has made more events
/// since (and sent them here): that is no reason to send them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_is_not_sent_its_own_events_back() {
    let cluster = Cluster::start(2, &[]).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;
    let own_events_of = |client: &Client| {
        let client = client.clone();
        let id = cluster.id(1);
        async move {
            let info = probe(client.cluster()).await?;
            Ok::<u64, String>(info.have.get(&id).copied().unwrap_or(0))
        }
    };
    let before = eventually_ok(REPLICATION, "broker 0 holds broker 1's events", || async {
        let (on_0, on_1) = (own_events_of(&c0).await?, own_events_of(&c1).await?);
        (on_0 == on_1)
            .then_some(on_1)
            .ok_or(format!("{on_0} of {on_1}"))
    })
    .await;
    let received = metric_now(&c0, "rumor_peer_events_received_total").await;

    // Publishes for well over a heartbeat (200 ms), so that broker 1 syncs
    // broker 0 while it holds more of broker 0's events than broker 0 last
    // told it it held.
    let mut published = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        let payloads = (0..100).map(|k| format!("m{k}")).collect();
        c0.publish_batch(T, P1, payloads).await.expect("publish");
        published += 100;
    }
    holds_messages(&c1, published, "broker 1 holds every message").await;
    let syncs = metric_now(&c0, "rumor_peer_syncs_received_total").await;
    eventually(REPLICATION, "two more syncs from broker 1", || async {
        metric_now(&c0, "rumor_peer_syncs_received_total").await >= syncs + 2.0
    })
    .await;

    // Read before broker 1's own count, so that every event counted here
    // was made by then.
    let sent_back = metric_now(&c0, "rumor_peer_events_received_total").await - received;
    let after = own_events_of(&c1).await.expect("GET /cluster on broker 1");
    assert!(
        sent_back <= (after - before) as f64,
        "broker 0 received {sent_back} events from broker 1, which made {} of its own",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_one_topic_converge_on_one_creator() {
    let cluster = Cluster::start(3, &[]).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    c0.register_publisher(P1).await.expect("register P1");
    c1.register_publisher(P2).await.expect("register P2");

    let (on0, on1) = tokio::join!(c0.create_topic(T, P1), c1.create_topic(T, P2));
    for (broker, result) in [(0, &on0), (1, &on1)] {
        if let Err(e) = result {
            assert_eq!(
                e.code(),
                Some("topic_exists"),
                "create on broker {broker}: {e}"
            );
        }
    }
    assert!(on0.is_ok() || on1.is_ok(), "{on0:?} {on1:?}");

    let creator = eventually_ok(REPLICATION, "every broker names one creator", || async {
        let mut creators = Vec::new();
        for i in cluster.live() {
            let topics = probe(cluster.client(i).topics()).await?;
            let listed: Vec<_> = topics.iter().filter(|t| t.name == T).collect();
            match listed.as_slice() {
                [topic] => creators.push(topic.created_by.clone()),
                _ => return Err(format!("broker {i}: {topics:?}")),
            }
        }
        if creators.iter().all(|c| *c == creators[0]) {
            Ok(creators[0].clone())
        } else {
            Err(format!("{creators:?}"))
        }
    })
    .await;
    match (&on0, &on1) {
        (Ok(_), Err(_)) => assert_eq!(creator, P1, "only P1's creation succeeded"),
        (Err(_), Ok(_)) => assert_eq!(creator, P2, "only P2's creation succeeded"),
        _ => assert!([P1, P2].contains(&creator.as_str()), "creator {creator}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_racing_publishes_converges() {
    let cluster = Cluster::start(3, &[]).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    c1.register_publisher(P2).await.expect("register P2");
    known_everywhere(&cluster, T).await;

    let publisher = c1.clone();
    let publishing = tokio::spawn(async move {
        let mut accepted = 0;
        for k in 0..200 {
            match publisher.publish(T, P2, &format!("racing #{k}")).await {
                Ok(_) => accepted += 1,
                Err(e) if e.code() == Some("topic_not_found") => break,
                Err(e) => panic!("publish #{k} on broker 1: {e}"),
            }
        }
        accepted
    });
    eventually(REPLICATION, "broker 1 accepted some publishes", || async {
        probe(c1.topic(T)).await.is_ok_and(|t| t.messages >= 5)
    })
    .await;
    c0.delete_topic(T, P1).await.expect("delete on broker 0");
    let accepted = tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("publishing on broker 1 did not end")
        .expect("publishing task");

    let agreed = eventually_ok(REPLICATION, "all brokers agree on the topic", || async {
        let states = topic_states(&cluster, T).await?;
        if states.iter().all(|s| *s == states[0]) {
            Ok(states[0])
        } else {
            Err(format!("(messages or None when not found): {states:?}"))
        }
    })
    .await;
    // The deletion was acknowledged and nothing created the topic again.
    assert_eq!(
        agreed, None,
        "the deleted topic lives on everywhere ({accepted} publishes accepted on broker 1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_position_is_the_same_on_every_broker() {
    let cluster = Cluster::start(3, &[]).await;
    let c0 = cluster.client(0);
    topic_of(&c0, P1, T).await;
    subscribed(&c0, S1, T, StartFrom::Earliest).await;
    let mut sent = Vec::new();
    for k in 0..10 {
        let published = c0.publish(T, P1, &format!("m{k}")).await;
        sent.push(published.expect("publish").id);
    }

    let first = c0
        .pull(S1, &at_once(Some(T), Some(4)))
        .await
        .expect("pull on broker 0");
    assert_eq!(ids(&first.messages), sent[..4]);
    c0.ack(S1, &first.cursor).await.expect("ack on broker 0");

    for i in [1, 2] {
        let client = cluster.client(i);
        let what = format!("S1 on broker {i} gets only the 6 unacknowledged messages");
        eventually_ok(REPLICATION, &what, || async {
            let pulled = probe(client.pull(S1, &pull_all())).await?;
            if ids(&pulled.messages) == sent[4..] {
                Ok(())
            } else {
                Err(format!("{:?}", ids(&pulled.messages)))
            }
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// The subscriber CLI across brokers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_fails_over_without_loss_or_duplicates() {
    const ON_0: usize = 10;
    const P1_ON_1: usize = 5;
    const P2_ON_1: usize = 10;
    const TOTAL: usize = ON_0 + P1_ON_1 + P2_ON_1;
    let mut cluster = Cluster::start(3, &[]).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;

    let peers = cluster.peers_file();
    let count = TOTAL.to_string();
    let args = [
        "--peers",
        peers.to_str().expect("UTF-8 path"),
        "--id",
        S1,
        "--topic",
        T,
        "--from",
        "earliest",
        "--count",
        &count,
    ];
    let mut subscriber = ChildGuard(spawn_piped(env!("CARGO_BIN_EXE_subscriber"), &args));
    let mut lines = lines_of(subscriber.0.stdout.take().expect("stdout"));
    let stderr = read_all(subscriber.0.stderr.take().expect("stderr"));

    for k in 0..ON_0 {
        let published = c0.publish(T, P1, &format!("{P1} {k}")).await;
        published.expect("publish on broker 0");
    }
    let mut printed = Vec::new();
    let deadline = tokio::time::Instant::now() + REPLICATION;
    while printed.len() < ON_0 / 2 {
        let line = tokio::time::timeout_at(deadline, lines.recv()).await;
        match line {
            Ok(Some(line)) => printed.push(line),
            Ok(None) => panic!("the subscriber ended early; printed {printed:?}"),
            Err(_) => panic!("the subscriber printed only {printed:?} from broker 0"),
        }
    }
    // Broker 1 must hold broker 0's messages and the subscription before
    // broker 0 goes, or they would wait for broker 0 to come back.
    eventually(REPLICATION, "broker 1 has broker 0's messages", || async {
        probe(c1.topic(T))
            .await
            .is_ok_and(|t| t.messages == ON_0 as u64 && t.subscribers == 1)
    })
    .await;
    cluster.kill(0);

    c1.register_publisher(P2).await.expect("register P2");
    for k in 0..P1_ON_1.max(P2_ON_1) {
        if k < P1_ON_1 {
            let payload = format!("{P1} {}", ON_0 + k);
            c1.publish(T, P1, &payload).await.expect("publish on 1");
        }
        if k < P2_ON_1 {
            let payload = format!("{P2} {k}");
            c1.publish(T, P2, &payload).await.expect("publish on 1");
        }
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        printed.push(line);
    }
    let status = tokio::task::block_in_place(|| subscriber.wait(Duration::from_secs(5)));
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    assert!(
        status.success(),
        "subscriber exited {status}; stderr: {stderr}; printed {printed:?}"
    );

    assert_eq!(
        printed.len(),
        TOTAL,
        "printed {printed:?}; stderr: {stderr}"
    );
    let distinct: HashSet<&String> = printed.iter().collect();
    assert_eq!(distinct.len(), TOTAL, "printed twice: {printed:?}");
    for (publisher, count) in [(P1, ON_0 + P1_ON_1), (P2, P2_ON_1)] {
        let own: Vec<&str> = printed
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("{publisher} ")))
            .collect();
        let expected: Vec<String> = (0..count).map(|k| k.to_string()).collect();
        assert_eq!(
            own, expected,
            "{publisher}'s messages in order: {printed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_what_a_peer_lacks_for_its_subscribers() {
    let mut cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.client(0), cluster.client(1));
    topic_of(&a, P1, T).await;
    known_everywhere(&cluster, T).await;
    subscribed(&a, S1, T, StartFrom::Earliest).await;
    // While A is paused, S2 subscribes on B: A does not learn of it.
    cluster.pause(0);
    subscribed(&b, "sub-2", T, StartFrom::Earliest).await;
    cluster.pause(1);
    cluster.resume(0);
    // On A, m1 is published and read by S1, the only subscriber A knows.
    a.publish(T, P1, "m1")
        .await
        .expect("publish while B is paused");
    let read = a
        .pull(
            S1,
            &PullQuery {
                auto_ack: Some(true),
                ..at_once(Some(T), None)
            },
        )
        .await
        .expect("S1 reads m1 and acknowledges it");
    assert_eq!(read.messages.len(), 1);
    // A must keep m1 while B lacks it: the retention sweeps (once a second)
    // in this window must all leave it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.topic(T).await.expect("topic").messages, 1, "m1 deleted");
    }
    // B comes back, receives m1 itself, and S2 reads it there.
    cluster.resume(1);
    let got = eventually_ok(REPLICATION, "S2 on B receives m1", || async {
        let pulled = b
            .pull("sub-2", &at_once(Some(T), None))
            .await
            .map_err(|e| e.to_string())?;
        match pulled.messages.first() {
            Some(message) => Ok(message.payload.clone()),
            None => Err("no message yet".to_string()),
        }
    })
    .await;
    assert_eq!(got, "m1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lost_its_data_never_reuses_an_id() {
    let mut cluster = Cluster::start(2, &[]).await;
    let a = cluster.client(0);
    topic_of(&a, P1, T).await;
    let old = a.publish(T, P1, "old").await.expect("publish");
    let b = cluster.client(1);
    eventually(REPLICATION, "B holds the old message", || async {
        b.topic(T).await.map(|t| t.messages == 1).unwrap_or(false)
    })
    .await;

    cluster.kill(0);
    std::fs::remove_dir_all(cluster.broker(0).data_dir()).expect("wipe A's data");
    cluster.restart(0).await;
    let new = a
        .publish(T, P1, "new")
        .await
        .expect("publish after the wipe");
    assert!(
        new.seq > old.seq,
        "{} reuses the seq space of {}",
        new.id,
        old.id
    );
    for client in [&a, &b] {
        eventually(REPLICATION, "both messages everywhere", || async {
            client
                .topic(T)
                .await
                .map(|t| t.messages == 2)
                .unwrap_or(false)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_and_terms_far_above_the_receivers_are_refused_and_replication_goes_on() {
    let cluster = Cluster::start(2, &[]).await;
    let (a, b) = (cluster.client(0), cluster.client(1));
    cluster.agreed_leader(ELECTION).await;
    topic_of(&a, P1, T).await;
    holds_messages(&b, 0, "broker 1 knows the topic").await;
    let before = b.cluster().await.expect("cluster view");

    // A sync and an election message that name broker 0 as the sender (the
    // brokers take peer requests from loopback) with a stamp, or a term, at
    // the largest value a broker accepts at all.
    let huge: u64 = 1 << 62;
    let event = serde_json::json!({
        "origin": "127.0.0.1:1", "seq": 1, "lamport": huge,
        "change": {"register_publisher": {"publisher": "intruder"}}
    });
    let syncs = [
        serde_json::json!({"from": cluster.id(0), "term": before.term, "leader": null,
                           "events": [event]}),
        serde_json::json!({"from": cluster.id(0), "term": huge, "leader": cluster.id(0),
                           "events": []}),
    ];
    for sync in syncs {
        let answer = cluster.broker(1).http_post("/peer/sync", sync).await;
        answer.assert_error(400, "bad_request");
    }
    let election = serde_json::json!({"from": cluster.id(0), "kind": "coordinator", "term": huge});
    let answer = cluster
        .broker(1)
        .http_post("/peer/election", election)
        .await;
    answer.assert_error(400, "bad_request");
    assert!(
        cluster.broker(1).log().contains("refused"),
        "the refusals are logged:\n{}",
        cluster.broker(1).log()
    );

    let after = b.cluster().await.expect("cluster view");
    assert!(after.lamport < 1 << 32, "clock {}", after.lamport);
    assert!(after.term < 1 << 32, "term {}", after.term);
    // Replication goes on both ways.
    subscribed(&b, S1, T, StartFrom::Earliest).await;
    a.publish(T, P1, "from a")
        .await
        .expect("publish on broker 0");
    publish_when_known(&b, P1, "from b").await;
    holds_messages(&a, 2, "broker 0 holds both messages").await;
    holds_messages(&b, 2, "broker 1 holds both messages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_greatest_broker_takes_its_history_back_before_recording_and_all_converge() {
    let mut cluster = Cluster::start(3, &[]).await;
    let greatest = cluster.greatest_live();
    cluster.agreed_leader(ELECTION).await;
    let c = cluster.client(greatest);
    topic_of(&c, P1, T).await;
    let mut old = Vec::new();
    for k in 0..20 {
        old.push(
            c.publish(T, P1, &format!("old {k}"))
                .await
                .expect("publish"),
        );
    }
    for i in cluster.live() {
        holds_messages(
            &cluster.client(i),
            20,
            "every broker holds the old messages",
        )
        .await;
    }

    // The greatest id leads at once when it comes back, with no history.
    cluster.kill(greatest);
    std::fs::remove_dir_all(cluster.broker(greatest).data_dir()).expect("wipe its data");
    cluster.restart(greatest).await;
    let new = c
        .publish(T, P1, "new")
        .await
        .expect("publish after the wipe");
    let last_old = old.iter().map(|p| p.seq).max().unwrap_or(0);
    assert!(
        new.seq > last_old,
        "{} reuses a seq up to {last_old}",
        new.id
    );

    cluster.same_events_everywhere(REPLICATION).await;
}

/// Long polls waiting on a broker of three, in `mode`, read nothing while
/// the cluster is idle (heartbeats and syncs go on), and all wake for a
/// message published on another broker.
async fn idle_polls_read_nothing_then_wake(mode: &str) {
    const POLLS: usize = 10;
    let cluster = Cluster::start(3, &["--mode", mode]).await;
    cluster.agreed_leader(ELECTION).await;
    let (c0, c1) = (cluster.client(0), cluster.client(1));
    topic_of(&c0, P1, T).await;
    known_everywhere(&cluster, T).await;
    let sids: Vec<String> = (0..POLLS).map(|n| format!("idle-{n}")).collect();
    for sid in &sids {
        subscribed(&c1, sid, T, StartFrom::Latest).await;
    }
    // In leader mode a subscription is acknowledged once a majority holds
    // it, which need not include broker 1 yet.
    for (i, client) in [(0, &c0), (1, &c1)] {
        eventually(
            REPLICATION,
            &format!("broker {i} knows the subscriptions"),
            || async {
                probe(client.topic(T))
                    .await
                    .is_ok_and(|t| t.subscribers == POLLS as u64)
            },
        )
        .await;
    }
    let mut polls = JoinSet::new();
    for sid in sids {
        let poller = c1.clone();
        polls.spawn(async move {
            let query = PullQuery {
                topic: Some(T.to_string()),
                wait_ms: Some(30_000),
                ..PullQuery::default()
            };
            poller.pull(&sid, &query).await
        });
    }
    eventually(REPLICATION, "every poll waits on broker 1", || async {
        metric_now(&c1, "rumor_waiting_pulls").await == POLLS as f64
    })
    .await;

    let reads = metric_now(&c1, "rumor_pull_reads_total").await;
    let syncs = metric_now(&c1, "rumor_peer_syncs_received_total").await;
    // About two seconds of heartbeats from both peers.
    eventually(REPLICATION, "twenty more syncs from the peers", || async {
        metric_now(&c1, "rumor_peer_syncs_received_total").await >= syncs + 20.0
    })
    .await;
    assert_eq!(
        metric_now(&c1, "rumor_pull_reads_total").await,
        reads,
        "idle polls read while only heartbeats and syncs came ({mode} mode)"
    );

    let published = c0.publish(T, P1, "wake").await.expect("publish");
    let all_woken = async {
        let mut woken = 0;
        while let Some(pulled) = polls.join_next().await {
            let pulled = pulled.expect("poll task").expect("pull");
            assert_eq!(ids(&pulled.messages), vec![published.id.clone()]);
            woken += 1;
        }
        woken
    };
    let woken = tokio::time::timeout(REPLICATION, all_woken)
        .await
        .expect("the polls answer soon after the publish");
    assert_eq!(woken, POLLS);

    // Broker 1 took the topic and the message from broker 0, which had
    // synced them: in gossip mode without a sync of its own; in leader
    // mode, where a majority's `have` must be on disk, with one.
    let unsynced = metric_now(&c1, "rumor_commits_unsynced_total").await;
    match mode {
        "gossip" => assert!(unsynced > 0.0, "received events synced again"),
        _ => assert_eq!(unsynced, 0.0, "a commit without a sync in {mode} mode"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polls_read_nothing_in_gossip_mode() {
    idle_polls_read_nothing_then_wake("gossip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polls_read_nothing_in_leader_mode() {
    idle_polls_read_nothing_then_wake("leader").await;
}
