//! Test harness: real `broker` processes on free loopback ports with
//! temporary data directories, stopped by pid when the test ends.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::wire::{PullQuery, Pulled, StartFrom};
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
}

impl Broker {
    /// Starts a broker alone on a free port with default flags.
    pub async fn start() -> Broker {
        Broker::start_with(&[]).await
    }

    /// Starts a broker alone on a free port with extra flags.
    pub async fn start_with(args: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            child: None,
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        broker.spawn();
        broker.wait_healthy().await;
        broker
    }

    /// The broker id, `<host>:<port>`.
    pub fn id(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::new(self.url())
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
        let child = Command::new(env!("CARGO_BIN_EXE_broker"))
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

    async fn wait_healthy(&mut self) {
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

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(RAW_TIMEOUT)
        .build()
        .expect("http client");
    let mut request = http.request(method.clone(), url);
    if let Some((content_type, bytes)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
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
