//! Test harness: real `broker` processes on free loopback ports with
//! temporary data directories, stopped by pid when the test ends.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod net;

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::wire::{ClusterInfo, PullQuery, Pulled, StartFrom};
use client::Client;
use tempfile::TempDir;

/// How long a broker may take to answer `/health` after it is spawned.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long a broker may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

pub const HOST: &str = "127.0.0.1";

/// A running broker process with its own temporary directory.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    dir: TempDir,
    /// Stopped with SIGSTOP and not yet continued.
    paused: bool,
    /// The system user the process runs as (see `net`); the test's own
    /// when `None`.
    user: Option<net::User>,
}

impl Broker {
    /// Starts a broker alone on a free port with default flags.
    pub async fn start() -> Broker {
        Broker::start_with(&[]).await
    }

    /// Starts a broker alone on a free port with extra flags.
    pub async fn start_with(args: &[&str]) -> Broker {
        Broker::start_on(free_port(), args).await
    }

    /// Starts a broker on `port` with extra flags `args` (e.g. `--peers`)
    /// and waits until it answers `/health`.
    pub async fn start_on(port: u16, args: &[&str]) -> Broker {
        let mut broker = Broker::spawn_on(port, args);
        broker.wait_healthy().await;
        broker
    }

    /// Spawns a broker on `port` with extra flags `args` without waiting for
    /// it to answer; call [`Broker::wait_healthy`] before using it. Lets a
    /// cluster start all its members at once.
    pub fn spawn_on(port: u16, args: &[&str]) -> Broker {
        Broker::spawn_as(port, args, None)
    }

    /// [`Broker::spawn_on`], as the system `user` when given (its working
    /// and data directories are then that user's).
    pub fn spawn_as(port: u16, args: &[&str], user: Option<net::User>) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(user) = &user {
            user.own(dir.path());
        }
        let mut broker = Broker {
            child: None,
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir,
            paused: false,
            user,
        };
        broker.spawn();
        broker
    }

    /// The broker id, `<host>:<port>`.
    pub fn id(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// `https://...` when the broker serves TLS (`--tls-cert`).
    pub fn url(&self) -> String {
        let scheme = if self.flag("--tls-cert").is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{HOST}:{}", self.port)
    }

    /// A client for the broker: over HTTPS trusting its `--tls-ca` when
    /// it serves TLS; without a token.
    pub fn client(&self) -> Client {
        let connect = match self.flag("--tls-ca") {
            Some(ca) if self.flag("--tls-cert").is_some() => client::Connect::default()
                .tls_ca(Path::new(ca))
                .expect("CA file"),
            _ => client::Connect::default(),
        };
        Client::with(self.url(), &connect).expect("client")
    }

    /// The value given to `flag` on the command line, if any.
    fn flag(&self, flag: &str) -> Option<&str> {
        let at = self.args.iter().position(|arg| arg == flag)?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// The broker's working directory (holds its log; no globalState.csv).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("broker.db")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is running").id()
    }

    /// The broker's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = match &self.user {
            Some(user) => user.command(env!("CARGO_BIN_EXE_broker")),
            None => Command::new(env!("CARGO_BIN_EXE_broker")),
        };
        let child = command
            .current_dir(self.dir.path())
            .args(["--host", HOST, "--port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn broker");
        self.child = Some(child);
    }

    /// Waits (up to `START_DEADLINE`) until the broker answers `/health`;
    /// fails the test with its log if it exits or does not answer in time.
    pub async fn wait_healthy(&mut self) {
        let client = self.client();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if client.health().await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "broker exited with {status} before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not answer /health within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process dies at once, whatever it was doing. Works on a
    /// paused (SIGSTOPped) broker too: SIGKILL ends a stopped process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Whether the process runs (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped by [`Broker::pause`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing is
    /// answered) until [`Broker::resume`]. Returns once the kernel reports
    /// the process stopped.
    pub fn pause(&mut self) {
        assert!(!self.paused, "broker {} is already paused", self.id());
        let pid = self.pid();
        signal(pid, libc::SIGSTOP);
        self.paused = true;
        wait_for_process_state(pid, true);
    }

    /// SIGCONT after [`Broker::pause`]; returns once the process runs again.
    pub fn resume(&mut self) {
        assert!(self.paused, "broker {} is not paused", self.id());
        let pid = self.pid();
        signal(pid, libc::SIGCONT);
        self.paused = false;
        wait_for_process_state(pid, false);
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop(libc::SIGTERM, "SIGTERM")
    }

    /// Sends `sig` (e.g. SIGINT), then waits (bounded) for the exit status.
    pub fn stop_with(&mut self, sig: libc::c_int) -> ExitStatus {
        self.stop(sig, &format!("signal {sig}"))
    }

    /// Sends `sig` (called `name` if the broker does not exit), then waits
    /// up to `STOP_DEADLINE` for the exit status; kills the broker and fails
    /// the test if it is still running.
    fn stop(&mut self, sig: libc::c_int, name: &str) -> ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        signal(child.id(), sig);
        if std::mem::take(&mut self.paused) {
            // A stopped process only acts on the signal once continued.
            signal(child.id(), libc::SIGCONT);
        }
        wait_bounded(&mut child, STOP_DEADLINE, Duration::from_millis(20))
            .unwrap_or_else(|| panic!("broker did not exit within {STOP_DEADLINE:?} of {name}"))
    }

    /// Starts the broker again on the same port and data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        self.spawn();
        self.wait_healthy().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- log of broker {} ----\n{}", self.id(), self.log());
        }
    }
}

/// Sends a signal to a process by pid.
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// How long the kernel may take to report a signalled process stopped or running.
const SIGNAL_DEADLINE: Duration = Duration::from_secs(5);

/// Waits (up to `SIGNAL_DEADLINE`) until `/proc/<pid>/stat` shows the process
/// stopped (`T`) or, with `stopped` false, not stopped.
fn wait_for_process_state(pid: u32, stopped: bool) {
    let deadline = Instant::now() + SIGNAL_DEADLINE;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state is the first field after the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?");
        if (state == "T") == stopped {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still in state {state:?} after {SIGNAL_DEADLINE:?} (wanted stopped: {stopped})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A peer list file naming the brokers on `ports`, in order; returns the
/// directory holding it (removed when dropped) and its path.
pub fn peer_list(ports: &[u16]) -> (TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peers.csv");
    let list: String = ports
        .iter()
        .map(|port| format!("{HOST},{port}\n"))
        .collect();
    std::fs::write(&path, list).expect("write the peer list");
    let path = path.to_str().expect("UTF-8 temp path").to_string();
    (dir, path)
}

/// `n` distinct loopback ports that were free a moment ago (all bound at
/// once, so no two are the same).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((HOST, 0)).expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Polls `condition` every 20 ms until it holds, failing the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a program to completion, feeding it `stdin`; kills it and fails the
/// test if it is still running after `limit`.
pub fn run_bin(path: &str, args: &[&str], stdin: &str, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = spawn_piped(path, args);
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, limit, Duration::from_millis(10))
        .unwrap_or_else(|| panic!("{path} {args:?} still running after {limit:?}"));
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Spawns `program` with `args` and piped stdin, stdout and stderr.
pub fn spawn_piped<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn program")
}

/// Reads `pipe` to its end on a thread of its own; the thread yields the bytes.
pub fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits up to `limit` for `child` to exit, checking every `every`; kills it
/// and returns `None` if it is still running then.
pub fn wait_bounded(child: &mut Child, limit: Duration, every: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(every);
    }
}

// ---------------------------------------------------------------------------
// Typed-client set-ups shared by the test files.

/// Starts a broker with extra flags `args`, registers `publisher` and
/// creates `topic` as it; returns the broker and a client of it.
pub async fn start_with_topic(args: &[&str], publisher: &str, topic: &str) -> (Broker, Client) {
    let broker = Broker::start_with(args).await;
    let client = broker.client();
    topic_of(&client, publisher, topic).await;
    (broker, client)
}

/// Registers `publisher` and creates `topic` as it.
pub async fn topic_of(client: &Client, publisher: &str, topic: &str) {
    let registered = client.register_publisher(publisher).await;
    registered.unwrap_or_else(|e| panic!("register publisher {publisher}: {e}"));
    let created = client.create_topic(topic, publisher).await;
    created.unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
}

/// Registers subscriber `sid` and subscribes it to `topic` from `from`.
pub async fn subscribed(client: &Client, sid: &str, topic: &str, from: StartFrom) {
    let registered = client.register_subscriber(sid).await;
    registered.unwrap_or_else(|e| panic!("register subscriber {sid}: {e}"));
    let subscribed = client.subscribe(sid, topic, from).await;
    subscribed.unwrap_or_else(|e| panic!("subscribe {sid} to {topic}: {e}"));
}

/// Registers subscriber `sid` and subscribes it to `topic` from its first
/// message, shared with `settings` (`ack_wait_ms`, ...: API.md §6.2).
pub async fn subscribed_shared(
    broker: &Broker,
    sid: &str,
    topic: &str,
    settings: serde_json::Value,
) {
    broker
        .http_post("/subscribers", serde_json::json!({"id": sid}))
        .await
        .assert_status(201);
    let mut body = settings;
    body["topic"] = serde_json::json!(topic);
    body["from"] = serde_json::json!("earliest");
    broker
        .http_post(&format!("/subscribers/{sid}/subscriptions"), body)
        .await
        .assert_status(201);
}

/// A pull of `topic` (`None`: every subscription) that does not wait, for up
/// to `max` messages (`None`: the broker's default), acknowledging nothing.
pub fn at_once(topic: Option<&str>, max: Option<u32>) -> PullQuery {
    PullQuery {
        topic: topic.map(str::to_string),
        max,
        wait_ms: Some(0),
        auto_ack: None,
    }
}

/// The payloads of the pulled messages, in order.
pub fn payloads(pulled: &Pulled) -> Vec<&str> {
    pulled.messages.iter().map(|m| m.payload.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Raw HTTP, signals and storage: what the typed client cannot show (exact
// statuses, error bodies, malformed requests) and what lies beside the API.

/// How long a raw request may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP answer as it came over the wire.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Answer {
    /// The body as JSON; fails the test when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): status {} body {:?}",
                self.status, self.text
            )
        })
    }

    /// Asserts the status code.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "expected status {status}, got {} with body {:?}",
            self.status, self.text
        );
        self
    }

    /// Asserts that the content type starts with `prefix`.
    #[track_caller]
    pub fn assert_content_type(&self, prefix: &str) -> &Self {
        assert!(
            self.content_type.starts_with(prefix),
            "content type {:?}",
            self.content_type
        );
        self
    }

    /// Asserts the status and the `error.code` of the body (not the rest of
    /// it); `what` names the request in the failure message.
    #[track_caller]
    pub fn assert_code(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status, self.error_code().as_deref()),
            (status, Some(code)),
            "{what}: {}",
            self.text
        );
    }

    /// Asserts the status and a JSON error body
    /// `{"error": {"code": code, "message": "<text>"}}`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code().as_deref()),
            (status, Some(code)),
            "expected {status} {code}, got status {} with body {:?}",
            self.status,
            self.text
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "error body has content type {:?}",
            self.content_type
        );
        assert!(
            self.json()["error"]["message"].is_string(),
            "error body without a message: {:?}",
            self.text
        );
    }

    /// The `error.code` of a JSON error body, if there is one.
    pub fn error_code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.text).ok()?;
        body["error"]["code"].as_str().map(str::to_string)
    }
}

/// Sends one request without the typed client; `body` is (content type, bytes).
pub async fn http_request(
    method: reqwest::Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    client::connect::install_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(RAW_TIMEOUT)
        .build()
        .expect("http client");
    let mut request = http.request(method.clone(), url);
    if let Some((content_type, bytes)) = body {
        // An empty content type sends the body without the header.
        if !content_type.is_empty() {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        request = request.body(bytes);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e:?}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body failed: {e:?}"));
    Answer {
        status,
        content_type,
        text,
    }
}

impl Broker {
    /// `GET <path>` (path includes any query), raw.
    pub async fn http_get(&self, path: &str) -> Answer {
        http_request(reqwest::Method::GET, &self.path_url(path), None).await
    }

    /// `DELETE <path>`, raw.
    pub async fn http_delete(&self, path: &str) -> Answer {
        http_request(reqwest::Method::DELETE, &self.path_url(path), None).await
    }

    /// `POST <path>` with a JSON body, raw.
    pub async fn http_post(&self, path: &str, body: serde_json::Value) -> Answer {
        let bytes = serde_json::to_vec(&body).expect("serialize body");
        self.http_send("POST", path, Some(("application/json", bytes)))
            .await
    }

    /// Any method and body, raw; `body` is (content type, bytes).
    pub async fn http_send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        http_request(method, &self.path_url(path), body).await
    }

    fn path_url(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// `(topic, payload)` of every row of `messages` in `broker.db`, read
    /// through a separate read-only SQLite connection (works while the
    /// broker runs, in WAL mode).
    pub fn stored_messages(&self) -> Vec<(String, String)> {
        let db = self.open_db_read_only();
        let mut statement = db
            .prepare("SELECT topic, payload FROM messages")
            .expect("prepare SELECT on messages");
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query messages");
        rows.map(|row| row.expect("a messages row with text topic and payload"))
            .collect()
    }

    /// Every event `broker.db` holds, messages included, as
    /// `(origin, seq, lamport, what)` in `(origin, seq)` order: two brokers
    /// that hold the same events give the same list.
    pub fn event_log(&self) -> Vec<(String, u64, u64, String)> {
        let db = self.open_db_read_only();
        let mut statement = db
            .prepare(
                "SELECT origin, seq, lamport, kind || ' ' || actor || ' ' || coalesce(topic, '')
                     FROM events
                 UNION ALL
                 SELECT origin, seq, lamport, 'publish ' || publisher || ' ' || topic || ' ' || payload
                     FROM messages
                 ORDER BY 1, 2",
            )
            .expect("prepare SELECT on events and messages");
        let rows = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .expect("query events");
        rows.map(|row| row.expect("an event row")).collect()
    }

    /// The payloads stored for `topic` in `broker.db`.
    pub fn stored_payloads(&self, topic: &str) -> Vec<String> {
        self.stored_messages()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, payload)| payload)
            .collect()
    }

    /// A read-only connection to `broker.db`.
    pub fn open_db_read_only(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", self.db_path().display()));
        db.busy_timeout(Duration::from_secs(5))
            .expect("set busy timeout");
        db
    }
}

// ---------------------------------------------------------------------------
// Clusters: several brokers that name each other in one peer list.

/// How long one probe of a broker (e.g. `GET /cluster`) may take inside a
/// polling loop; a paused or dying broker must not stall the loop.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `probe` every 20 ms until it yields `Ok`, failing the test after
/// `limit` with `what` and the last `Err` (a description of what was seen).
pub async fn eventually_ok<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `call` with a time limit of `PROBE_TIMEOUT`; a transport error, an
/// API error or the timeout is described as text.
pub async fn probe<T, E: std::fmt::Display>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Orders broker ids `<host>:<port>` as API.md §4 does: by host as text,
/// then by port as a number.
pub fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(id: &str) -> (&str, u16) {
        let (host, port) = id.rsplit_once(':').expect("id is <host>:<port>");
        (host, port.parse().expect("port is a number"))
    }
    split(a).cmp(&split(b))
}

/// N broker processes on free loopback ports, each with its own temporary
/// data directory, all started with `--peers <file>` naming every member.
///
/// Members are numbered in id order: broker `n - 1` has the greatest id (all
/// hosts are 127.0.0.1, so the greatest port). The peer file lists them in
/// that order too, so a CLI given `--peers` tries broker 0 first.
pub struct Cluster {
    brokers: Vec<Broker>,
    /// Holds the peer file; dropped after the brokers.
    dir: TempDir,
}

impl Cluster {
    /// Starts `n` brokers at once with `extra_args` (besides `--host`,
    /// `--port`, `--data-dir` and `--peers`) and waits until each answers
    /// `/health`. Does not wait for an election.
    pub async fn start(n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_as(n, extra_args, &[]).await
    }

    /// [`Cluster::start`] with broker `i` running as `users[i]` (see `net`).
    pub async fn start_as(n: usize, extra_args: &[&str], users: &[net::User]) -> Cluster {
        assert!(n > 0, "a cluster needs a broker");
        let mut ports = free_ports(n);
        ports.sort_unstable();
        let (dir, peers_arg) = peer_list(&ports);
        net::readable_by_all(dir.path());
        let mut args: Vec<&str> = extra_args.to_vec();
        args.extend(["--peers", &peers_arg]);
        let brokers = ports
            .iter()
            .enumerate()
            .map(|(i, &p)| Broker::spawn_as(p, &args, users.get(i).cloned()))
            .collect();
        let mut cluster = Cluster { brokers, dir };
        for broker in &mut cluster.brokers {
            broker.wait_healthy().await;
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty()
    }

    /// Broker `i` (0-based, in id order).
    /// Waits (up to `limit`) until every broker holds the same events.
    pub async fn same_events_everywhere(&self, limit: Duration) {
        eventually_ok(limit, "every broker holds the same events", || async {
            let log = self.brokers[0].event_log();
            for (i, broker) in self.brokers.iter().enumerate().skip(1) {
                let other = broker.event_log();
                if other != log {
                    let differ: Vec<_> =
                        log.iter().filter(|e| !other.contains(e)).take(5).collect();
                    return Err(format!("broker {i} differs from broker 0: {differ:?} ..."));
                }
            }
            Ok(())
        })
        .await;
    }

    /// Each broker's port, in broker order.
    pub fn ports(&self) -> Vec<u16> {
        self.brokers.iter().map(|broker| broker.port).collect()
    }

    pub fn broker(&self, i: usize) -> &Broker {
        &self.brokers[i]
    }

    pub fn broker_mut(&mut self, i: usize) -> &mut Broker {
        &mut self.brokers[i]
    }

    /// A client of broker `i`.
    pub fn client(&self, i: usize) -> Client {
        self.brokers[i].client()
    }

    /// The id of broker `i`.
    pub fn id(&self, i: usize) -> String {
        self.brokers[i].id()
    }

    /// Every member's id, in id order (ascending).
    pub fn ids(&self) -> Vec<String> {
        self.brokers.iter().map(Broker::id).collect()
    }

    /// The peer file every member was started with (`host,port` per line).
    pub fn peers_file(&self) -> PathBuf {
        self.dir.path().join("peers.csv")
    }

    /// The members whose process runs and is not paused, in id order.
    pub fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.brokers[i].is_running() && !self.brokers[i].is_paused())
            .collect()
    }

    /// The live member with the greatest id: the leader the bully election
    /// must choose.
    pub fn greatest_live(&self) -> usize {
        self.live()
            .into_iter()
            .max_by(|&a, &b| id_order(&self.id(a), &self.id(b)))
            .expect("no live broker")
    }

    /// SIGKILL broker `i` (also when paused).
    pub fn kill(&mut self, i: usize) {
        self.brokers[i].kill();
    }

    /// Starts the killed broker `i` again on its port and data directory.
    pub async fn restart(&mut self, i: usize) {
        self.brokers[i].restart().await;
    }

    /// SIGSTOP broker `i`.
    pub fn pause(&mut self, i: usize) {
        self.brokers[i].pause();
    }

    /// SIGCONT broker `i`.
    pub fn resume(&mut self, i: usize) {
        self.brokers[i].resume();
    }

    /// `GET /cluster` of broker `i`, bounded by `PROBE_TIMEOUT`.
    pub async fn cluster_info(&self, i: usize) -> Result<ClusterInfo, String> {
        probe(self.client(i).cluster()).await
    }

    /// `GET /cluster` of every live broker, in id order.
    pub async fn live_infos(&self) -> Result<Vec<ClusterInfo>, String> {
        let mut infos = Vec::new();
        for i in self.live() {
            let info = self.cluster_info(i).await;
            infos.push(info.map_err(|e| format!("broker {i} ({}): {e}", self.id(i)))?);
        }
        Ok(infos)
    }

    /// Waits (up to `limit`, polling `GET /cluster`) until every live broker
    /// names the same leader and term; returns them.
    pub async fn agreed_leader(&self, limit: Duration) -> (String, u64) {
        self.agreed_leader_where(limit, "any leader", |_, _| true)
            .await
    }

    /// Waits (up to `limit`) until every live broker names the same leader and
    /// term and `accept(leader, term)` holds (`wanted` describes it); returns
    /// them.
    pub async fn agreed_leader_where(
        &self,
        limit: Duration,
        wanted: &str,
        accept: impl Fn(&str, u64) -> bool,
    ) -> (String, u64) {
        let what = format!(
            "live brokers {:?} agree on one leader and term ({wanted})",
            self.live()
        );
        eventually_ok(limit, &what, || async {
            let infos = self.live_infos().await?;
            let views: Vec<(String, Option<&str>, u64)> = infos
                .iter()
                .map(|i| (i.self_id.clone(), i.leader.as_deref(), i.term))
                .collect();
            let first = &infos[0];
            let agreed = infos
                .iter()
                .all(|i| i.leader.is_some() && (&i.leader, i.term) == (&first.leader, first.term));
            match &first.leader {
                Some(leader) if agreed && accept(leader, first.term) => {
                    Ok((leader.clone(), first.term))
                }
                _ => Err(format!("(self, leader, term): {views:?}")),
            }
        })
        .await
    }
}

/// A child process (e.g. a CLI) killed by pid when dropped, so that a failing
/// test leaves nothing running.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `limit` for the exit status; kills the process and fails
    /// the test if it is still running then.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        wait_bounded(&mut self.0, limit, Duration::from_millis(10))
            .unwrap_or_else(|| panic!("process {} still running after {limit:?}", self.0.id()))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads `pipe` line by line on a thread of its own and sends each line as it
/// comes; the channel closes at the end of the stream.
pub fn lines_of(pipe: impl Read + Send + 'static) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Asserts a zero exit; shows stderr otherwise.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The sum of every sample of metric `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value_part = if rest.starts_with('{') {
            match rest.rfind('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue; // a longer name with this prefix
        };
        if let Some(value) = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The value of metric `name` that `/metrics` shows now.
pub async fn metric_now(client: &Client, name: &str) -> f64 {
    let text = client.metrics().await.expect("GET /metrics");
    metric(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// The lines of `bytes`, read as UTF-8.
pub fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts a non-zero exit with exactly one line `<program>: error: ...`
/// on stderr, and no panic; returns that line.
#[track_caller]
pub fn assert_one_line_failure(output: &Output, program: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    assert!(
        stderr.starts_with(&format!("{program}: error: ")),
        "{stderr:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
    stderr
}
