//! Storage: the only module that knows SQL.
//!
//! One writer thread owns the write connection and commits everything queued
//! in one transaction (group commit, see `writer`); reads run on an r2d2 pool
//! of read-only connections on the blocking thread pool, never on the async
//! executor; a checkpoint thread copies the write-ahead log back into the
//! database beside the writer (`checkpoint`). `apply` holds the event
//! merges, `ops` the checked operations that turn requests into events,
//! `queries` the reads.

mod admission;
mod apply;
mod checkpoint;
mod error;
pub mod fresh;
mod ops;
pub mod queries;
mod recent;
mod schema;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

use client::peer::{EncodedEvent, Have};

use crate::config::{Config, Durability, Mode};
use crate::metrics::CommitMetrics;
use crate::wakeups::Wakeups;

use admission::Admission;
pub use error::StoreError;
pub use ops::{Outcome, SeekPoint, SweepTimes};
pub use writer::{Commit, WriteTx};

/// Client writes admitted to the writer at once (see `admission`): 10,000
/// publishing clients kept `/health`'s p99 at 10–25 ms with 256 or 512
/// (130–370 ms without), and 512 fill a commit.
const ADMITTED_WRITES: usize = 512;

/// Read connections: enough for concurrent pulls on a small machine.
const READ_POOL_SIZE: u32 = 8;

/// The broker's SQLite database.
pub struct Store {
    pool: r2d2::Pool<SqliteConnectionManager>,
    readers: ReadThreads,
    writer: writer::Writer,
    /// Copies the write-ahead log back into the database beside the writer.
    checkpointer: checkpoint::Checkpointer,
    lamport: Arc<AtomicU64>,
    own_seq: Arc<AtomicU64>,
    own_seq_besides_acks: Arc<AtomicU64>,
    mode: Arc<Mutex<Option<Mode>>>,
    /// Whether this broker holds its own history and may record events of
    /// its own (the writer refuses them until then, see
    /// [`Store::own_history_held`]).
    own_history: watch::Sender<bool>,
    /// What this broker holds, per origin, as of the last commit.
    have: watch::Sender<Arc<Have>>,
    /// What of it is on disk (see `writer::Kind::Received`).
    synced: Arc<Mutex<Arc<Have>>>,
    mode_version: Arc<AtomicU64>,
    leads_version: Arc<AtomicU64>,
    commits: Arc<CommitMetrics>,
    /// `broker.db`, whose size (and its write-ahead log's) `/metrics` shows.
    path: PathBuf,
    admission: Admission,
    /// This broker's latest own events, kept for replication (see `recent`).
    recent: Arc<Mutex<recent::RecentEvents>>,
    /// Whether the writer keeps them: once the broker has a peer.
    keeping: Arc<AtomicBool>,
    /// What the latest commits added, for waiting pulls (see `fresh`).
    fresh: Arc<fresh::FreshCommits>,
}

impl Store {
    /// Opens (creating and migrating when needed) `<data_dir>/broker.db`.
    pub fn open(config: &Config, wakeups: Arc<Wakeups>) -> Result<Store, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let path = config.data_dir.join("broker.db");
        let conn = open_writer(&path, config.durability)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let state = writer::WriterState::load(&conn, &config.id)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lamport = Arc::new(AtomicU64::new(state.lamport()));
        let own_seq = Arc::new(AtomicU64::new(state.last_seq()));
        let own_seq_besides_acks = Arc::new(AtomicU64::new(state.last_seq_besides_acks()));
        let mode = queries::setting(&conn, "mode")
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .and_then(|name| Mode::parse(&name));
        let mode = Arc::new(Mutex::new(mode));
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(schema::configure_reader);
        // No test query at each checkout: a local file's connection does
        // not go stale, and the test (`SELECT 1`, parsed anew each time)
        // cost every read a statement preparation and a read transaction.
        let pool = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| format!("cannot open read connections to {}: {e}", path.display()))?;
        // A broker with events of its own, or without peers to have sent
        // them to, holds its history; any other learns it from its peers.
        let own_history = watch::Sender::new(state.last_seq() > 0 || config.peers.is_empty());
        let have =
            queries::have(&conn).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let have = Arc::new(have);
        let synced = Arc::new(Mutex::new(have.clone()));
        let have = watch::Sender::new(have);
        let (mode_version, leads_version): (Arc<AtomicU64>, Arc<AtomicU64>) = Default::default();
        let commits = Arc::new(CommitMetrics::default());
        let committed = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Mutex::new(recent::RecentEvents::new(&config.id)));
        let keeping = Arc::new(AtomicBool::new(!config.peers.is_empty()));
        let fresh = Arc::new(fresh::FreshCommits::default());
        let counters = writer::Counters {
            lamport: lamport.clone(),
            own_seq: own_seq.clone(),
            own_seq_besides_acks: own_seq_besides_acks.clone(),
            mode: mode.clone(),
            own_history: own_history.clone(),
            have: have.clone(),
            synced: synced.clone(),
            mode_version: mode_version.clone(),
            leads_version: leads_version.clone(),
            commits: commits.clone(),
            committed: committed.clone(),
            recent: recent.clone(),
            keeping: keeping.clone(),
            fresh: fresh.clone(),
        };
        let syncing = writer::Syncing {
            fsync: config.durability == Durability::Fsync,
            configured_mode: config.mode,
            // As `schema::configure_writer` set it.
            at_commit: config.durability == Durability::Fsync,
        };
        let writer = writer::Writer::start(conn, state, wakeups, counters, syncing);
        let checkpointer = checkpoint::Checkpointer::start(&path, config.durability, committed)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Store {
            pool,
            checkpointer,
            readers: ReadThreads::start()?,
            writer,
            lamport,
            own_seq,
            own_seq_besides_acks,
            mode,
            own_history,
            have,
            synced,
            mode_version,
            leads_version,
            commits,
            path,
            admission: Admission::new(ADMITTED_WRITES),
            recent,
            keeping,
            fresh,
        })
    }

    /// What the latest commits added, for waiting pulls.
    pub fn fresh(&self) -> &fresh::FreshCommits {
        &self.fresh
    }

    /// How long the writer's commits take, and how many requests each holds.
    pub fn commit_metrics(&self) -> &CommitMetrics {
        &self.commits
    }

    /// The sizes of `broker.db` and of its write-ahead log, in bytes (0
    /// for a file that is not there).
    pub fn file_sizes(&self) -> (u64, u64) {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        (size(&self.path), size(Path::new(&wal)))
    }

    /// The Lamport clock as of the last commit.
    pub fn lamport(&self) -> u64 {
        self.lamport.load(Ordering::Acquire)
    }

    /// Per origin, the seq up to which this broker holds every event, as of
    /// the last commit (no read: the writer publishes it).
    pub fn have(&self) -> Arc<Have> {
        self.have.borrow().clone()
    }

    /// What of [`Store::have`] is on disk: all of it but the peers' events
    /// taken in since the last commit that synced (see
    /// `writer::Kind::Received`).
    pub fn synced_have(&self) -> Arc<Have> {
        crate::lock(&self.synced).clone()
    }

    /// Ticks whenever what this broker holds moves on.
    pub fn watch_have(&self) -> watch::Receiver<Arc<Have>> {
        self.have.subscribe()
    }

    /// Changes whenever a commit sets the cluster's mode.
    pub fn mode_version(&self) -> u64 {
        self.mode_version.load(Ordering::Acquire)
    }

    /// Changes whenever a commit adds leads (see `epochs`).
    pub fn leads_version(&self) -> u64 {
        self.leads_version.load(Ordering::Acquire)
    }

    /// The seq of this broker's latest committed event of its own.
    pub fn own_seq(&self) -> u64 {
        self.own_seq.load(Ordering::Acquire)
    }

    /// The seq of this broker's latest committed event of its own that is
    /// not an acknowledgement (published before the commit's wake-ups).
    pub fn own_seq_besides_acks(&self) -> u64 {
        self.own_seq_besides_acks.load(Ordering::Acquire)
    }

    /// The replication mode set at run time for the whole cluster, if any.
    pub fn mode_setting(&self) -> Option<Mode> {
        *crate::lock(&self.mode)
    }

    /// Whether this broker holds its own history: until then the writer
    /// refuses to record events of its own, since a broker that lost its
    /// data would give their seqs out again.
    pub fn holds_own_history(&self) -> bool {
        *self.own_history.borrow()
    }

    /// This broker now holds every event of its own that its peers hold
    /// (or has none to learn): it may record events of its own.
    pub fn own_history_held(&self) {
        if !self.own_history.send_replace(true) {
            tracing::info!(
                "holding this broker's own history (seq {}): taking writes",
                self.own_seq()
            );
        }
    }

    /// Waits until this broker holds its own history.
    pub async fn until_own_history(&self) {
        // The sender lives as long as the store.
        let _ = self.own_history.subscribe().wait_for(|held| *held).await;
    }

    /// Runs a read on a pooled connection, on one of the read threads, in
    /// one read transaction: its queries see one snapshot, and take the
    /// log's read lock once rather than once each.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.readers
            .handle
            .spawn_blocking(move || {
                let conn = pool.get()?;
                let snapshot = conn.unchecked_transaction()?;
                let found = read(&snapshot)?;
                snapshot.commit()?;
                Ok(found)
            })
            .await
            .map_err(|e| StoreError::Failed(format!("read task failed: {e}")))?
    }

    /// Queues a change for the writer and waits until it is committed
    /// (durably, under `--durability fsync`) or refused.
    pub async fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit(Commit::Now, change).await
    }

    /// [`Store::write`] for events received from a peer: in gossip mode
    /// their commit need not sync (see `writer::Kind::Received`).
    pub async fn write_received<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.submit_received(change).await
    }

    /// [`Store::write`] for a client's write, committed as `commit` says:
    /// refused with [`StoreError::Overloaded`] while `limit` writes already
    /// wait for the writer (replication and the broker's own writes are
    /// not held).
    pub async fn write_bounded<T, F>(
        &self,
        limit: usize,
        commit: Commit,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        if self.writer.queued() + self.admission.waiting() >= limit {
            return Err(StoreError::Overloaded);
        }
        // The place is given on once the writer runs the write, so that
        // the next writes queue up while this one's transaction commits. A
        // lazy write answers no client and waits in the writer for company
        // (the writes that hold places): it takes none.
        let admitted = match commit {
            Commit::Now => Some(self.admission.enter().await),
            Commit::Lazily => None,
        };
        self.writer
            .submit(commit, move |tx| {
                drop(admitted);
                change(tx)
            })
            .await
    }

    /// The events this broker holds (`mine`) that a peer lacks (`theirs`),
    /// but none of the origins in `skip`, within `budget` (see
    /// `queries::missing`); this broker's latest own events come from
    /// memory (see `recent`).
    pub async fn missing(
        &self,
        mine: Arc<Have>,
        theirs: Have,
        skip: HashSet<String>,
        budget: queries::SyncBudget,
    ) -> Result<Vec<EncodedEvent>, StoreError> {
        let kept = self.recent.clone();
        self.read(move |conn| queries::missing(conn, Some(&kept), &mine, &theirs, &skip, budget))
            .await
    }

    /// Keeps this broker's own events for replication from the next batch
    /// the writer starts: called when it gains a peer (a broker started
    /// without peers keeps none until then).
    pub fn keep_own_events(&self) {
        self.keeping.store(true, Ordering::Release);
    }

    /// Stops the checkpoint thread, then commits what is queued and stops
    /// the writer thread.
    pub fn close(&self) {
        self.checkpointer.stop();
        self.writer.stop();
    }
}

/// The threads reads run on: one per pooled connection. A read waits in
/// their queue for a free thread rather than taking a thread of its own to
/// wait for a free connection (10,000 woken long polls made ~500 threads).
struct ReadThreads {
    handle: tokio::runtime::Handle,
    /// Taken when dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ReadThreads {
    fn start() -> Result<ReadThreads, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(READ_POOL_SIZE as usize)
            .thread_name("store-reader")
            .build()
            .map_err(|e| format!("cannot start the read threads: {e}"))?;
        Ok(ReadThreads {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for ReadThreads {
    /// Without waiting: the store may be dropped on an async thread.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn open_writer(path: &Path, durability: Durability) -> Result<Connection, String> {
    owner_only(path).map_err(|e| format!("cannot make it private: {e}"))?;
    let mut conn = Connection::open(path).map_err(|e| e.to_string())?;
    schema::configure_writer(&conn, durability).map_err(|e| e.to_string())?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Makes the database readable by its owner only (API.md §5.5), creating
/// it so when new; SQLite gives its log files the database's permissions.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let private = std::fs::Permissions::from_mode(0o600);
    for suffix in ["", "-wal", "-shm"] {
        let file = path.with_file_name(format!(
            "{}{suffix}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        if file.exists() {
            std::fs::set_permissions(&file, private.clone())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Change, Event};
    use apply::{MessageRow, MessageRun};
    use client::peer::Have;
    use client::wire::{Headers, NewMessage};
    use futures_util::FutureExt;
    use std::time::Duration;

    fn open(dir: &Path) -> Store {
        open_with_peers(dir, Vec::new())
    }

    /// A store whose peer list names `A:1`.
    fn open_with_a_peer(dir: &Path) -> Store {
        let peer = client::PeerAddr {
            host: "A".to_string(),
            port: 1,
        };
        open_with_peers(dir, vec![peer])
    }

    /// A store with a peer that holds its own history, so it may record.
    fn open_recording_with_a_peer(dir: &Path) -> Store {
        let store = open_with_a_peer(dir);
        store.own_history_held();
        store
    }

    fn open_with_peers(dir: &Path, peers: Vec<client::PeerAddr>) -> Store {
        Store::open(&config(dir, peers), Arc::new(Wakeups::default())).unwrap()
    }

    /// A store alone under `--durability fsync`.
    fn open_syncing(dir: &Path) -> Store {
        let config = Config {
            durability: Durability::Fsync,
            ..config(dir, Vec::new())
        };
        Store::open(&config, Arc::new(Wakeups::default())).unwrap()
    }

    fn config(dir: &Path, peers: Vec<client::PeerAddr>) -> Config {
        Config {
            id: "B:1".to_string(),
            host: "B".to_string(),
            port: 1,
            peers,
            join: None,
            data_dir: dir.to_path_buf(),
            mode: Mode::Gossip,
            durability: Durability::Normal,
            retention: Duration::from_secs(3600),
            max_payload_bytes: 1024,
            max_replica_lag: 10_000,
            max_write_queue: 10_000,
            dedup_window: Duration::from_secs(120),
            peer_connect: client::Connect::default(),
            cluster_key: None,
            auth_file: None,
            tls: None,
        }
    }

    fn event(seq: u64, change: Change) -> Event {
        Event {
            origin: "A:1".to_string(),
            seq,
            lamport: seq * 10,
            change,
        }
    }

    fn publish(seq: u64, payload: &str) -> Event {
        publish_at("A:1", seq, payload, 0)
    }

    fn publish_at(origin: &str, seq: u64, payload: &str, published_at_ms: i64) -> Event {
        Event {
            origin: origin.to_string(),
            ..event(
                seq,
                Change::Publish {
                    topic: "news".into(),
                    publisher: "P1".into(),
                    payload: payload.into(),
                    published_at_ms,
                    headers: Headers::new(),
                    msg_id: None,
                },
            )
        }
    }

    fn history() -> Vec<Event> {
        vec![
            event(
                1,
                Change::RegisterPublisher {
                    publisher: "P1".into(),
                },
            ),
            event(
                2,
                Change::CreateTopic {
                    topic: "news".into(),
                    publisher: "P1".into(),
                    limits: None,
                },
            ),
            publish(3, "a"),
            event(4, Change::Pruned),
            publish(5, "b"),
        ]
    }

    async fn receive(store: &Store, events: Vec<Event>) -> Have {
        store.write(move |tx| tx.receive(events)).await.unwrap()
    }

    async fn stored_payloads(store: &Store) -> Vec<String> {
        store
            .read(|conn| {
                let mut statement = conn.prepare("SELECT payload FROM messages ORDER BY seq")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_lazy_write_commits_with_the_next_write_that_cannot_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let commits = || store.commit_metrics().batch_size.count();
        let before = commits();
        store
            .write_bounded(10, Commit::Lazily, |_| Ok(()))
            .await
            .expect("a lazy write alone commits too");
        assert_eq!(commits(), before + 1);
        // The writer waits a few milliseconds for company: a loaded machine
        // may let that pass before the second write comes, so a few tries.
        let mut shared_a_commit = false;
        for _ in 0..5 {
            let before = commits();
            let mut lazy = Box::pin(store.write_bounded(10, Commit::Lazily, |_| Ok(())));
            assert!(
                lazy.as_mut().now_or_never().is_none(),
                "queued, not committed"
            );
            // Taken by the writer, which waits.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while store.writer.queued() > 0 && std::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            store.write(|_| Ok(())).await.unwrap();
            lazy.await.unwrap();
            if commits() == before + 1 {
                shared_a_commit = true;
                break;
            }
        }
        assert!(shared_a_commit, "the lazy write waited for the next one");
    }

    #[tokio::test]
    async fn received_events_commit_without_a_sync_in_gossip_mode_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_syncing(dir.path());
        let unsynced = || store.commit_metrics().unsynced.load(Ordering::Relaxed);
        let synced_of_a = || store.synced_have().get("A:1").copied();
        // Gives the clock its bound, which the stamps below stay under.
        store.write(|tx| tx.register_publisher("P0")).await.unwrap();
        store
            .write_received(|tx| tx.receive(history()))
            .await
            .unwrap();
        assert_eq!(unsynced(), 1);
        assert_eq!(store.have().get("A:1"), Some(&5));
        assert_eq!(synced_of_a(), None, "not on disk yet");
        // A commit that syncs, even one that writes nothing (SQLite then
        // skips its sync), syncs what came before it.
        store.write(|_| Ok(())).await.unwrap();
        assert_eq!(unsynced(), 1);
        assert_eq!(synced_of_a(), Some(5));
        store.write(|tx| tx.set_mode(Mode::Leader)).await.unwrap();
        let events = vec![publish(6, "c")];
        store.write_received(|tx| tx.receive(events)).await.unwrap();
        assert_eq!(unsynced(), 1, "in leader mode received events sync");
    }

    #[tokio::test]
    async fn received_events_that_must_be_on_disk_are_synced_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_syncing(dir.path());
        let unsynced = || store.commit_metrics().unsynced.load(Ordering::Relaxed);
        // A new broker's clock has no bound yet: the first stamps move it.
        store
            .write_received(|tx| tx.receive(history()))
            .await
            .unwrap();
        assert_eq!(unsynced(), 0, "the clock's bound moved");
        assert_eq!(store.synced_have().get("A:1"), Some(&5));
        // This broker's own events coming back, as after it lost its data.
        let own = Event {
            origin: "B:1".to_string(),
            ..event(
                1,
                Change::RegisterSubscriber {
                    subscriber: "S1".into(),
                },
            )
        };
        store
            .write_received(|tx| tx.receive(vec![own]))
            .await
            .unwrap();
        assert_eq!(unsynced(), 0, "its own events came back");
        assert_eq!(store.own_seq(), 1);
    }

    #[tokio::test]
    async fn received_events_commit_ahead_of_a_waiting_lazy_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_syncing(dir.path());
        let commits = || store.commit_metrics().batch_size.count();
        // The lazy write waits 20 ms at most: a loaded machine may let that
        // pass before the received events come, so a few tries.
        let mut went_ahead = false;
        for _ in 0..5 {
            let before = commits();
            let mut lazy = Box::pin(store.write_bounded(10, Commit::Lazily, |_| Ok(())));
            assert!(lazy.as_mut().now_or_never().is_none(), "queued");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while store.writer.queued() > 0 && std::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            store
                .write_received(|tx| tx.receive(Vec::new()))
                .await
                .unwrap();
            let waiting = lazy.as_mut().now_or_never().is_none();
            lazy.await.unwrap();
            if waiting && commits() == before + 2 {
                went_ahead = true;
                break;
            }
        }
        assert!(
            went_ahead,
            "the received events committed alone, the lazy write after"
        );
    }

    #[tokio::test]
    async fn lazy_writes_take_no_place_of_the_bounded_admission() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut lazy: Vec<_> = (0..ADMITTED_WRITES + 10)
            .map(|_| Box::pin(store.write_bounded(100_000, Commit::Lazily, |_| Ok(()))))
            .collect();
        for write in &mut lazy {
            assert!(write.as_mut().now_or_never().is_none(), "queued");
        }
        assert_eq!(store.admission.waiting(), 0, "none waits for a place");
        store
            .write_bounded(100_000, Commit::Now, |_| Ok(()))
            .await
            .unwrap();
        for write in lazy {
            write.await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_log_is_copied_back_into_the_database_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (db_before, _) = store.file_sizes();
        // Far fewer pages than the writer's own checkpoint waits for.
        let events: Vec<Event> = (1..=200)
            .map(|seq| publish(seq, &"x".repeat(100)))
            .collect();
        let mut history = history();
        history.extend(events.into_iter().skip(history.len()));
        receive(&store, history).await;
        // Only a checkpoint writes to broker.db in WAL mode, and the
        // writer's own comes after 10,000 pages.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.file_sizes().0 == db_before {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not copied back into the database within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.close();
    }

    #[tokio::test]
    async fn received_events_apply_once_in_order_and_never_past_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let all = history();
        // Seq 4 missing: 5 waits behind the gap.
        let have = receive(
            &store,
            vec![
                all[0].clone(),
                all[1].clone(),
                all[2].clone(),
                all[4].clone(),
            ],
        )
        .await;
        assert_eq!(have.get("A:1"), Some(&3));
        assert_eq!(stored_payloads(&store).await, ["a"]);
        // Everything again: duplicates pass over, the pruned seq fills the gap.
        let have = receive(&store, all).await;
        assert_eq!(have.get("A:1"), Some(&5));
        assert_eq!(have.get("B:1"), Some(&0));
        assert_eq!(stored_payloads(&store).await, ["a", "b"]);
        // The clock moved past every stamp received.
        assert!(store.lamport() > 50);
        store.close();
    }

    #[tokio::test]
    async fn a_peer_is_sent_what_it_lacks_with_deleted_messages_as_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        receive(&store, history()).await;
        let budget = queries::SyncBudget {
            events: 100,
            bytes: 1 << 20,
        };
        let theirs: Have = [("A:1".to_string(), 1)].into();
        let missing = store
            .read(move |conn| {
                let mine = queries::have(conn)?;
                queries::missing(conn, None, &mine, &theirs, &HashSet::new(), budget)
            })
            .await
            .unwrap();
        assert_eq!(
            decoded(&missing),
            history()[1..]
                .iter()
                .map(|e| Event {
                    lamport: if e.change == Change::Pruned {
                        0
                    } else {
                        e.lamport
                    },
                    ..e.clone()
                })
                .collect::<Vec<_>>()
        );
        let small = queries::SyncBudget {
            events: 2,
            bytes: 1 << 20,
        };
        let first_two = store
            .read(move |conn| {
                let mine = queries::have(conn)?;
                queries::missing(conn, None, &mine, &Have::new(), &HashSet::new(), small)
            })
            .await
            .unwrap();
        assert_eq!(seqs(&first_two), [1, 2]);
        store.close();
    }

    #[tokio::test]
    async fn expiry_reads_each_origin_in_seq_order_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut events = history()[..2].to_vec();
        events.extend([
            publish_at("A:1", 3, "a-old", 0),
            publish_at("A:1", 4, "a-old", 0),
            publish_at("A:1", 5, "a-young", 1_000),
            // Stamped by a clock set back: it waits behind the younger one.
            publish_at("A:1", 6, "a-behind-young", 0),
            publish_at("B:1", 1, "b-old", 0),
            publish_at("B:1", 2, "b-old", 0),
            publish_at("B:1", 3, "b-old", 0),
        ]);
        receive(&store, events).await;
        let times = SweepTimes {
            now_ms: 1_000,
            expire_before_ms: 500,
            forget_ids_before_ms: 500,
        };
        let mut resume = None;
        for step in 0.. {
            assert!(step < 10, "the sweep never finished");
            let swept = store
                .write(move |tx| tx.sweep(times, None, resume, 2))
                .await
                .unwrap();
            resume = swept.resume;
            if resume.is_none() {
                break;
            }
        }
        assert_eq!(stored_payloads(&store).await, ["a-young", "a-behind-young"]);
        store.close();
    }

    #[tokio::test]
    async fn a_batch_is_stored_in_order_across_multi_row_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // Two full multi-row statements and a remainder.
        let payloads: Vec<String> = (0..130).map(|n| format!("m{n}")).collect();
        let sent = payloads
            .iter()
            .map(|payload| new_message(payload, None))
            .collect();
        let outcomes = publish_to_a_new_topic(&store, sent).await;
        let stamped: Vec<(u64, u64)> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Stored(stamp) => *stamp,
                Outcome::Duplicate(..) => panic!("no msg_id, no duplicate"),
            })
            .collect();
        let seqs: Vec<u64> = stamped.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (3..133).collect::<Vec<u64>>());
        assert!(stamped.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert_eq!(stored_payloads(&store).await, payloads);
        let rows: Vec<(String, String, String, i64, u64, u64)> = store
            .read(|conn| {
                let mut statement = conn.prepare(
                    "SELECT origin, topic, publisher, published_at_ms, seq, lamport
                     FROM messages ORDER BY seq",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        for ((origin, topic, publisher, at, seq, lamport), (sent_seq, sent_lamport)) in
            rows.iter().zip(&stamped)
        {
            assert_eq!(
                (origin.as_str(), topic.as_str(), publisher.as_str(), *at),
                ("B:1", "news", "P1", 7)
            );
            assert_eq!((seq, lamport), (sent_seq, sent_lamport));
        }
        store.close();
    }

    #[tokio::test]
    async fn a_message_stored_twice_fails_its_whole_batch_and_the_next_takes_its_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        publish_to_a_new_topic(&store, vec![new_message("first", None)]).await;
        let failed = store
            .write(|tx| {
                tx.publish("news", "P1", vec![new_message("lost", None)], 7, 0)?;
                // A full multi-row statement whose first row is stored already.
                let rows: Vec<MessageRow<'_>> = (3..3 + 64)
                    .map(|seq| MessageRow::new((seq, seq), "again", &Headers::new(), None))
                    .collect();
                let run = MessageRun {
                    origin: "B:1",
                    topic: "news",
                    publisher: "P1",
                    published_at_ms: 7,
                    messages: &rows,
                };
                Ok(apply::insert_messages(tx.conn, &run)?)
            })
            .await;
        assert!(failed.is_err(), "storing seq 3 twice succeeded");
        assert_eq!(stored_payloads(&store).await, ["first"]);
        let next = store
            .write(|tx| tx.publish("news", "P1", vec![new_message("next", None)], 8, 0))
            .await
            .unwrap();
        assert!(
            matches!(next[..], [Outcome::Stored((4, _))]),
            "the failed batch's seq 4 is given again: {next:?}"
        );
        assert_eq!(stored_payloads(&store).await, ["first", "next"]);
        store.close();
    }

    #[tokio::test]
    async fn a_peer_is_sent_the_kept_publishes_as_they_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_recording_with_a_peer(dir.path());
        let mut with_headers = new_message("h", Some("m1"));
        with_headers.headers = Some(Headers::from([("k".to_string(), "v".to_string())]));
        let sent = vec![new_message("a", None), with_headers, new_message("b", None)];
        publish_to_a_new_topic(&store, sent).await;
        let kept = crate::lock(&store.recent).between("B:1", 2, 5, 100);
        assert_eq!(kept.map(|events| events.len()), Some(3), "seqs 3-5 kept");
        let (read, from_memory) = sent_after(&store, 2).await;
        assert_eq!(seqs(&read), [3, 4, 5]);
        assert_eq!(texts(&from_memory), texts(&read));
        store.close();
    }

    /// What a peer holding B:1's events up to `seq` is sent: read from
    /// the store alone, and as `Store::missing` sends it (from memory).
    async fn sent_after(store: &Store, seq: u64) -> (Vec<EncodedEvent>, Vec<EncodedEvent>) {
        let (mine, theirs): (_, Have) = (store.have(), [("B:1".to_string(), seq)].into());
        let budget = queries::SyncBudget {
            events: 100,
            bytes: 1 << 20,
        };
        let (mine_read, theirs_read) = (mine.clone(), theirs.clone());
        let read = store
            .read(move |conn| {
                let skip = HashSet::new();
                queries::missing(conn, None, &mine_read, &theirs_read, &skip, budget)
            })
            .await
            .unwrap();
        let from_memory = store
            .missing(mine, theirs, HashSet::new(), budget)
            .await
            .unwrap();
        (read, from_memory)
    }

    fn texts(events: &[EncodedEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.json().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_broker_without_peers_keeps_its_own_events_once_it_gains_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        publish_to_a_new_topic(&store, vec![new_message("before", None)]).await;
        let before = store.own_seq();
        let kept = crate::lock(&store.recent).between("B:1", before - 1, before, 100);
        assert!(kept.is_none(), "kept without a peer: {kept:?}");
        store.keep_own_events();
        store
            .write(|tx| tx.publish("news", "P1", vec![new_message("after", None)], 7, 0))
            .await
            .unwrap();
        let kept = crate::lock(&store.recent).between("B:1", before, store.own_seq(), 100);
        let seqs: Vec<u64> = kept.unwrap().iter().map(|kept| kept.seq).collect();
        assert_eq!(seqs, [before + 1]);
        // A peer is sent the same, read back or kept.
        for after in [0, before] {
            let (read, sent) = sent_after(&store, after).await;
            assert_eq!(texts(&read), texts(&sent), "after {after}");
        }
        store.close();
    }

    #[tokio::test]
    async fn acknowledgements_leave_the_latest_own_seq_besides_them_where_it_was() {
        use crate::cursor::Position;
        use client::peer::EventId;
        use client::wire::StartFrom;
        let dir = tempfile::tempdir().unwrap();
        let store = open_recording_with_a_peer(dir.path());
        store
            .write(|tx| {
                tx.register_publisher("P1")?;
                tx.register_subscriber("S1")?;
                tx.create_topic("news", "P1", None)?;
                tx.subscribe("S1", "news", StartFrom::Earliest, None)?;
                tx.publish("news", "P1", vec![new_message("a", None)], 7, 0)?;
                tx.publish("news", "P1", vec![new_message("b", None)], 7, 0)
                    .map(drop)
            })
            .await
            .unwrap();
        let published = store.own_seq();
        assert_eq!(store.own_seq_besides_acks(), published);
        store
            .write(move |tx| {
                let position = Position {
                    topic: "news".to_string(),
                    origin: "B:1".to_string(),
                    seq: published - 1,
                };
                tx.ack("S1", vec![position], &Default::default())?;
                let id = EventId {
                    origin: "B:1".to_string(),
                    seq: published,
                };
                tx.ack_messages("S1", vec![id])
            })
            .await
            .unwrap();
        assert!(store.own_seq() >= published + 2, "both recorded");
        assert_eq!(
            store.own_seq_besides_acks(),
            published,
            "acknowledgements may wait for more before they are sent"
        );
        store
            .write(|tx| {
                tx.register_subscriber("S2")?;
                tx.publish("news", "P1", vec![new_message("c", None)], 8, 0)
                    .map(drop)
            })
            .await
            .unwrap();
        let latest = store.own_seq();
        assert_eq!(store.own_seq_besides_acks(), latest);
        // A write that failed leaves nothing behind: the acknowledgement
        // committed next takes the failed event's seq, and is still one.
        let failed = store
            .write(|tx| {
                tx.register_subscriber("S3")?;
                Err::<(), _>(StoreError::Failed("after writing".into()))
            })
            .await;
        assert!(failed.is_err());
        store
            .write(move |tx| {
                let position = Position {
                    topic: "news".to_string(),
                    origin: "B:1".to_string(),
                    seq: latest,
                };
                tx.ack("S1", vec![position], &Default::default())
            })
            .await
            .unwrap();
        assert_eq!(store.own_seq(), latest + 1);
        assert_eq!(store.own_seq_besides_acks(), latest);
        store.close();
    }

    #[tokio::test]
    async fn a_peer_is_sent_every_kept_own_event_as_it_is_stored() {
        use crate::cursor::Position;
        use client::peer::EventId;
        use client::wire::{StartFrom, TopicLimits};
        let dir = tempfile::tempdir().unwrap();
        let store = open_recording_with_a_peer(dir.path());
        let first = store.own_seq() + 1;
        let limits = || TopicLimits {
            max_messages: Some(10),
            ..TopicLimits::default()
        };
        let shared = || client::wire::SharedSettings {
            ack_wait_ms: 1_000,
            backoff_ms: vec![0],
            max_deliveries: None,
            dead_letter_topic: None,
        };
        store
            .write(move |tx| {
                tx.register_publisher("P1")?;
                tx.register_subscriber("S1")?;
                tx.create_topic("news", "P1", Some(limits()))?;
                tx.subscribe("S1", "news", StartFrom::Earliest, None)?;
                tx.publish("news", "P1", vec![new_message("a", Some("m1"))], 7, 0)?;
                tx.publish("news", "P1", vec![new_message("b", None)], 8, 0)?;
                let (origin, seq) = ("B:1".to_string(), first + 4);
                let position = Position {
                    topic: "news".to_string(),
                    origin: origin.clone(),
                    seq,
                };
                tx.ack("S1", vec![position], &Default::default())?;
                tx.ack_messages(
                    "S1",
                    vec![EventId {
                        origin,
                        seq: seq + 1,
                    }],
                )?;
                tx.set_limits("news", Some("P1"), TopicLimits::default())?;
                tx.seek("S1", "news", SeekPoint::Earliest)?;
                // An acknowledgement after a seek names its epoch.
                let position = Position {
                    topic: "news".to_string(),
                    origin: "B:1".to_string(),
                    seq: first + 4,
                };
                tx.ack("S1", vec![position], &Default::default())?;
                tx.unsubscribe("S1", "news")?;
                // Not a deletion of a topic with messages: a message deleted
                // since its commit is still sent from memory as it was.
                tx.create_topic("empty", "P1", None)?;
                tx.delete_topic("empty", Some("P1"))?;
                tx.add_member("C", 2)?;
                tx.remove_member("C:2", true)?;
                // A shared subscription from the latest message.
                tx.register_subscriber("S2")?;
                tx.create_topic("jobs", "P1", None)?;
                tx.subscribe("S2", "jobs", StartFrom::Latest, Some(shared()))?;
                tx.publish("jobs", "P1", vec![new_message("c", None)], 9, 0)
                    .map(drop)
            })
            .await
            .unwrap();
        // Leased once committed, then the leader's events.
        store
            .write(move |tx| {
                let leased = tx.lease("S2", &[("jobs".to_string(), shared())], None, (10, 10))?;
                assert_eq!(leased.messages.len(), 1, "the message is leased");
                tx.set_mode(Mode::Leader)?;
                tx.lead(1, &Have::new(), 120_000)
            })
            .await
            .unwrap();
        let last = store.own_seq();
        assert_eq!(last + 1 - first, 23, "every change recorded one event");
        let kept = crate::lock(&store.recent).between("B:1", first - 1, last, 100);
        assert_eq!(
            kept.map(|events| events.len() as u64),
            Some(last + 1 - first)
        );
        let (read, from_memory) = sent_after(&store, first - 1).await;
        assert_eq!(texts(&from_memory), texts(&read));
        let kinds = [
            "register_publisher",
            "register_subscriber",
            "create_topic",
            "subscribe",
            "ack",
            "ack_messages",
            "set_limits",
            "seek",
            "unsubscribe",
            "delete_topic",
            "add_member",
            "remove_member",
            "lease",
            "set_mode",
            "lead",
        ];
        for kind in kinds {
            let key = format!("\"{kind}\":");
            assert!(
                texts(&read).iter().any(|text| text.contains(&key)),
                "no {kind} event among {:?}",
                texts(&read)
            );
        }
        store.close();
    }

    #[tokio::test]
    async fn publishes_of_a_batch_that_failed_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_recording_with_a_peer(dir.path());
        store
            .write(|tx| {
                tx.register_publisher("P1")?;
                tx.create_topic("news", "P1", None)
            })
            .await
            .unwrap();
        let failed = store
            .write(|tx| {
                tx.publish("news", "P1", vec![new_message("lost", None)], 7, 0)?;
                Err::<(), _>(StoreError::Failed("after writing".into()))
            })
            .await;
        assert!(failed.is_err());
        store
            .write(|tx| tx.publish("news", "P1", vec![new_message("kept", None)], 8, 0))
            .await
            .unwrap();
        let kept = crate::lock(&store.recent).between("B:1", 2, 3, 100);
        let kept: Vec<EncodedEvent> = kept
            .expect("seq 3 kept")
            .into_iter()
            .map(|kept| kept.encoded)
            .collect();
        let payloads: Vec<String> = decoded(&kept)
            .into_iter()
            .map(|event| match event.change {
                Change::Publish { payload, .. } => payload,
                other => panic!("not a publish: {other:?}"),
            })
            .collect();
        assert_eq!(
            payloads,
            ["kept"],
            "the failed batch's seq 3 was given again"
        );
        store.close();
    }

    #[tokio::test]
    async fn a_sync_counts_headers_and_client_ids_in_its_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let headed = |n: usize| {
            let mut message = new_message("x", Some(&format!("m{n}")));
            message.headers = Some(Headers::from([("k".to_string(), "v".repeat(4096))]));
            message
        };
        let sent = (0..3).map(headed).collect();
        publish_to_a_new_topic(&store, sent).await;
        let budget = queries::SyncBudget {
            events: 100,
            bytes: 5000,
        };
        let theirs: Have = [("B:1".to_string(), 2)].into();
        let missing = store
            .missing(store.have(), theirs, HashSet::new(), budget)
            .await
            .unwrap();
        // The second message's headers take the sync past 5,000 bytes.
        assert_eq!(seqs(&missing), [3, 4]);
        store.close();
    }

    fn decoded(events: &[EncodedEvent]) -> Vec<Event> {
        events
            .iter()
            .map(|e| serde_json::from_slice(e.json()).unwrap())
            .collect()
    }

    fn seqs(events: &[EncodedEvent]) -> Vec<u64> {
        decoded(events).iter().map(|e| e.seq).collect()
    }

    /// Registers P1, creates topic "news" and publishes `sent` there.
    async fn publish_to_a_new_topic(store: &Store, sent: Vec<NewMessage>) -> Vec<Outcome> {
        store
            .write(move |tx| {
                tx.register_publisher("P1")?;
                tx.create_topic("news", "P1", None)?;
                tx.publish("news", "P1", sent, 7, 0)
            })
            .await
            .unwrap()
    }

    fn new_message(payload: &str, msg_id: Option<&str>) -> NewMessage {
        NewMessage {
            payload: payload.to_string(),
            headers: None,
            msg_id: msg_id.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn a_msg_id_stored_within_the_window_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let first = vec![new_message("a", Some("m1")), new_message("b", Some("m1"))];
        let outcomes = store
            .write(move |tx| {
                tx.register_publisher("P1")?;
                tx.create_topic("news", "P1", None)?;
                tx.publish("news", "P1", first, 1_000, 0)
            })
            .await
            .unwrap();
        // The second of one request repeats the first.
        let (seq, lamport) = match &outcomes[0] {
            Outcome::Stored(stamp) => *stamp,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            outcomes[1],
            Outcome::Duplicate("B:1".to_string(), seq, lamport)
        );
        // Within the window (stored at 1,000, looking back to 1,000): stored
        // nowhere; past it (looking back to 1,001 only): stored again.
        let outcomes = store
            .write(|tx| {
                let within = tx.publish(
                    "news",
                    "P1",
                    vec![new_message("c", Some("m1"))],
                    5_000,
                    1_000,
                )?;
                let past = tx.publish(
                    "news",
                    "P1",
                    vec![new_message("d", Some("m1"))],
                    5_000,
                    1_001,
                )?;
                let other =
                    tx.publish("news", "P1", vec![new_message("e", Some("m2"))], 5_000, 0)?;
                Ok([within, past, other].concat())
            })
            .await
            .unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::Duplicate("B:1".to_string(), seq, lamport)
        );
        assert!(matches!(outcomes[1], Outcome::Stored(_)));
        assert!(matches!(outcomes[2], Outcome::Stored(_)));
        assert_eq!(stored_payloads(&store).await, ["a", "d", "e"]);
        store.close();
    }

    #[tokio::test]
    async fn a_msg_id_outlives_its_message_until_the_window_passes_or_its_topic_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let publish = |payload: &str, at_ms: i64| {
            let message = new_message(payload, Some("m1"));
            move |tx: &mut WriteTx<'_>| tx.publish("news", "P1", vec![message], at_ms, 0)
        };
        let sweep = |expire_before_ms, forget_ids_before_ms| {
            let times = SweepTimes {
                now_ms: 10_000,
                expire_before_ms,
                forget_ids_before_ms,
            };
            move |tx: &mut WriteTx<'_>| tx.sweep(times, None, None, 100)
        };
        store
            .write(|tx| {
                tx.register_publisher("P1")?;
                tx.create_topic("news", "P1", None)
            })
            .await
            .unwrap();
        let first = store.write(publish("a", 1_000)).await.unwrap();
        // Expiry deletes the message (no subscriber needs it); its id stays.
        store.write(sweep(2_000, 0)).await.unwrap();
        assert!(stored_payloads(&store).await.is_empty());
        let Outcome::Stored((seq, lamport)) = first[0] else {
            panic!("{first:?}")
        };
        let repeat = store.write(publish("b", 2_000)).await.unwrap();
        assert_eq!(
            repeat,
            [Outcome::Duplicate("B:1".to_string(), seq, lamport)]
        );
        // Past the window the id is forgotten: a repeat is a new message.
        store.write(sweep(0, 1_001)).await.unwrap();
        let later = store.write(publish("c", 3_000)).await.unwrap();
        assert!(matches!(later[..], [Outcome::Stored(_)]), "{later:?}");
        // A deleted topic's ids go with it.
        store
            .write(|tx| {
                tx.delete_topic("news", Some("P1"))?;
                tx.create_topic("news", "P1", None)
            })
            .await
            .unwrap();
        let anew = store.write(publish("d", 3_000)).await.unwrap();
        assert!(matches!(anew[..], [Outcome::Stored(_)]), "{anew:?}");
        assert_eq!(stored_payloads(&store).await, ["d"]);
        store.close();
    }

    /// A publish event of `origin` carrying client id `msg_id`.
    fn keyed(origin: &str, seq: u64, payload: &str, msg_id: &str, published_at_ms: i64) -> Event {
        let mut event = publish_at(origin, seq, payload, published_at_ms);
        if let Change::Publish { msg_id: id, .. } = &mut event.change {
            *id = Some(msg_id.to_string());
        }
        event
    }

    /// D led and stored m1; C's writes, which no majority held while D
    /// led, come in with the next lead (this broker's): its copy of m1 is
    /// named a repeat and dropped, its m2 and its m1 published past the
    /// window of D's stay; unless the mode was set since D's lead (gossip
    /// mode may have delivered either copy).
    #[tokio::test]
    async fn a_lead_names_the_late_copies_of_a_msg_id_ordered_before() {
        let d_lead = Event {
            origin: "D:1".to_string(),
            seq: 1,
            lamport: 10,
            change: Change::Lead {
                term: 4,
                prev: None,
                base: [("A:1".to_string(), 2)].into(),
                repeats: Vec::new(),
            },
        };
        let set_mode = event(
            3,
            Change::SetMode {
                mode: "leader".to_string(),
            },
        );
        let orphan = client::peer::EventId {
            origin: "C:1".to_string(),
            seq: 1,
        };
        for (mode_set_since, expected) in [(false, vec![orphan]), (true, vec![])] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let mut events = history()[..2].to_vec();
            events.extend([
                d_lead.clone(),
                keyed("D:1", 2, "x", "m1", 1_000),
                // Within the window of x; x-much-later is not.
                keyed("C:1", 1, "x-orphan", "m1", 100_000),
                keyed("C:1", 2, "y", "m2", 900),
                keyed("C:1", 3, "x-much-later", "m1", 200_000),
            ]);
            if mode_set_since {
                events.push(set_mode.clone());
            }
            receive(&store, events).await;
            let majority: Have = [("A:1", 3), ("C:1", 3), ("D:1", 2)]
                .map(|(origin, seq)| (origin.to_string(), seq))
                .into();
            store
                .write(move |tx| tx.lead(5, &majority, 120_000))
                .await
                .unwrap();
            let leads = store.read(|conn| Ok(queries::leads(conn)?)).await.unwrap();
            let mine = leads.iter().find(|lead| lead.id.origin == "B:1").unwrap();
            assert_eq!(mine.repeats, expected, "mode set since: {mode_set_since}");
            let repeats = mine.repeats.clone();
            let dropped = store
                .write(move |tx| tx.drop_messages(&repeats))
                .await
                .unwrap();
            assert_eq!(dropped, expected.len());
            let kept = stored_payloads(&store).await;
            let orphan_kept = kept.iter().any(|payload| payload == "x-orphan");
            assert_eq!(orphan_kept, mode_set_since, "{kept:?}");
            store.close();
        }
    }

    #[tokio::test]
    async fn a_received_run_of_messages_keeps_only_those_stamped_after_a_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let deletion = Event {
            origin: "B:1".to_string(),
            seq: 1,
            lamport: 45,
            change: Change::DeleteTopic {
                topic: "news".into(),
                publisher: "P1".into(),
            },
        };
        receive(&store, vec![deletion]).await;
        // One request's messages (stamps 30–60) straddle the deletion (45).
        let mut events = history()[..2].to_vec();
        events.extend((3..=6).map(|seq| publish(seq, &format!("m{seq}"))));
        let have = receive(&store, events).await;
        assert_eq!(have.get("A:1"), Some(&6));
        assert_eq!(stored_payloads(&store).await, ["m5", "m6"]);
        // A run after the deletion goes in whole.
        let later: Vec<Event> = (7..=9)
            .map(|seq| publish(seq, &format!("m{seq}")))
            .collect();
        receive(&store, later).await;
        assert_eq!(
            stored_payloads(&store).await,
            ["m5", "m6", "m7", "m8", "m9"]
        );
        store.close();
    }

    /// The bound the `clock` table holds above every stamp.
    async fn clock_bound(store: &Store) -> u64 {
        store
            .read(|conn| Ok(conn.query_row("SELECT lamport FROM clock", [], |row| row.get(0))?))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_reopened_store_stamps_past_every_stamp_it_issued_or_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        receive(&store, history()).await;
        store.write(|tx| tx.register_publisher("P2")).await.unwrap();
        let bound = clock_bound(&store).await;
        assert!(bound > store.lamport(), "{bound} <= {}", store.lamport());
        // Commits below the bound leave it as it is.
        store.write(|tx| tx.register_publisher("P3")).await.unwrap();
        assert_eq!(clock_bound(&store).await, bound);
        let last = store.lamport();
        store.close();
        let store = open(dir.path());
        assert!(store.lamport() >= last);
        store.write(|tx| tx.register_publisher("P4")).await.unwrap();
        assert!(store.lamport() > last, "{} <= {last}", store.lamport());
        store.close();
    }

    #[tokio::test]
    async fn a_request_that_fails_after_writing_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let failed = store
            .write(|tx| {
                tx.register_publisher("P1")?;
                Err::<(), _>(StoreError::Invalid("refused after writing".into()))
            })
            .await;
        assert!(failed.is_err());
        let kept = store
            .read(|conn| Ok(queries::publisher_exists(conn, "P1")?))
            .await
            .unwrap();
        assert!(!kept, "the failed request's registration was kept");
        // The writer goes on, and the failed request's seq is not used up.
        store.write(|tx| tx.register_publisher("P2")).await.unwrap();
        assert_eq!(store.own_seq(), 1);
        store.close();
    }

    #[tokio::test]
    async fn no_event_of_its_own_is_recorded_before_the_broker_holds_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_a_peer(dir.path());
        assert!(!store.holds_own_history(), "new, with a peer to learn from");
        let refused = store.write(|tx| tx.register_publisher("P9")).await;
        assert!(
            matches!(refused, Err(StoreError::CatchingUp)),
            "{refused:?}"
        );
        // Its own events come back from the peer, with their seqs.
        let mine: Vec<Event> = history()
            .into_iter()
            .map(|event| Event {
                origin: "B:1".to_string(),
                ..event
            })
            .collect();
        receive(&store, mine).await;
        assert_eq!(store.own_seq(), 5);
        store.own_history_held();
        store.write(|tx| tx.register_publisher("P9")).await.unwrap();
        assert_eq!(store.own_seq(), 6, "the next seq after its history");
        store.close();
    }

    #[tokio::test]
    async fn a_lead_bases_other_origins_on_what_a_majority_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        receive(&store, history()).await; // A:1..5
        store.write(|tx| tx.register_publisher("P2")).await.unwrap(); // B:1
        let majority: Have = [("A:1".to_string(), 3)].into_iter().collect();
        store
            .write(move |tx| tx.lead(7, &majority, 120_000))
            .await
            .unwrap(); // B:2
        let leads = store.read(|conn| Ok(queries::leads(conn)?)).await.unwrap();
        assert_eq!(leads.len(), 1);
        let lead = &leads[0];
        assert_eq!(
            (lead.id.origin.as_str(), lead.id.seq, lead.term),
            ("B:1", 2, 7)
        );
        assert_eq!(lead.prev, None);
        let base: Have = [("A:1".to_string(), 3), ("B:1".to_string(), 1)]
            .into_iter()
            .collect();
        assert_eq!(lead.base, base, "A:4..5 only this broker holds");
        // The next lead follows on it, never below its base.
        let fewer: Have = Have::new();
        store
            .write(move |tx| tx.lead(8, &fewer, 120_000))
            .await
            .unwrap();
        let latest = store
            .read(|conn| Ok(queries::latest_lead(conn)?))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.prev.map(|p| p.seq), Some(2));
        assert_eq!(latest.base.get("A:1"), Some(&3));
        store.close();
    }
}
