//! API.md §5.1–§5.3 end to end: the cluster key between brokers (forged,
//! unsigned and replayed peer requests refused, nothing changed), client
//! tokens and permissions (401/403 per endpoint class, SIGHUP revocation,
//! the CLIs' `--token-file` / `RUMOR_TOKEN`), and TLS (a cluster over
//! HTTPS, a client with the wrong CA, plain HTTP to a TLS port).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use client::peer::{ElectionKind, ElectionMessage, PeerChange, PeerEvent, SyncRequest};
use client::peer_auth::{self, ClusterKey, SignedRequest};
use client::wire::StartFrom;
use client::{Client, Connect};
use serde_json::json;
use support::*;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "0123456789abcdef0123456789abcdef-test-cluster-key";
const WAIT: Duration = Duration::from_secs(15);

/// A directory with the files a secured broker reads.
struct Secrets {
    dir: TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write a secret file");
        net::readable_by_all(self.dir.path());
        path.to_str().expect("UTF-8 temp path").to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// ---------------------------------------------------------------------------
// §5.1 between brokers

/// Sends `body` to a broker's `path` with extra headers; raw.
async fn post_with(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    post_signed(url, headers, body).await.0
}

/// `post_with`, and the answer's signature header, if any.
async fn post_signed(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (Answer, Option<String>) {
    client::connect::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let signature = response
        .headers()
        .get(peer_auth::SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.expect("body");
    let answer = Answer {
        status,
        content_type,
        text,
    };
    (answer, signature)
}

/// The headers of a POST to broker `target`'s `path` signed with `key` at
/// `time_ms` with `nonce`.
fn signed_headers(
    key: &ClusterKey,
    (target, path): (&str, &str),
    body: &[u8],
    time_ms: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let body_sha256 = peer_auth::body_digest(body);
    let signature = key.sign_request(&SignedRequest {
        method: "POST",
        path,
        target,
        time_ms,
        nonce,
        forwarded: b"",
        authorization: b"",
        body_sha256: &body_sha256,
    });
    vec![
        (peer_auth::TIME_HEADER, time_ms.to_string()),
        (peer_auth::NONCE_HEADER, nonce.to_string()),
        (peer_auth::SIGNATURE_HEADER, signature),
        (peer_auth::BODY_HEADER, body_sha256),
    ]
}

fn sync_body(from: &str, term: u64, events: Vec<PeerEvent>) -> Vec<u8> {
    serde_json::to_vec(&SyncRequest {
        from: from.to_string(),
        term,
        leader: Some(from.to_string()),
        events,
        committed: None,
    })
    .unwrap()
}

fn event(origin: &str, seq: u64, change: PeerChange) -> PeerEvent {
    PeerEvent {
        origin: origin.to_string(),
        seq,
        lamport: 1,
        change,
    }
}

/// What a forger could send: each kind of harm the issue lists.
fn forged_syncs(peer: &str) -> Vec<(&'static str, Vec<u8>)> {
    let publish = PeerChange::Publish {
        topic: "t".to_string(),
        publisher: "p".to_string(),
        payload: "forged".to_string(),
        published_at_ms: 1,
        headers: Default::default(),
        msg_id: None,
    };
    vec![
        (
            "a message under a made-up origin",
            sync_body(peer, 1, vec![event("127.0.0.1:1", 1, publish.clone())]),
        ),
        (
            "a message taking a real broker's next seq",
            sync_body(peer, 1, vec![event(peer, 1, publish)]),
        ),
        (
            "a topic deletion",
            sync_body(
                peer,
                1,
                vec![event(
                    peer,
                    1,
                    PeerChange::DeleteTopic {
                        topic: "t".to_string(),
                        publisher: "p".to_string(),
                    },
                )],
            ),
        ),
        (
            "a fake member and a mode change",
            sync_body(
                peer,
                1,
                vec![
                    event(
                        peer,
                        1,
                        PeerChange::AddMember {
                            host: "127.0.0.1".to_string(),
                            port: 1,
                        },
                    ),
                    event(
                        peer,
                        2,
                        PeerChange::SetMode {
                            mode: "leader".to_string(),
                        },
                    ),
                ],
            ),
        ),
        (
            "a heartbeat with a higher term",
            sync_body(peer, 99, vec![]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_not_signed_with_the_cluster_key_are_refused_and_change_nothing() {
    let secrets = Secrets::new();
    let key_file = secrets.write("cluster.key", KEY);
    let other_key = secrets.write("other.key", &"x".repeat(40));
    // A peer that never runs: its id is one the broker knows (two ports
    // taken at once: one after the other, they can be the same).
    let [absent, port] = free_ports(2)[..] else {
        unreachable!("two ports")
    };
    let peers = secrets.write("peers.csv", &format!("{HOST},{absent}\n"));
    let broker =
        Broker::start_on(port, &["--cluster-key-file", &key_file, "--peers", &peers]).await;
    let client = broker.client();
    topic_of(&client, "p", "t").await;
    client.publish("t", "p", "real").await.unwrap();
    let before = (broker.event_log(), client.cluster().await.unwrap());
    let peer = format!("{HOST}:{absent}");
    let wrong = ClusterKey::load(Path::new(&other_key)).unwrap();
    for (what, body) in forged_syncs(&peer) {
        let url = format!("{}/peer/sync", broker.url());
        post_with(&url, &[], body.clone())
            .await
            .assert_error(401, "unauthenticated");
        // The same path spelt with an escape routes to the same handler.
        let escaped = format!("{}/%70eer/sync", broker.url());
        let answer = post_with(&escaped, &[], body.clone()).await;
        assert_eq!(
            answer.status, 401,
            "{what} to /%70eer/sync: {}",
            answer.text
        );
        let headers = signed_headers(
            &wrong,
            (&broker.id(), "/peer/sync"),
            &body,
            peer_auth::now_ms(),
            &peer_auth::new_nonce(),
        );
        let answer = post_with(&url, &headers, body).await;
        assert_eq!(
            answer.status, 401,
            "{what} signed with another key: {}",
            answer.text
        );
    }
    let election = serde_json::to_vec(&ElectionMessage {
        from: peer.clone(),
        kind: ElectionKind::Coordinator,
        term: 50,
    })
    .unwrap();
    post_with(&format!("{}/peer/election", broker.url()), &[], election)
        .await
        .assert_error(401, "unauthenticated");
    // A write dressed up as one a follower forwards.
    let forwarded = serde_json::to_vec(&json!({"publisher": "p", "payload": "x"})).unwrap();
    post_with(
        &format!("{}/topics/t/messages", broker.url()),
        &[("x-rumor-forwarded", "cluster".to_string())],
        forwarded,
    )
    .await
    .assert_error(401, "unauthenticated");
    let after = (broker.event_log(), client.cluster().await.unwrap());
    assert_eq!(before.0, after.0, "the event log changed");
    assert_eq!(
        (
            &before.1.members,
            &before.1.mode,
            before.1.term,
            &before.1.leader
        ),
        (
            &after.1.members,
            &after.1.mode,
            after.1.term,
            &after.1.leader
        )
    );
    assert_eq!(broker.stored_payloads("t"), ["real"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_peer_request_is_taken_once_and_only_while_fresh() {
    let secrets = Secrets::new();
    let key_file = secrets.write("cluster.key", KEY);
    let [absent, port] = free_ports(2)[..] else {
        unreachable!("two ports")
    };
    let peers = secrets.write("peers.csv", &format!("{HOST},{absent}\n"));
    let broker =
        Broker::start_on(port, &["--cluster-key-file", &key_file, "--peers", &peers]).await;
    let key = ClusterKey::load(Path::new(&key_file)).unwrap();
    let url = format!("{}/peer/sync", broker.url());
    let body = sync_body(&format!("{HOST}:{absent}"), 0, vec![]);
    let nonce = peer_auth::new_nonce();
    let to = (broker.id(), "/peer/sync");
    let to = (to.0.as_str(), to.1);
    let headers = signed_headers(&key, to, &body, peer_auth::now_ms(), &nonce);
    let (answer, signature) = post_signed(&url, &headers, body.clone()).await;
    answer.assert_status(200);
    // The answer is signed for this request.
    let signature = signature.expect("a signed answer");
    let text = answer.text.as_bytes();
    assert!(key.verifies_answer(&nonce, 200, text, &signature));
    assert!(!key.verifies_answer(&peer_auth::new_nonce(), 200, text, &signature));
    // Recorded and sent again: refused.
    post_with(&url, &headers, body.clone())
        .await
        .assert_error(401, "unauthenticated");
    // Signed a minute ago: refused.
    let stale = signed_headers(
        &key,
        to,
        &body,
        peer_auth::now_ms() - 60_000,
        &peer_auth::new_nonce(),
    );
    post_with(&url, &stale, body.clone())
        .await
        .assert_error(401, "unauthenticated");
    // Its signature moved onto another body: refused.
    let other = sync_body(&format!("{HOST}:{absent}"), 1, vec![]);
    let moved = signed_headers(
        &key,
        to,
        &body,
        peer_auth::now_ms(),
        &peer_auth::new_nonce(),
    );
    post_with(&url, &moved, other)
        .await
        .assert_error(401, "unauthenticated");
    // Signed for another broker of the cluster: refused here.
    let elsewhere = signed_headers(
        &key,
        (&format!("{HOST}:{absent}"), "/peer/sync"),
        &body,
        peer_auth::now_ms(),
        &peer_auth::new_nonce(),
    );
    post_with(&url, &elsewhere, body.clone())
        .await
        .assert_error(401, "unauthenticated");
    assert!(broker.log().contains("a replay"), "{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_with_one_cluster_key_replicate_and_elect_and_another_key_is_shut_out() {
    let secrets = Secrets::new();
    let key_file = secrets.write("cluster.key", KEY);
    let cluster = Cluster::start(3, &["--cluster-key-file", &key_file]).await;
    cluster.agreed_leader(WAIT).await;
    topic_of(&cluster.client(0), "p", "t").await;
    cluster.client(0).publish("t", "p", "hello").await.unwrap();
    for i in 0..3 {
        let broker = cluster.broker(i);
        eventually(WAIT, "the message reaches every broker", || async {
            broker.stored_payloads("t") == ["hello"]
        })
        .await;
    }

    // Two brokers that name each other, each with a key of its own.
    let ports = free_ports(2);
    let peers = secrets.write(
        "pair.csv",
        &ports
            .iter()
            .map(|p| format!("{HOST},{p}\n"))
            .collect::<String>(),
    );
    let other_key = secrets.write("other.key", &"y".repeat(32));
    let a = Broker::start_on(
        ports[0],
        &["--cluster-key-file", &key_file, "--peers", &peers],
    )
    .await;
    let b = Broker::start_on(
        ports[1],
        &["--cluster-key-file", &other_key, "--peers", &peers],
    )
    .await;
    topic_of(&a.client(), "p", "t").await;
    // Both send syncs every 200 ms; none gets through in 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for broker in [&a, &b] {
        let received = metric_now(&broker.client(), "rumor_peer_syncs_received_total").await;
        assert_eq!(received, 0.0, "a sync under another key was taken");
    }
    assert!(
        b.client().topic("t").await.is_err(),
        "the topic crossed keys"
    );
}

#[tokio::test]
async fn without_a_cluster_key_a_peer_on_another_machine_stops_the_start() {
    let secrets = Secrets::new();
    let port = free_port().to_string();
    let remote = secrets.write("remote.csv", "192.0.2.10,3000\n");
    let short = secrets.write("short.key", "too short");
    for (args, wanted) in [
        (vec!["--peers", remote.as_str()], "--cluster-key-file"),
        (vec!["--join", "192.0.2.10:3000"], "--cluster-key-file"),
        (vec!["--cluster-key-file", short.as_str()], "at least 32"),
        (
            vec!["--join", "127.0.0.1:1", "--auth-file", "/none/auth.toml"],
            "--join with --auth-file needs --cluster-key-file",
        ),
    ] {
        let mut all = vec!["--host", HOST, "--port", port.as_str()];
        all.extend(&args);
        let output = run_bin(env!("CARGO_BIN_EXE_broker"), &all, "", WAIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------
// §5.2 clients

/// `broker token`: (token, the token_sha256 line).
fn new_token() -> (String, String) {
    let output = run_bin(env!("CARGO_BIN_EXE_broker"), &["token"], "", WAIT);
    assert_success(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let token = lines.next().unwrap().strip_prefix("token = ").unwrap();
    let hash_line = lines.next().unwrap();
    assert!(token.len() >= 32, "{text}");
    (token.to_string(), hash_line.to_string())
}

/// Principals: alice (publishes news and orders.*, acts as alice and
/// worker-*), bob (subscribes to news as bob), root (admin; acts as and
/// publishes to bench-*, for `bench`).
struct Tokens {
    alice: String,
    bob: String,
    root: String,
    file: String,
}

fn auth_file(secrets: &Secrets) -> Tokens {
    let (alice, alice_hash) = new_token();
    let (bob, bob_hash) = new_token();
    let (root, root_hash) = new_token();
    let file = secrets.write(
        "auth.toml",
        &format!(
            r#"
[[principal]]
name = "alice"
{alice_hash}
act_as = ["alice", "worker-*"]
publish = ["news", "orders.*"]
subscribe = []

[[principal]]
name = "bob"
{bob_hash}
act_as = ["bob"]
subscribe = ["news"]

[[principal]]
name = "root"
{root_hash}
act_as = ["bench-*"]
publish = ["bench-*"]
admin = true
"#
        ),
    );
    Tokens {
        alice,
        bob,
        root,
        file,
    }
}

fn client_as(broker: &Broker, token: &str) -> Client {
    let connect = Connect::default().token(client::connect::Token::new(token).unwrap());
    Client::with(broker.url(), &connect).unwrap()
}

/// A raw request with a bearer token (or none).
async fn send_as(
    broker: &Broker,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    client::connect::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut request = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", broker.url()),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    if status == 401 {
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer"),
            "{method} {path}: 401 without the challenge"
        );
    }
    Answer {
        status,
        content_type,
        text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_auth_file_every_endpoint_but_health_needs_a_known_token() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let broker = Broker::start_with(&["--auth-file", &tokens.file]).await;
    send_as(&broker, None, "GET", "/health", None)
        .await
        .assert_status(200);
    let requests: Vec<(&str, &str, Option<serde_json::Value>)> = vec![
        ("GET", "/topics", None),
        ("GET", "/topics/news", None),
        ("GET", "/cluster", None),
        ("GET", "/metrics", None),
        ("POST", "/publishers", Some(json!({"id": "alice"}))),
        ("POST", "/subscribers", Some(json!({"id": "bob"}))),
        (
            "POST",
            "/topics",
            Some(json!({"name": "news", "publisher": "alice"})),
        ),
        ("DELETE", "/topics/news?publisher=alice", None),
        (
            "POST",
            "/topics/news/messages",
            Some(json!({"publisher": "alice", "payload": "x"})),
        ),
        (
            "POST",
            "/subscribers/bob/subscriptions",
            Some(json!({"topic": "news"})),
        ),
        ("DELETE", "/subscribers/bob/subscriptions/news", None),
        ("GET", "/subscribers/bob/messages?wait_ms=0", None),
        ("POST", "/subscribers/bob/ack", Some(json!({"cursor": "x"}))),
        ("PUT", "/cluster/mode", Some(json!({"mode": "gossip"}))),
        (
            "POST",
            "/cluster/members",
            Some(json!({"host": "127.0.0.1", "port": 1})),
        ),
        ("DELETE", "/cluster/members/127.0.0.1:1", None),
        ("GET", "/no/such/path", None),
    ];
    for (method, path, body) in &requests {
        for token in [None, Some("not-a-known-token")] {
            send_as(&broker, token, method, path, body.clone())
                .await
                .assert_error(401, "unauthenticated");
        }
    }
    // Any valid token reads.
    for path in ["/topics", "/cluster", "/metrics"] {
        send_as(&broker, Some(&tokens.bob), "GET", path, None)
            .await
            .assert_status(200);
    }
    // Nothing was written by the refused requests.
    assert!(broker
        .event_log()
        .iter()
        .all(|(_, _, _, kind)| !kind.contains("publish")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_decide_each_endpoint_class() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let broker = Broker::start_with(&["--auth-file", &tokens.file]).await;
    let (alice, bob, root) = (
        Some(tokens.alice.as_str()),
        Some(tokens.bob.as_str()),
        Some(tokens.root.as_str()),
    );
    let forbidden: Vec<(Option<&str>, &str, &str, Option<serde_json::Value>)> = vec![
        // Registering as someone not in act_as.
        (alice, "POST", "/publishers", Some(json!({"id": "bob"}))),
        (bob, "POST", "/subscribers", Some(json!({"id": "alice"}))),
        // Creating and publishing outside `publish`, or as another publisher.
        (
            alice,
            "POST",
            "/topics",
            Some(json!({"name": "secret", "publisher": "alice"})),
        ),
        (
            bob,
            "POST",
            "/topics",
            Some(json!({"name": "news", "publisher": "bob"})),
        ),
        (
            alice,
            "POST",
            "/topics/secret/messages",
            Some(json!({"publisher": "alice", "payload": "x"})),
        ),
        (
            alice,
            "POST",
            "/topics/news/messages",
            Some(json!({"publisher": "bob", "payload": "x"})),
        ),
        // Subscribing outside `subscribe`, acting as another subscriber.
        (
            bob,
            "POST",
            "/subscribers/bob/subscriptions",
            Some(json!({"topic": "orders.eu"})),
        ),
        (
            alice,
            "POST",
            "/subscribers/bob/subscriptions",
            Some(json!({"topic": "news"})),
        ),
        (alice, "GET", "/subscribers/bob/messages?wait_ms=0", None),
        (
            bob,
            "GET",
            "/subscribers/bob/messages?wait_ms=0&topic=orders.eu",
            None,
        ),
        (
            alice,
            "POST",
            "/subscribers/bob/ack",
            Some(json!({"cursor": "x"})),
        ),
        (alice, "DELETE", "/subscribers/bob/subscriptions/news", None),
        // Deleting as someone else; changing the cluster without admin.
        (bob, "DELETE", "/topics/news?publisher=alice", None),
        (
            alice,
            "PUT",
            "/cluster/mode",
            Some(json!({"mode": "gossip"})),
        ),
        (
            alice,
            "POST",
            "/cluster/members",
            Some(json!({"host": "127.0.0.1", "port": 1})),
        ),
        (bob, "DELETE", "/cluster/members/127.0.0.1:1", None),
    ];
    // What each principal may do.
    let allowed = [
        (alice, "/publishers", json!({"id": "alice"})),
        (
            alice,
            "/topics",
            json!({"name": "news", "publisher": "alice"}),
        ),
        (bob, "/subscribers", json!({"id": "bob"})),
        (
            bob,
            "/subscribers/bob/subscriptions",
            json!({"topic": "news", "from": "earliest"}),
        ),
    ];
    for (token, path, body) in allowed {
        send_as(&broker, token, "POST", path, Some(body))
            .await
            .assert_status(201);
    }
    for (token, method, path, body) in &forbidden {
        send_as(&broker, *token, method, path, body.clone())
            .await
            .assert_code(403, "forbidden", &format!("{method} {path}"));
    }
    let alice_client = client_as(&broker, &tokens.alice);
    alice_client.publish("news", "alice", "hi").await.unwrap();
    let bob_client = client_as(&broker, &tokens.bob);
    let pulled = bob_client
        .pull("bob", &at_once(Some("news"), None))
        .await
        .unwrap();
    assert_eq!(payloads(&pulled), ["hi"]);
    bob_client.ack("bob", &pulled.cursor).await.unwrap();
    // The owner deletes its topic; an admin deletes anyone's.
    send_as(
        &broker,
        alice,
        "POST",
        "/topics",
        Some(json!({"name": "orders.eu", "publisher": "alice"})),
    )
    .await
    .assert_status(201);
    send_as(
        &broker,
        alice,
        "DELETE",
        "/topics/orders.eu?publisher=alice",
        None,
    )
    .await
    .assert_status(204);
    send_as(&broker, root, "DELETE", "/topics/news", None)
        .await
        .assert_status(204);
    send_as(
        &broker,
        root,
        "PUT",
        "/cluster/mode",
        Some(json!({"mode": "gossip"})),
    )
    .await
    .assert_status(200);
    assert_eq!(broker.stored_payloads("news").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_auth_file_and_a_broken_one_keeps_the_last() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let broker = Broker::start_with(&["--auth-file", &tokens.file]).await;
    send_as(&broker, Some(&tokens.alice), "GET", "/topics", None)
        .await
        .assert_status(200);
    // A file that does not parse: logged, the principals stay.
    let good = std::fs::read_to_string(&tokens.file).unwrap();
    std::fs::write(&tokens.file, "[[principal]\n").unwrap();
    signal(broker.pid(), libc::SIGHUP);
    eventually(WAIT, "the broken file is reported", || async {
        broker
            .log()
            .contains("the previous principals stay in force")
    })
    .await;
    send_as(&broker, Some(&tokens.alice), "GET", "/topics", None)
        .await
        .assert_status(200);
    // Alice removed: refused within a second of the reload, without a restart.
    let without_alice = good
        .split("[[principal]]")
        .filter(|p| !p.contains("\"alice\""))
        .collect::<Vec<_>>()
        .join("[[principal]]");
    std::fs::write(&tokens.file, without_alice).unwrap();
    signal(broker.pid(), libc::SIGHUP);
    let reloaded = std::time::Instant::now();
    eventually(
        Duration::from_secs(1),
        "alice's token is refused",
        || async {
            send_as(&broker, Some(&tokens.alice), "GET", "/topics", None)
                .await
                .status
                == 401
        },
    )
    .await;
    assert!(reloaded.elapsed() < Duration::from_secs(1));
    send_as(&broker, Some(&tokens.bob), "GET", "/topics", None)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_bad_auth_file_stops_the_start_with_one_line() {
    let secrets = Secrets::new();
    let bad = secrets.write(
        "bad.toml",
        "[[principal]]\nname = \"a\"\ntoken_sha256 = \"nothex\"\n",
    );
    let port = free_port().to_string();
    let output = run_bin(
        env!("CARGO_BIN_EXE_broker"),
        &["--host", HOST, "--port", &port, "--auth-file", &bad],
        "",
        WAIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("bad.toml") && stderr.contains("token_sha256"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
}

/// Runs a CLI with extra environment; kills it after `WAIT`.
fn run_cli(program: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args).env_remove(client::connect::TOKEN_ENV);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = support::ChildGuard(
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());
    let status = child.wait(WAIT);
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clis_take_a_token_file_or_rumor_token() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let broker = Broker::start_with(&["--auth-file", &tokens.file]).await;
    let port = broker.port.to_string();
    let alice_file = secrets.write("alice.token", &format!("{}\n", tokens.alice));
    let publisher = env!("CARGO_BIN_EXE_publisher");
    let publish = [
        "--host", HOST, "--port", &port, "--id", "alice", "--topic", "news", "--create", "one",
    ];
    let with_file: Vec<&str> = publish
        .iter()
        .copied()
        .chain(["--token-file", alice_file.as_str()])
        .collect();

    let refused = run_cli(publisher, &publish, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unauthenticated"), "{stderr}");
    assert_success(&run_cli(publisher, &with_file, &[]));
    assert_success(&run_cli(
        publisher,
        &publish,
        &[(client::connect::TOKEN_ENV, &tokens.alice)],
    ));
    let forbidden = run_cli(
        publisher,
        &publish,
        &[(client::connect::TOKEN_ENV, &tokens.bob)],
    );
    let stderr = String::from_utf8_lossy(&forbidden.stderr);
    assert!(
        !forbidden.status.success() && stderr.contains("forbidden"),
        "{stderr}"
    );

    // The subscriber reads them back with bob's token.
    let bob_file = secrets.write("bob.token", &tokens.bob);
    let subscribe = [
        "--host",
        HOST,
        "--port",
        &port,
        "--id",
        "bob",
        "--topic",
        "news",
        "--from",
        "earliest",
        "--count",
        "2",
        "--token-file",
        &bob_file,
    ];
    let output = run_cli(env!("CARGO_BIN_EXE_subscriber"), &subscribe, &[]);
    assert_success(&output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "one\none\n");

    // bench too: root may act as and publish to bench-*.
    let bench = [
        "publish",
        "--host",
        HOST,
        "--port",
        &port,
        "--messages",
        "20",
        "--connections",
        "2",
    ];
    let output = run_cli(env!("CARGO_BIN_EXE_bench"), &bench, &[]);
    assert!(!output.status.success(), "bench ran without a token");
    let output = run_cli(
        env!("CARGO_BIN_EXE_bench"),
        &bench,
        &[(client::connect::TOKEN_ENV, &tokens.root)],
    );
    assert_success(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_leader_mode_a_follower_forwards_the_clients_token() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let key_file = secrets.write("cluster.key", KEY);
    let cluster = Cluster::start(
        3,
        &[
            "--mode",
            "leader",
            "--auth-file",
            &tokens.file,
            "--cluster-key-file",
            &key_file,
        ],
    )
    .await;
    // broker 0 has the least id: a follower once the election settles.
    let follower = cluster.broker(0);
    let alice = client_as(follower, &tokens.alice);
    let bob = client_as(follower, &tokens.bob);
    eventually_ok(WAIT, "a leader takes writes", || async {
        alice
            .register_publisher("alice")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    alice.create_topic("news", "alice").await.unwrap();
    bob.register_subscriber("bob").await.unwrap();
    bob.subscribe("bob", "news", StartFrom::Earliest)
        .await
        .unwrap();
    alice
        .publish("news", "alice", "through a follower")
        .await
        .unwrap();
    send_as(
        follower,
        Some(&tokens.bob),
        "POST",
        "/topics/news/messages",
        Some(json!({"publisher": "bob", "payload": "x"})),
    )
    .await
    .assert_code(
        403,
        "forbidden",
        "a forwarded publish without the permission",
    );
    send_as(
        follower,
        None,
        "POST",
        "/topics/news/messages",
        Some(json!({"publisher": "alice", "payload": "x"})),
    )
    .await
    .assert_error(401, "unauthenticated");
    // An auto-acknowledged pull on the follower acknowledges through the leader.
    let query = client::wire::PullQuery {
        topic: Some("news".to_string()),
        max: None,
        wait_ms: Some(5_000),
        auto_ack: Some(true),
    };
    let pulled = bob.pull("bob", &query).await.unwrap();
    assert_eq!(payloads(&pulled), ["through a follower"]);
    alice.publish("news", "alice", "second").await.unwrap();
    let next = bob.pull("bob", &query).await.unwrap();
    assert_eq!(
        payloads(&next),
        ["second"],
        "the first pull's messages came again"
    );
}

// ---------------------------------------------------------------------------
// §5.3 TLS

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, as PEM
/// files: (ca, cert, key).
fn pki(secrets: &Secrets, name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("rumor test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (
        secrets.write(&format!("{name}-ca.pem"), &ca.pem()),
        secrets.write(&format!("{name}-cert.pem"), &cert.pem()),
        secrets.write(&format!("{name}-key.pem"), &key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_replicates_and_elects_and_the_clis_speak_https() {
    let secrets = Secrets::new();
    let (ca, cert, key) = pki(&secrets, "good");
    let key_file = secrets.write("cluster.key", KEY);
    let cluster = Cluster::start(
        3,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--cluster-key-file",
            &key_file,
        ],
    )
    .await;
    assert!(cluster.broker(0).url().starts_with("https://"));
    cluster.agreed_leader(WAIT).await;
    let port = cluster.broker(1).port.to_string();
    let output = run_bin(
        env!("CARGO_BIN_EXE_publisher"),
        &[
            "--host", HOST, "--port", &port, "--tls-ca", &ca, "--id", "p", "--topic", "t",
            "--create", "over TLS",
        ],
        "",
        WAIT,
    );
    assert_success(&output);
    for i in 0..3 {
        let broker = cluster.broker(i);
        eventually(WAIT, "the message reaches every broker", || async {
            broker.stored_payloads("t") == ["over TLS"]
        })
        .await;
    }
    let port = cluster.broker(2).port.to_string();
    let output = run_bin(
        env!("CARGO_BIN_EXE_subscriber"),
        &[
            "--host", HOST, "--port", &port, "--tls-ca", &ca, "--id", "s", "--topic", "t",
            "--from", "earliest", "--count", "1",
        ],
        "",
        WAIT,
    );
    assert_success(&output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "over TLS\n");

    // A client trusting another CA: one clear line, non-zero.
    let (wrong_ca, _, _) = pki(&secrets, "wrong");
    let output = run_bin(
        env!("CARGO_BIN_EXE_publisher"),
        &[
            "--host", HOST, "--port", &port, "--tls-ca", &wrong_ca, "--id", "p", "--topic", "t",
            "x",
        ],
        "",
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");

    // Plain HTTP to the TLS port: no HTTP answer, no data.
    let mut stream = tokio::net::TcpStream::connect((HOST, cluster.broker(0).port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /topics HTTP/1.1\r\nHost: rumor\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("HTTP/") && !text.contains("\"t\""), "{text}");
}

#[test]
fn secret_files_stay_out_of_the_logs() {
    // The key's bytes and a token never appear in a broker's log or errors.
    let secrets = Secrets::new();
    let key_file = secrets.write("cluster.key", KEY);
    let port = free_port().to_string();
    let output = run_bin(
        env!("CARGO_BIN_EXE_broker"),
        &[
            "--host",
            HOST,
            "--port",
            &port,
            "--cluster-key-file",
            &key_file,
            "--auth-file",
            "/nonexistent/auth.toml",
        ],
        "",
        WAIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains(KEY), "{stderr}");
    assert!(secrets.path("cluster.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_joins_a_secured_cluster_through_a_member_that_does_not_lead() {
    let secrets = Secrets::new();
    let tokens = auth_file(&secrets);
    let key_file = secrets.write("cluster.key", KEY);
    let secured = [
        "--auth-file",
        tokens.file.as_str(),
        "--cluster-key-file",
        key_file.as_str(),
    ];
    let cluster = Cluster::start(3, &secured).await;
    let root = client_as(cluster.broker(0), &tokens.root);
    let leader = eventually_ok(WAIT, "a leader", || async {
        let info = root.cluster().await.map_err(|e| e.to_string())?;
        info.leader.ok_or("no leader yet".to_string())
    })
    .await;
    assert_ne!(leader, cluster.id(0), "broker 0 has the least id");
    // The new broker names broker 0, which forwards the change to the leader.
    let join = cluster.id(0);
    let mut args = secured.to_vec();
    args.extend(["--join", join.as_str()]);
    let newcomer = Broker::start_with(&args).await;
    eventually(WAIT, "every member lists the newcomer", || async {
        let mut listed = true;
        for i in 0..3 {
            let info = client_as(cluster.broker(i), &tokens.root).cluster().await;
            listed &= info.is_ok_and(|info| {
                info.members
                    .iter()
                    .any(|m| m.id == newcomer.id() && m.alive)
            });
        }
        listed
    })
    .await;
    // A client cannot pass itself off as the cluster through a follower.
    send_as(
        cluster.broker(0),
        Some(&tokens.alice),
        "POST",
        "/cluster/members",
        Some(json!({"host": HOST, "port": 1})),
    )
    .await
    .assert_code(403, "forbidden", "a member added by a non-admin");
}
