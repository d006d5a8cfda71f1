//! What survives a restart: SIGTERM keeps everything, SIGKILL keeps every
//! acknowledged publish; and `broker.db` is readable while the broker runs.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::http::Created;
use client::wire::{Message, Pulled, StartFrom};
use client::{Client, ClientError};
use support::{at_once, eventually, payloads, start_with_topic, subscribed, Broker};
use tokio::task::JoinSet;

const P1: &str = "pub-1";
const P2: &str = "pub-2";
const T1: &str = "t1";
const T2: &str = "t2";
/// How many tasks publish at once under load.
const WRITERS: usize = 4;
/// How many messages each of them publishes at most.
const PER_WRITER: usize = 5000;

/// What `sid` is given now on `topic` (up to 1000 messages), without waiting.
async fn pull_now(client: &Client, sid: &str, topic: &str) -> Pulled {
    let query = at_once(Some(topic), Some(1000));
    client.pull(sid, &query).await.expect("pull")
}

/// Reads every message of `topic` as a new subscriber from earliest,
/// acknowledging as it goes (bounded).
async fn read_everything(client: &Client, sid: &str, topic: &str) -> Vec<Message> {
    subscribed(client, sid, topic, StartFrom::Earliest).await;
    let mut all = Vec::new();
    for _ in 0..1000 {
        let pulled = pull_now(client, sid, topic).await;
        if pulled.messages.is_empty() {
            return all;
        }
        client.ack(sid, &pulled.cursor).await.expect("ack");
        all.extend(pulled.messages);
    }
    panic!("still reading after 1000 pulls");
}

/// What the writers of a load did: the payloads they sent, the acknowledged
/// ones (payload -> id), and how many acknowledgements came so far.
#[derive(Default)]
struct Tally {
    sent: Mutex<HashSet<String>>,
    acked: Mutex<HashMap<String, String>>,
    count: AtomicUsize,
}

/// The tasks of a load; each fails with the first API error it got.
type Writers = JoinSet<Result<(), String>>;

/// Starts `WRITERS` tasks publishing to `topic` as `P1` until the broker
/// stops answering; returns them and what they tally.
fn start_load(client: &Client, topic: &'static str) -> (Writers, Arc<Tally>) {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        writers.spawn(run_writer(client.clone(), topic, w, tally.clone(), started));
    }
    (writers, tally)
}

/// Writer `w`: publishes `w<w>-m<i>` for up to `PER_WRITER` messages and at
/// most 20 s after `started`, stopping at the first failed connection and
/// failing at the first API error.
async fn run_writer(
    client: Client,
    topic: &str,
    w: usize,
    tally: Arc<Tally>,
    started: Instant,
) -> Result<(), String> {
    for i in 0..PER_WRITER {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let payload = format!("w{w}-m{i}");
        tally.sent.lock().unwrap().insert(payload.clone());
        match client.publish(topic, P1, &payload).await {
            Ok(published) => {
                tally.acked.lock().unwrap().insert(payload, published.id);
                tally.count.fetch_add(1, Ordering::SeqCst);
            }
            Err(ClientError::Api { status, code, .. }) => {
                return Err(format!("{payload}: {status} {code}"));
            }
            // Killed or stopped: the connection fails or is refused.
            Err(_) => break,
        }
    }
    Ok(())
}

/// Waits (up to 10 s) until `tally` counts `n` acknowledgements.
async fn wait_acked(tally: &Tally, n: usize, what: &str) {
    eventually(Duration::from_secs(10), what, || {
        let acked = tally.count.load(Ordering::SeqCst);
        async move { acked >= n }
    })
    .await;
}

/// Waits (up to 40 s) for every writer to stop (`what` names that in the
/// failure message); fails if one got an API error.
async fn drain(writers: &mut Writers, what: &str) {
    let drained = tokio::time::timeout(Duration::from_secs(40), async {
        while let Some(done) = writers.join_next().await {
            done.expect("writer task")
                .expect("no API error while publishing");
        }
    });
    drained.await.expect(what);
}

/// The first column of every row that `sql` selects, as text.
fn strings(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    db.prepare(sql)
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test]
async fn everything_survives_sigterm_and_restart() {
    let mut broker = Broker::start().await;
    let client = broker.client();
    client.register_publisher(P1).await.expect("register");
    client.register_publisher(P2).await.expect("register");
    for sid in ["s1", "s2", "s3"] {
        client.register_subscriber(sid).await.expect("register");
    }
    client.create_topic(T1, P1).await.expect("t1");
    client.create_topic(T2, P2).await.expect("t2");
    client.create_topic("gone", P1).await.expect("gone");
    for (sid, topic) in [("s1", T1), ("s2", T1), ("s2", T2), ("s3", T2)] {
        let subscribed = client.subscribe(sid, topic, StartFrom::Earliest).await;
        subscribed.expect("subscribe");
    }
    client.unsubscribe("s3", T2).await.expect("unsubscribe");
    client.delete_topic("gone", P1).await.expect("delete");

    let mut sent = Vec::new();
    let batch = client
        .publish_batch(T1, P1, (1..=5).map(|i| format!("m{i}")).collect())
        .await
        .expect("publish");
    sent.extend(batch.messages);
    sent.push(client.publish(T2, P2, "n1").await.expect("publish"));
    sent.push(client.publish(T2, P2, "n2").await.expect("publish"));
    // s1 acknowledges m1..m3.
    let three = client
        .pull("s1", &at_once(Some(T1), Some(3)))
        .await
        .expect("pull");
    assert_eq!(payloads(&three), ["m1", "m2", "m3"]);
    client.ack("s1", &three.cursor).await.expect("ack");

    let topics_before = client.topics().await.expect("topics");
    let lamport_before = client.cluster().await.expect("cluster").lamport;
    let max_seq = sent.iter().map(|m| m.seq).max().expect("sent");

    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    broker.restart().await;

    let mut topics_after = client.topics().await.expect("topics");
    let mut expected = topics_before.clone();
    topics_after.sort_by(|a, b| a.name.cmp(&b.name));
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(topics_after, expected, "topics changed across the restart");
    assert!(
        !topics_after.iter().any(|t| t.name == "gone"),
        "a deleted topic came back"
    );
    assert!(client.cluster().await.expect("cluster").lamport >= lamport_before);

    // Registrations and topics are still there.
    for publisher in [P1, P2] {
        assert_eq!(
            client
                .register_publisher(publisher)
                .await
                .expect("register"),
            Created::Existing,
            "{publisher} was forgotten"
        );
    }
    for sid in ["s1", "s2", "s3"] {
        assert_eq!(
            client.register_subscriber(sid).await.expect("register"),
            Created::Existing,
            "{sid} was forgotten"
        );
    }
    let exists = client.create_topic(T1, P1).await.expect_err("t1 exists");
    assert_eq!(exists.code(), Some("topic_exists"));

    // Acknowledged positions and unacknowledged messages are kept.
    assert_eq!(payloads(&pull_now(&client, "s1", T1).await), ["m4", "m5"]);
    let s2 = pull_now(&client, "s2", T1).await;
    assert_eq!(payloads(&s2), ["m1", "m2", "m3", "m4", "m5"]);
    let ids: Vec<&str> = s2.messages.iter().map(|m| m.id.as_str()).collect();
    let sent_ids: Vec<&str> = sent[..5].iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, sent_ids, "message ids changed across the restart");
    assert_eq!(payloads(&pull_now(&client, "s2", T2).await), ["n1", "n2"]);
    // Subscriptions are kept; the unsubscribe too.
    assert_eq!(
        client
            .subscribe("s1", T1, StartFrom::Earliest)
            .await
            .expect("subscribe"),
        Created::Existing
    );
    let not = client
        .pull("s3", &at_once(Some(T2), Some(1000)))
        .await
        .expect_err("s3 unsubscribed");
    assert_eq!(not.code(), Some("not_subscribed"));

    // The event counter goes on; no id is reused.
    let next = client.publish(T1, P1, "m6").await.expect("publish");
    assert!(
        next.seq > max_seq,
        "seq {} after restart, before: up to {max_seq}",
        next.seq
    );
    assert!(
        next.lamport > lamport_before,
        "{next:?} vs {lamport_before}"
    );
    assert!(!sent.iter().any(|m| m.id == next.id), "id reused: {next:?}");
    assert_eq!(
        payloads(&pull_now(&client, "s1", T1).await),
        ["m4", "m5", "m6"]
    );
}

/// A broker stopped cleanly leaves everything in `broker.db` itself, its
/// log empty: a copy of that one file (a backup, a look with `sqlite3`
/// elsewhere) holds every message, the last ones too.
#[tokio::test]
async fn sigterm_leaves_every_message_in_the_database_file_itself() {
    let mut broker = Broker::start().await;
    let client = broker.client();
    client.register_publisher(P1).await.expect("register");
    client.create_topic(T1, P1).await.expect("t1");
    let sent: Vec<String> = (1..=300).map(|i| format!("m{i}")).collect();
    for chunk in sent.chunks(100) {
        let batch = client.publish_batch(T1, P1, chunk.to_vec()).await;
        batch.expect("publish");
    }

    let status = broker.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let log = broker.data_dir().join("broker.db-wal");
    let log_bytes = std::fs::metadata(&log).map_or(0, |meta| meta.len());
    assert_eq!(log_bytes, 0, "{} left behind", log.display());
    let copy = tempfile::tempdir().expect("temp dir");
    let alone = copy.path().join("broker.db");
    std::fs::copy(broker.db_path(), &alone).expect("copy broker.db");
    let db = rusqlite::Connection::open(&alone).expect("open the copy");
    let stored = strings(
        &db,
        "SELECT payload FROM messages WHERE topic = 't1' ORDER BY seq",
    );
    assert_eq!(stored, sent, "the copy of broker.db alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_publishes_survive_kill_9() {
    const KILL_AFTER: usize = 1000;
    const TOPIC: &str = "stream";

    let (mut broker, client) = start_with_topic(&["--durability", "fsync"], P1, TOPIC).await;
    let (mut writers, tally) = start_load(&client, TOPIC);
    wait_acked(&tally, KILL_AFTER, "publishes acknowledged before the kill").await;
    broker.kill();
    let killed_at = tally.count.load(Ordering::SeqCst);
    drain(&mut writers, "writers stopped after the kill").await;
    assert!(
        tally.sent.lock().unwrap().len() < WRITERS * PER_WRITER,
        "the writers finished before the kill"
    );

    broker.restart().await;
    let sent = tally.sent.lock().unwrap().clone();
    let acked = tally.acked.lock().unwrap().clone();
    assert!(acked.len() >= killed_at);

    // broker.db: every acknowledged payload exactly once, nothing unsent.
    let stored = broker.stored_payloads(TOPIC);
    let mut occurrences = HashMap::<&str, usize>::new();
    for payload in &stored {
        *occurrences.entry(payload.as_str()).or_default() += 1;
        assert!(sent.contains(payload), "stored but never sent: {payload:?}");
    }
    for payload in acked.keys() {
        assert_eq!(
            occurrences.get(payload.as_str()).copied(),
            Some(1),
            "acknowledged {payload:?} is not stored exactly once"
        );
    }
    assert!(
        occurrences.values().all(|&n| n == 1),
        "a payload is stored twice"
    );

    // Through the API: the same, with the acknowledged ids.
    let read = read_everything(&client, "reader", TOPIC).await;
    let mut seen = HashMap::<&str, &Message>::new();
    for m in &read {
        assert!(sent.contains(&m.payload), "never sent: {m:?}");
        assert!(
            seen.insert(m.payload.as_str(), m).is_none(),
            "delivered twice: {m:?}"
        );
    }
    for (payload, id) in &acked {
        let m = seen
            .get(payload.as_str())
            .unwrap_or_else(|| panic!("acknowledged {payload} ({id}) is lost"));
        assert_eq!(&m.id, id, "{payload} changed its id");
    }
    assert_eq!(read.len(), stored.len());
    eprintln!(
        "kill -9 after {killed_at} acks: {} sent, {} acknowledged, {} stored",
        sent.len(),
        acked.len(),
        stored.len()
    );

    // Seqs go on after the kill: no id is reused.
    let max_seq = read.iter().map(|m| m.seq).max().expect("messages");
    let next = client.publish(TOPIC, P1, "after").await.expect("publish");
    assert!(
        next.seq > max_seq,
        "seq {} after restart, stored up to {max_seq}",
        next.seq
    );
}

#[tokio::test]
async fn storage_is_readable_while_the_broker_runs() {
    let (broker, client) = start_with_topic(&[], P1, T1).await;
    client.create_topic(T2, P1).await.expect("topic");
    let texts = [
        "plain",
        "héllo ✓ ünïcødé",
        "with \"quotes\" and 'apostrophes'",
        "two\nlines",
    ];
    for text in texts {
        client.publish(T1, P1, text).await.expect("publish");
    }
    client.publish(T2, P1, "elsewhere").await.expect("publish");

    let db = broker.open_db_read_only();
    // `messages` is a view over `message_rows` (migration 0015).
    let tables = strings(
        &db,
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
    );
    for table in ["topics", "messages"] {
        assert!(
            tables.iter().any(|t| t == table),
            "no table {table}: {tables:?}"
        );
    }
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    let types = strings(&db, "SELECT DISTINCT typeof(payload) FROM messages");
    assert_eq!(types, ["text"], "payload column types");

    let mut stored = broker.stored_messages();
    stored.sort();
    let mut expected: Vec<(String, String)> = texts
        .iter()
        .map(|t| (T1.to_string(), t.to_string()))
        .chain([(T2.to_string(), "elsewhere".to_string())])
        .collect();
    expected.sort();
    assert_eq!(stored, expected);

    // The open reader does not block the broker, and an acknowledged publish
    // is in the file at once.
    client.publish(T2, P1, "while open").await.expect("publish");
    let found: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE topic = ?1 AND payload = ?2",
            [T2, "while open"],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(found, 1);
    drop(db);
    assert_eq!(client.topic(T2).await.expect("topic").messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_exits_zero_and_keeps_every_acknowledged_publish() {
    const STOP_AFTER: usize = 300;
    const TOPIC: &str = "stream";

    let (mut broker, client) = start_with_topic(&[], P1, TOPIC).await;
    let (mut writers, tally) = start_load(&client, TOPIC);
    wait_acked(&tally, STOP_AFTER, "publishes acknowledged before SIGTERM").await;
    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| broker.terminate());
    assert!(
        status.success(),
        "exit status after SIGTERM under load: {status}"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        stopping.elapsed()
    );
    drain(&mut writers, "writers stopped after SIGTERM").await;

    broker.restart().await;
    let acked = tally.acked.lock().unwrap().clone();
    let read = read_everything(&client, "reader", TOPIC).await;
    let by_payload: HashMap<&str, &str> = read
        .iter()
        .map(|m| (m.payload.as_str(), m.id.as_str()))
        .collect();
    assert_eq!(by_payload.len(), read.len(), "a payload is stored twice");
    for (payload, id) in &acked {
        assert_eq!(
            by_payload.get(payload.as_str()),
            Some(&id.as_str()),
            "acknowledged {payload} ({id}) is lost or changed"
        );
    }
}

#[tokio::test]
async fn the_database_and_its_log_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let broker = Broker::start().await;
    broker
        .client()
        .register_publisher("P1")
        .await
        .expect("register");
    for name in ["broker.db", "broker.db-wal", "broker.db-shm"] {
        let path = broker.data_dir().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}
