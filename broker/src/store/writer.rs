//! The writer thread: group commit of everything queued.
//!
//! Requests arrive as closures over a [`WriteTx`]. The thread takes every
//! request waiting in the queue, runs them in one transaction, commits, and
//! only then answers them and wakes the long polls concerned (see
//! `wakeups`). A request nobody waits for may ask to commit lazily, with
//! the next one that cannot wait and syncs ([`Commit::Lazily`]); events
//! received from a peer need no sync of their own in gossip mode
//! ([`Kind::Received`]). A request checks everything before it writes, so
//! a refused one leaves no trace without a savepoint of its own
//! (savepoints copy every page they touch, which cost more than the writes
//! themselves).
//! Sequence numbers and the Lamport clock live here, so events are numbered
//! in commit order.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::peer::{Have, PublishEvent};
use client::wire::{Headers, Message, NewMessage};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::apply::{insert_messages, MessageRow, MessageRun};
use super::error::StoreError;
use super::fresh::{FreshCommits, Note};
use super::recent::{RecentEvents, Recording};
use super::schema;
use crate::clock::LamportClock;
use crate::config::Mode;
use crate::event::{Change, Event};
use crate::lock;
use crate::metrics::CommitMetrics;
use crate::wakeups::{Key, Wakeups};

/// Most requests taken from the queue for one transaction (held lazy
/// requests may join them, see [`Held`]).
const MAX_BATCH: usize = 4096;

/// Longest lazy requests wait for a request that syncs to commit with.
/// Without one they commit alone, with a sync that received events queued
/// behind them wait for: with 5 ms, a subscriber's broker fed by a peer
/// at 1,000 messages a second synced its acknowledgements alone 200 times
/// a second, and its p99 was no lower than with every commit synced; with
/// 20 ms, a quarter to a third lower (BENCHMARKS.md, thirteenth look).
const LAZY_WAIT: Duration = Duration::from_millis(20);

/// How far ahead of the Lamport clock the `clock` table is written. The
/// table holds a bound above every stamp issued or seen, not the clock
/// itself: it is rewritten only when the clock passes it, instead of at
/// every commit (a page less in each commit's write to the log), and a
/// restarted broker's clock starts at the bound, past every stamp it had.
const CLOCK_RESERVATION: u64 = 1 << 16;

/// Answers a request once its transaction has committed (`Ok`) or failed.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued request: runs in the transaction, says whether it succeeded.
type Job = Box<dyn for<'c> FnOnce(&mut WriteTx<'c>) -> (bool, Reply) + Send>;

/// When a request wants its transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// As soon as the writer takes it: a client waits for the answer.
    Now,
    /// With the next request that cannot wait and syncs (`Now`), or after
    /// [`LAZY_WAIT`]: for a write no client waits for (an
    /// auto-acknowledgement), which then costs no commit, and no fsync, of
    /// its own.
    Lazily,
}

/// What the writer does with a queued request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// [`Commit::Now`].
    Now,
    /// [`Commit::Lazily`].
    Lazily,
    /// As soon as the writer takes it, but in gossip mode without a sync of
    /// its own: events received from a peer, which their origin synced
    /// before it sent them (under `--durability fsync`). The broker's next
    /// commit that syncs makes them durable here too: the write-ahead log
    /// keeps commits in order. Lost in a crash of the machine before that,
    /// they come again from their origin, which is answered a smaller
    /// `have`. None of this broker's seqs or answers to clients depend on
    /// them; in leader mode a majority's `have` must be on disk, so there
    /// they sync like any other.
    Received,
}

impl From<Commit> for Kind {
    fn from(commit: Commit) -> Kind {
        match commit {
            Commit::Now => Kind::Now,
            Commit::Lazily => Kind::Lazily,
        }
    }
}

/// A request in the queue.
struct Queued {
    job: Job,
    kind: Kind,
}

/// What a batch's requests leave for after its commit (or its failure).
#[derive(Default)]
struct Ran {
    /// The long polls and tasks to wake.
    woken: BTreeSet<Key>,
    /// How far the batch raised what this broker holds of other origins.
    received: Have,
    /// One answer per request run, in order.
    replies: Vec<Reply>,
    /// The own events recorded, for the peers.
    recorded: Recording,
    /// The commit's note, for woken pulls.
    note: Note,
}

impl Ran {
    fn new(requests: usize) -> Ran {
        Ran {
            replies: Vec::with_capacity(requests),
            note: Note::new(),
            ..Ran::default()
        }
    }
}

/// What the writer remembers between transactions.
#[derive(Debug, Clone)]
pub struct WriterState {
    me: String,
    last_seq: u64,
    /// The seq of its latest own event that is not an acknowledgement
    /// (replication sends those at once, see `replication_key`).
    last_seq_besides_acks: u64,
    clock: LamportClock,
    /// The bound stored in the `clock` table: the clock is at most this.
    clock_bound: u64,
}

impl WriterState {
    /// Restores this broker's counters from the database.
    pub fn load(conn: &Connection, me: &str) -> rusqlite::Result<WriterState> {
        let last_seq = super::queries::have_of(conn, me)?;
        let bound: u64 = conn.query_row("SELECT lamport FROM clock WHERE id = 0", [], |row| {
            row.get(0)
        })?;
        Ok(WriterState {
            me: me.to_string(),
            last_seq,
            last_seq_besides_acks: last_seq,
            clock: LamportClock::starting_at(bound),
            clock_bound: bound,
        })
    }

    pub fn lamport(&self) -> u64 {
        self.clock.now()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn last_seq_besides_acks(&self) -> u64 {
        self.last_seq_besides_acks
    }
}

/// What the writer publishes after every commit, for readers.
pub struct Counters {
    pub lamport: Arc<AtomicU64>,
    pub own_seq: Arc<AtomicU64>,
    /// The seq of the latest own event that is not an acknowledgement.
    pub own_seq_besides_acks: Arc<AtomicU64>,
    /// The cluster-wide mode, once set at run time.
    pub mode: Arc<Mutex<Option<Mode>>>,
    /// Counts commits that set the mode, and commits that added leads.
    pub mode_version: Arc<AtomicU64>,
    pub leads_version: Arc<AtomicU64>,
    /// Whether events of this broker's own may be recorded (see
    /// `Store::holds_own_history`).
    pub own_history: watch::Sender<bool>,
    /// What this broker holds, per origin, as of the last commit.
    pub have: watch::Sender<Arc<Have>>,
    /// What of it is on disk: as of the last commit that synced (see
    /// [`Kind::Received`]).
    pub synced: Arc<Mutex<Arc<Have>>>,
    /// How long commits take and how many requests each holds.
    pub commits: Arc<CommitMetrics>,
    /// Counts the commits that succeeded (the checkpoint thread's cue).
    pub committed: Arc<AtomicU64>,
    /// This broker's latest own events, kept for replication while
    /// `keeping`: once it has peers.
    pub recent: Arc<Mutex<RecentEvents>>,
    /// Whether the writer records them now (see `Store::keep_own_events`).
    pub keeping: Arc<AtomicBool>,
    /// What the latest commits added, for waiting pulls (see `fresh`).
    pub fresh: Arc<FreshCommits>,
}

/// One request's view of the open transaction.
pub struct WriteTx<'c> {
    pub(super) conn: &'c Connection,
    state: &'c mut WriterState,
    woken: &'c mut BTreeSet<Key>,
    /// Per origin, how far received events took what this broker holds.
    received: &'c mut Have,
    /// Whether this broker holds its own history, so that it may record
    /// events of its own: before, their seqs may be taken already.
    may_record: bool,
    /// The events of its own the request recorded, encoded, when the
    /// writer keeps them for replication (see `recent`).
    recorded: Option<&'c mut Recording>,
    /// What the request added, for the pulls waiting (see `fresh`); none
    /// while no pull waits on a topic.
    note: Option<&'c mut Note>,
    /// Which topics pulls wait on: only their messages are noted whole.
    wakeups: &'c Wakeups,
}

impl WriteTx<'_> {
    /// Numbers and stamps a local change, stores it and merges it into the state.
    pub(super) fn record(&mut self, change: Change) -> Result<Event, StoreError> {
        self.check_may_record()?;
        self.state.last_seq += 1;
        let event = Event {
            origin: self.state.me.clone(),
            seq: self.state.last_seq,
            lamport: self.state.clock.tick(),
            change,
        };
        super::apply::apply(self.conn, &event)?;
        self.note_change(&event.change);
        self.woken.extend(wakes(&event.change));
        let key = replication_key(&event.change);
        if key == Key::LocalEvents {
            self.state.last_seq_besides_acks = event.seq;
        }
        self.woken.insert(key);
        if let Some(recorded) = self.recorded.as_deref_mut() {
            recorded.keep(event.seq, |encoder| encoder.push(&event));
        }
        Ok(event)
    }

    /// Numbers, stamps and stores local messages on `topic`, one publish
    /// event each, as `record` would; the caller checked that the topic is
    /// live. Their stamps are newer than any deletion this broker holds, so
    /// the deletion check a received message needs (in `apply`) is skipped.
    /// Returns each message's `(seq, lamport)`.
    pub(super) fn record_messages(
        &mut self,
        topic: &str,
        publisher: &str,
        messages: &[NewMessage],
        published_at_ms: i64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        self.check_may_record()?;
        let stamped: Vec<(u64, u64)> = messages
            .iter()
            .map(|_| {
                self.state.last_seq += 1;
                (self.state.last_seq, self.state.clock.tick())
            })
            .collect();
        let no_headers = Headers::new();
        let rows: Vec<MessageRow<'_>> = stamped
            .iter()
            .zip(messages)
            .map(|(&stamp, message)| {
                let headers = message.headers.as_ref().unwrap_or(&no_headers);
                MessageRow::new(stamp, &message.payload, headers, message.msg_id.as_deref())
            })
            .collect();
        let run = MessageRun {
            origin: &self.state.me,
            topic,
            publisher,
            published_at_ms,
            messages: &rows,
        };
        insert_messages(self.conn, &run)?;
        if !stamped.is_empty() {
            let key = Key::Topic(topic.to_string());
            if self.note.is_some() {
                let kept = self.wakeups.watches(&key).then(|| {
                    self.fresh_messages(topic, publisher, messages, &stamped, published_at_ms)
                });
                self.note_with(|note| note.add_messages(topic, kept));
            }
            self.state.last_seq_besides_acks = self.state.last_seq;
            self.woken.insert(key);
            self.woken.insert(Key::LocalEvents);
        }
        if let Some(recorded) = self.recorded.as_deref_mut() {
            for (&(seq, lamport), message) in stamped.iter().zip(messages) {
                let event = PublishEvent {
                    origin: &self.state.me,
                    seq,
                    lamport,
                    topic,
                    publisher,
                    payload: &message.payload,
                    published_at_ms,
                    headers: message.headers.as_ref().unwrap_or(&no_headers),
                    msg_id: message.msg_id.as_deref(),
                };
                recorded.keep(seq, |encoder| encoder.push_publish(&event));
            }
        }
        Ok(stamped)
    }

    /// Applies events received from a peer. Per origin only the next event
    /// (`have + 1`) is applied, so what this broker holds stays a gapless
    /// prefix; duplicates and events past a gap are passed over (the peer
    /// sends them again from the `have` returned). Returns `have` afterwards.
    pub fn receive(&mut self, events: Vec<Event>) -> Result<Have, StoreError> {
        let mut received: HashMap<String, u64> = HashMap::new();
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            let have = match received.get(&event.origin) {
                Some(have) => *have,
                None => self.have_of(&event.origin)?,
            };
            if event.seq != have + 1 {
                continue;
            }
            self.not_plain();
            // The messages of one publish request travel together: stored
            // as one run, as their origin stored them.
            let mut run = vec![event];
            while let Some(next) = events.next_if(|next| continues_run(&run[run.len() - 1], next)) {
                run.push(next);
            }
            let first = &run[0];
            if first.change != Change::Pruned {
                for event in &run {
                    self.state.clock.observe(event.lamport);
                }
                super::apply::apply_run(self.conn, &run)?;
                self.woken.extend(wakes(&first.change));
            }
            let last = run[run.len() - 1].seq;
            let origin = run.swap_remove(0).origin;
            if origin == self.state.me {
                // Our own events coming back: this broker lost its data.
                self.state.last_seq = last;
                self.state.last_seq_besides_acks = last;
            }
            received.insert(origin, last);
        }
        for (origin, have) in received.into_iter().filter(|(o, _)| *o != self.state.me) {
            raise_have(self.conn, &origin, have)?;
            self.received.insert(origin, have);
        }
        let mut have = super::queries::have(self.conn)?;
        have.insert(self.state.me.clone(), self.state.last_seq);
        Ok(have)
    }

    /// The seq up to which this broker holds every event of `origin`.
    pub(super) fn have_of(&self, origin: &str) -> Result<u64, StoreError> {
        if origin == self.state.me {
            return Ok(self.state.last_seq);
        }
        Ok(super::queries::have_of(self.conn, origin)?)
    }

    /// Notes what a recorded change means to waiting pulls: an
    /// acknowledgement of own messages, or a change that is not plain.
    fn note_change(&mut self, change: &Change) {
        let me = self.state.me.as_str();
        match change {
            Change::Ack {
                subscriber,
                topic,
                acked_origin,
                acked_seq,
                ..
            } => {
                if acked_origin == me {
                    self.note_with(|note| note.add_ack(subscriber, topic, *acked_seq));
                }
            }
            Change::AckMessages {
                subscriber,
                topic,
                ids,
                ..
            } => {
                let own = ids.iter().filter(|id| id.origin == me).map(|id| id.seq);
                if let Some(highest) = own.max() {
                    self.note_with(|note| note.add_ack(subscriber, topic, highest));
                }
            }
            _ => self.not_plain(),
        }
    }

    fn note_with(&mut self, change: impl FnOnce(&mut Note)) {
        if let Some(note) = self.note.as_deref_mut() {
            change(note);
        }
    }

    /// The request deleted messages (or wrote something else without an
    /// event): waiting pulls read the store.
    pub(super) fn not_plain(&mut self) {
        self.note_with(Note::not_plain);
    }

    /// Just stored messages, as a pull gives them out.
    fn fresh_messages(
        &self,
        topic: &str,
        publisher: &str,
        messages: &[NewMessage],
        stamped: &[(u64, u64)],
        published_at_ms: i64,
    ) -> Vec<Message> {
        let origin = &self.state.me;
        stamped
            .iter()
            .zip(messages)
            .map(|(&(seq, lamport), message)| Message {
                id: client::wire::message_id(origin, seq),
                origin: origin.clone(),
                seq,
                topic: topic.to_string(),
                publisher: publisher.to_string(),
                payload: message.payload.clone(),
                lamport,
                published_at_ms,
                headers: message.headers.clone().unwrap_or_default(),
                msg_id: message.msg_id.clone(),
                deliveries: 0,
            })
            .collect()
    }

    fn check_may_record(&self) -> Result<(), StoreError> {
        if self.may_record {
            Ok(())
        } else {
            Err(StoreError::CatchingUp)
        }
    }

    /// This broker's id: the origin of the events it records.
    pub(super) fn me(&self) -> &str {
        &self.state.me
    }

    /// The seq of this broker's latest event.
    pub(super) fn last_seq(&self) -> u64 {
        self.state.last_seq
    }
}

/// Whether `next` continues the run of messages that `last` ends: the next
/// seq of the same origin, from the same publish request.
fn continues_run(last: &Event, next: &Event) -> bool {
    next.origin == last.origin
        && next.seq == last.seq + 1
        && super::apply::run_key(next).is_some_and(|key| Some(key) == super::apply::run_key(last))
}

/// Which long polls a committed change concerns.
fn wakes(change: &Change) -> Option<Key> {
    match change {
        // A lease change may give messages out again (a nack).
        Change::Publish { topic, .. }
        | Change::DeleteTopic { topic, .. }
        | Change::Lease { topic, .. } => Some(Key::Topic(topic.clone())),
        Change::Subscribe { subscriber, .. }
        | Change::Unsubscribe { subscriber, .. }
        | Change::Seek { subscriber, .. } => Some(Key::Subscriber(subscriber.clone())),
        Change::SetMode { .. } => Some(Key::ModeChanged),
        Change::AddMember { .. } | Change::RemoveMember { .. } => Some(Key::MembersChanged),
        Change::Lead { .. } => Some(Key::LeadsChanged),
        _ => None,
    }
}

/// What an event of this broker's own wakes in replication: an
/// acknowledgement can be sent on later than the other events (no client
/// waits for a peer to hold it in gossip mode, and each sync is a commit
/// on the peer).
fn replication_key(change: &Change) -> Key {
    match change {
        Change::Ack { .. } | Change::AckMessages { .. } => Key::LocalAcks,
        _ => Key::LocalEvents,
    }
}

/// Handle to the writer thread.
pub struct Writer {
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    /// Jobs sent and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
    /// Set by `stop`: the thread then empties the log after its last
    /// commit (not when the writer is merely dropped).
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(
        conn: Connection,
        state: WriterState,
        wakeups: Arc<Wakeups>,
        counters: Counters,
        syncing: Syncing,
    ) -> Writer {
        let (queue, jobs) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut thread = WriterThread {
            conn,
            state,
            wakeups,
            counters,
            queued: queued.clone(),
            stopping: stopping.clone(),
            syncing,
            unsynced: false,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || thread.run(jobs))
            .expect("spawning the writer thread");
        Writer {
            queue: Mutex::new(Some(queue)),
            queued,
            stopping,
            thread: Mutex::new(Some(handle)),
        }
    }

    /// Jobs waiting for the writer thread now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub async fn submit<T, F>(&self, commit: Commit, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit_as(Kind::from(commit), change).await
    }

    /// Queues events received from a peer (see [`Kind::Received`]).
    pub async fn submit_received<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit_as(Kind::Received, change).await
    }

    async fn submit_as<T, F>(&self, kind: Kind, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |tx: &mut WriteTx<'_>| {
            let result = change(tx);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = answer.send(committed.and(result));
            });
            (ok, reply)
        });
        self.queued.fetch_add(1, Ordering::AcqRel);
        let sent = match &*lock(&self.queue) {
            Some(queue) => queue.send(Queued { job, kind }).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Closed);
        }
        // The writer drops a request unanswered only when it failed.
        answered
            .await
            .map_err(|_| StoreError::Failed("the write was not committed".to_string()))?
    }

    /// Closes the queue, lets the thread commit what is in it and empty
    /// the log, and joins it.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        drop(lock(&self.queue).take());
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }
}

struct WriterThread {
    conn: Connection,
    state: WriterState,
    wakeups: Arc<Wakeups>,
    counters: Counters,
    queued: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    syncing: Syncing,
    /// Whether a commit left the log unsynced since the last sync.
    unsynced: bool,
}

/// Which commits sync the log to disk.
pub struct Syncing {
    /// `--durability fsync`: every commit that holds more than [`Kind::Received`] requests.
    pub fsync: bool,
    /// The mode in force until the cluster's mode is set.
    pub configured_mode: Mode,
    /// Whether the connection syncs the log at commit now: `synchronous`
    /// is `FULL` (else `NORMAL`).
    pub at_commit: bool,
}

impl WriterThread {
    fn run(&mut self, jobs: mpsc::Receiver<Queued>) {
        // What the process before this one wrote may still be only in the
        // system's cache, if it crashed: on disk before it counts as such.
        if self.syncing.fsync {
            if let Err(error) = self.sync_log() {
                tracing::warn!("cannot sync the write-ahead log at the start: {error}");
                self.unsynced = true;
            }
        }
        let mut held = Held::default();
        loop {
            // Checked before taking more: a steady flow of received events
            // would otherwise hold them past their deadline.
            if held.until.is_some_and(|until| until <= Instant::now()) {
                self.commit(held.release());
            }
            let first = match held.until {
                None => jobs.recv().ok(),
                Some(until) => {
                    match jobs.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(queued) => Some(queued),
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let Some(first) = first else { break };
            let mut taken = vec![first];
            take_queued(&jobs, &mut taken);
            self.queued.fetch_sub(taken.len(), Ordering::AcqRel);
            let batch = held.take_ready(taken);
            if !batch.is_empty() {
                self.commit(batch);
            }
        }
        let rest = held.release();
        if !rest.is_empty() {
            self.commit(rest);
        }
        if self.stopping.load(Ordering::Acquire) {
            self.empty_log();
        }
    }

    /// After the last commit of a stop: copies the write-ahead log back
    /// into the database and empties it, so that a stopped broker's
    /// `broker.db` alone holds everything (a copy of it, without the log
    /// beside it, held nothing of the last 100 ms, and a young broker's
    /// held not even the tables). When that fails the log stays, with a
    /// warning, and nothing is lost.
    fn empty_log(&self) {
        match schema::checkpoint_all(&self.conn) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "another connection still read the write-ahead log at the stop; \
                 it stays beside the database (nothing is lost; copy both files)"
            ),
            Err(error) => tracing::warn!(
                "the last checkpoint failed ({error}); the write-ahead log stays \
                 beside the database (nothing is lost; copy both files)"
            ),
        }
    }

    /// Runs a batch in one transaction and answers every request in it.
    fn commit(&mut self, batch: Vec<Queued>) {
        let (size, started) = (batch.len(), Instant::now());
        let before = self.state.clone();
        let mut ran = Ran::new(size);
        let changes = self.conn.total_changes();
        let outcome = self.run_batch(batch, &mut ran);
        let wrote = self.conn.total_changes() != changes;
        let Ran {
            woken,
            received,
            replies,
            recorded,
            note,
        } = ran;
        let committed = match outcome {
            Ok(()) => {
                let durable = self.make_durable(&before, &woken, wrote);
                // Kept before `have` says they are here, so that a sync
                // that sees them there finds them kept.
                if !recorded.is_empty() {
                    let kept = recorded.finish();
                    let mut recent = lock(&self.counters.recent);
                    kept.into_iter().for_each(|kept| recent.push(kept));
                }
                self.publish_have(received);
                let counters = &self.counters;
                match durable {
                    Ok(true) => *lock(&counters.synced) = counters.have.borrow().clone(),
                    Ok(false) => {
                        counters.commits.unsynced.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                counters
                    .lamport
                    .store(self.state.lamport(), Ordering::Release);
                counters
                    .own_seq
                    .store(self.state.last_seq, Ordering::Release);
                counters
                    .own_seq_besides_acks
                    .store(self.state.last_seq_besides_acks, Ordering::Release);
                if woken.contains(&Key::ModeChanged) {
                    self.publish_mode();
                    self.counters.mode_version.fetch_add(1, Ordering::Release);
                }
                if woken.contains(&Key::LeadsChanged) {
                    self.counters.leads_version.fetch_add(1, Ordering::Release);
                }
                counters.fresh.note(self.state.last_seq, note);
                self.counters.committed.fetch_add(1, Ordering::Release);
                for key in &woken {
                    self.wakeups.wake(key);
                }
                durable.map(drop)
            }
            Err(error) => {
                tracing::error!("commit failed: {error}");
                self.state = before;
                Err(error)
            }
        };
        // Counted before the answers, so that an answered write is counted.
        let commits = &self.counters.commits;
        commits.duration.observe(started.elapsed().as_secs_f64());
        commits.batch_size.observe(size as f64);
        for reply in replies {
            reply(committed.as_ref().map(|_| ()).map_err(clone_failure));
        }
    }

    /// After a commit that wrote (`wrote`: changed rows) or not, says
    /// whether everything committed so far is on disk (`false`: a commit
    /// skipped the sync, see [`Kind::Received`]). A commit that skipped it
    /// is synced now when the batch did something that must be on disk
    /// before anyone hears of it: this broker's own events came back (the
    /// seqs it goes on from), the mode changed (leader mode's first writes
    /// may be in it, for whose majority this broker's answer counts), or
    /// the clock's bound moved (a restarted broker's stamps must pass every
    /// stamp it showed). A commit that should sync but wrote nothing does
    /// not (SQLite skips it), so what an earlier one skipped is synced then
    /// (the retention sweep commits once a second). Under `--durability
    /// normal` nothing is synced, and all counts as on disk.
    fn make_durable(
        &mut self,
        before: &WriterState,
        woken: &BTreeSet<Key>,
        wrote: bool,
    ) -> Result<bool, StoreError> {
        let syncing = &self.syncing;
        if !syncing.fsync || (syncing.at_commit && wrote) {
            self.unsynced = false;
            return Ok(true);
        }
        self.unsynced |= wrote;
        if !self.unsynced {
            return Ok(true);
        }
        let must = syncing.at_commit
            || self.state.last_seq != before.last_seq
            || self.state.clock_bound != before.clock_bound
            || woken.contains(&Key::ModeChanged);
        if !must {
            return Ok(false);
        }
        self.sync_log().map_err(|error| {
            tracing::error!("cannot sync the write-ahead log: {error}");
            StoreError::Failed(format!("cannot sync the write-ahead log: {error}"))
        })?;
        self.unsynced = false;
        Ok(true)
    }

    /// Syncs the write-ahead log to disk, as a commit under
    /// `synchronous=FULL` does: SQLite has no call that syncs without a
    /// write, and the commit that skipped it is done.
    fn sync_log(&self) -> std::io::Result<()> {
        let database = self
            .conn
            .path()
            .ok_or_else(|| std::io::Error::other("no file"))?;
        match std::fs::File::open(format!("{database}-wal")) {
            Ok(log) => log.sync_data(),
            // No log: nothing in it to sync.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Makes what this broker holds after a commit visible to readers, when
    /// it changed.
    fn publish_have(&self, received: Have) {
        let own = (self.state.last_seq > 0).then(|| (self.state.me.clone(), self.state.last_seq));
        self.counters.have.send_if_modified(|have| {
            let moved: Vec<(String, u64)> = received
                .into_iter()
                .chain(own)
                .filter(|(origin, seq)| have.get(origin).is_none_or(|held| held < seq))
                .collect();
            if moved.is_empty() {
                return false;
            }
            Arc::make_mut(have).extend(moved);
            true
        });
    }

    /// Makes a committed change of the cluster's mode visible to readers.
    fn publish_mode(&self) {
        match super::queries::setting(&self.conn, "mode") {
            Ok(mode) => *lock(&self.counters.mode) = mode.as_deref().and_then(Mode::parse),
            Err(error) => tracing::error!("cannot read the cluster's mode: {error}"),
        }
    }

    /// Makes the connection sync the log at the commit of `batch` unless
    /// the batch holds nothing but received events in gossip mode (see
    /// [`Kind::Received`]). SQLite takes the setting only between
    /// transactions.
    fn sync_as_needed(&mut self, batch: &[Queued]) -> Result<(), StoreError> {
        let syncing = &mut self.syncing;
        if !syncing.fsync {
            return Ok(());
        }
        let mode = lock(&self.counters.mode).unwrap_or(syncing.configured_mode);
        let sync = syncs(batch.iter().map(|queued| queued.kind), mode);
        if sync != syncing.at_commit {
            let level = if sync { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", level)?;
            syncing.at_commit = sync;
        }
        Ok(())
    }

    /// Runs `batch`'s requests in one transaction and commits it; `ran`
    /// gathers what the requests left, also when the batch fails.
    fn run_batch(&mut self, batch: Vec<Queued>, ran: &mut Ran) -> Result<(), StoreError> {
        self.sync_as_needed(&batch)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let start_seq = self.state.last_seq;
        let may_record = *self.counters.own_history.borrow();
        let keeping = self.counters.keeping.load(Ordering::Acquire);
        // Without a pull waiting on a topic no request is noted, and the
        // commit is not plain: a pull that starts waiting meanwhile reads.
        let noting = self.wakeups.watches_topics();
        if !noting {
            ran.note.not_plain();
        }
        for Queued { job, .. } in batch {
            let snapshot = self.state.clone();
            let changes = tx.total_changes();
            let mut keys = BTreeSet::new();
            let mut got = Have::new();
            let mark = ran.recorded.mark();
            let mut noted = Note::new();
            let mut write = WriteTx {
                conn: &tx,
                state: &mut self.state,
                woken: &mut keys,
                received: &mut got,
                may_record,
                recorded: keeping.then_some(&mut ran.recorded),
                note: noting.then_some(&mut noted),
                wakeups: &self.wakeups,
            };
            // A panicking request is a bug: it is left unanswered (its
            // caller gets an internal error); the rest go on.
            let ok = match catch_unwind(AssertUnwindSafe(|| job(&mut write))) {
                Ok((ok, reply)) => {
                    ran.replies.push(reply);
                    ok
                }
                Err(_) => {
                    tracing::error!("a write request panicked");
                    false
                }
            };
            if ok {
                ran.woken.append(&mut keys);
                ran.received.extend(got);
                ran.note.append(noted);
                continue;
            }
            ran.recorded.undo(mark);
            self.state = snapshot;
            // Requests are checked before they write, so a refused one
            // changed nothing. One that failed after writing (a storage
            // failure or a bug) cannot be undone alone: the batch fails.
            if tx.total_changes() != changes || tx.is_autocommit() {
                return Err(StoreError::Failed(
                    "a write failed half-way; its batch was rolled back".to_string(),
                ));
            }
        }
        if self.state.last_seq != start_seq {
            raise_have(&tx, &self.state.me, self.state.last_seq)?;
        }
        if self.state.lamport() > self.state.clock_bound {
            let bound = self.state.lamport() + CLOCK_RESERVATION;
            tx.prepare_cached("UPDATE clock SET lamport = ?1 WHERE id = 0")?
                .execute([bound])?;
            self.state.clock_bound = bound;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Whether the commit of requests of `kinds` syncs the log to disk, in
/// `mode`, under `--durability fsync`.
fn syncs(mut kinds: impl Iterator<Item = Kind>, mode: Mode) -> bool {
    mode == Mode::Leader || kinds.any(|kind| kind != Kind::Received)
}

/// Lazy requests the writer holds until a request that syncs comes to
/// commit with, or until [`LAZY_WAIT`] after the first of them.
#[derive(Default)]
struct Held {
    lazy: Vec<Queued>,
    until: Option<Instant>,
}

impl Held {
    /// What of `taken` (in queue order) commits now: with a request that
    /// syncs, everything held and taken, in the order it came (received
    /// events that went ahead aside; up to twice [`MAX_BATCH`]); else the
    /// received events alone, while the lazy requests wait on.
    fn take_ready(&mut self, mut taken: Vec<Queued>) -> Vec<Queued> {
        if taken.iter().any(|queued| queued.kind == Kind::Now) {
            let mut batch = self.release();
            batch.append(&mut taken);
            return batch;
        }
        let (lazy, mut received): (Vec<Queued>, Vec<Queued>) = taken
            .into_iter()
            .partition(|queued| queued.kind == Kind::Lazily);
        self.lazy.extend(lazy);
        if self.lazy.len() >= MAX_BATCH {
            received.append(&mut self.release());
        } else if !self.lazy.is_empty() {
            self.until.get_or_insert_with(|| Instant::now() + LAZY_WAIT);
        }
        received
    }

    /// Everything held, to commit now.
    fn release(&mut self) -> Vec<Queued> {
        self.until = None;
        std::mem::take(&mut self.lazy)
    }
}

/// Adds what else is queued to `batch`, up to [`MAX_BATCH`].
fn take_queued(jobs: &mpsc::Receiver<Queued>, batch: &mut Vec<Queued>) {
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(queued) => batch.push(queued),
            Err(_) => return,
        }
    }
}

/// Raises what this broker holds of `origin` to `have` (never lowers it).
fn raise_have(conn: &Connection, origin: &str, have: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO origins (origin, have) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET have = max(have, excluded.have)",
    )?
    .execute(params![origin, have])?;
    Ok(())
}

fn clone_failure(error: &StoreError) -> StoreError {
    StoreError::Failed(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests that write nothing, told apart by where their jobs live.
    #[derive(Default)]
    struct Requests(HashMap<usize, usize>);

    impl Requests {
        fn queued(&mut self, kind: Kind, number: usize) -> Queued {
            // Holds `number`, so that every job has an address of its own.
            let job: Job = Box::new(move |_| {
                std::hint::black_box(number);
                let reply: Reply = Box::new(|_| {});
                (true, reply)
            });
            self.0.insert(address(&job), number);
            Queued { job, kind }
        }

        fn all(&mut self, kinds: &[(Kind, usize)]) -> Vec<Queued> {
            kinds
                .iter()
                .map(|&(kind, n)| self.queued(kind, n))
                .collect()
        }

        fn numbers(&self, batch: &[Queued]) -> Vec<usize> {
            batch
                .iter()
                .map(|queued| self.0[&address(&queued.job)])
                .collect()
        }
    }

    fn address(job: &Job) -> usize {
        (&**job as *const _ as *const ()) as usize
    }

    #[test]
    fn lazy_requests_wait_for_one_that_syncs_and_keep_their_place() {
        use Kind::{Lazily, Now};
        let (mut requests, mut held) = (Requests::default(), Held::default());
        let before = Instant::now();
        assert!(
            held.take_ready(requests.all(&[(Lazily, 1)])).is_empty(),
            "held"
        );
        let deadline = held.until.expect("a deadline from the first");
        assert!(deadline >= before + LAZY_WAIT && deadline <= Instant::now() + LAZY_WAIT);
        let batch = held.take_ready(requests.all(&[(Lazily, 2), (Now, 3), (Lazily, 4)]));
        assert_eq!(requests.numbers(&batch), vec![1, 2, 3, 4]);
        assert!(held.lazy.is_empty() && held.until.is_none());
    }

    #[test]
    fn received_events_go_ahead_of_held_lazy_requests() {
        use Kind::{Lazily, Received};
        let (mut requests, mut held) = (Requests::default(), Held::default());
        held.take_ready(requests.all(&[(Lazily, 1)]));
        let first_deadline = held.until;
        let batch = held.take_ready(requests.all(&[(Received, 2), (Lazily, 3), (Received, 4)]));
        assert_eq!(requests.numbers(&batch), vec![2, 4]);
        assert_eq!(
            held.until, first_deadline,
            "the first lazy request's deadline holds"
        );
        assert_eq!(requests.numbers(&held.release()), vec![1, 3]);
        assert!(held.until.is_none());
    }

    #[test]
    fn a_full_batch_of_lazy_requests_goes_at_once() {
        let (mut requests, mut held) = (Requests::default(), Held::default());
        let taken = (0..MAX_BATCH)
            .map(|n| requests.queued(Kind::Lazily, n))
            .collect();
        assert_eq!(held.take_ready(taken).len(), MAX_BATCH);
        assert!(held.lazy.is_empty() && held.until.is_none());
    }

    #[test]
    fn only_received_events_in_gossip_mode_commit_without_a_sync() {
        use Kind::{Lazily, Now, Received};
        let cases = [
            (vec![Received, Received], Mode::Gossip, false),
            (vec![Received], Mode::Leader, true),
            (vec![Received, Lazily], Mode::Gossip, true),
            (vec![Now], Mode::Gossip, true),
            (vec![Received, Now], Mode::Gossip, true),
            (vec![Lazily], Mode::Gossip, true),
        ];
        for (kinds, mode, expected) in cases {
            let sync = syncs(kinds.iter().copied(), mode);
            assert_eq!(sync, expected, "{kinds:?} in {mode:?}");
        }
    }
}
