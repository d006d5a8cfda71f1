//! The state every request handler shares, and the one rule for recording
//! a change made through this broker (gossip or leader mode).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::{Config, Mode};
use crate::deliverable::Deliverable;
use crate::delivery::{AcksInFlight, GivenCounts, PullSlots};
use crate::error::ApiError;
use crate::http::BodyBudget;
use crate::metrics::Metrics;
use crate::store::{Commit, Store, StoreError, WriteTx};
use crate::trust::Trust;
use crate::wakeups::Wakeups;

/// How long a write waits for the broker to catch up on its own history.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// How long a new leader waits to hold what a majority holds.
const LEAD_WAIT: Duration = Duration::from_secs(3);

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub cluster: Cluster,
    pub store: Store,
    pub wakeups: Arc<Wakeups>,
    pub metrics: Metrics,
    /// Becomes `true` when the broker starts shutting down; long polls answer at once.
    pub shutdown: watch::Receiver<bool>,
    /// Pulls' acknowledgements still being committed.
    pub acks: AcksInFlight,
    /// The pulls waiting, per subscriber (at most 16 each).
    pub pulls: PullSlots,
    /// What pulls may deliver (leader mode: what a majority holds).
    pub deliverable: Deliverable,
    /// The cluster key and the client principals.
    pub trust: Trust,
    /// Request bodies buffered at once.
    pub bodies: BodyBudget,
    /// How often each v1 subscriber was given each unacknowledged message.
    pub given: GivenCounts,
}

impl AppState {
    /// Whether this broker follows in leader mode: its client writes are
    /// the leader's to sequence.
    pub fn follows_leader(&self) -> bool {
        self.mode() == Mode::Leader && !self.cluster.is_leader()
    }

    /// Whether this broker leads in leader mode (it orders every write).
    pub fn leads_in_order(&self) -> bool {
        self.mode() == Mode::Leader && self.cluster.is_leader()
    }

    /// The replication mode: as set at run time for the cluster, else `--mode`.
    pub fn mode(&self) -> Mode {
        self.store.mode_setting().unwrap_or(self.config.mode)
    }

    /// Records a change made through this broker, once it may record events
    /// of its own (see `caught_up`) and no live peer is too far
    /// behind (see `Cluster::paced`). In leader mode only the leader
    /// records (followers forward, see `http::forward`), only with a
    /// majority alive, and answers once a majority holds the change.
    pub async fn record<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.record_committed(Commit::Now, change).await
    }

    /// [`AppState::record`] for a change no client waits for: committed
    /// with the next change that cannot wait (see [`Commit::Lazily`]).
    pub async fn record_lazily<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.record_committed(Commit::Lazily, change).await
    }

    async fn record_committed<T, F>(&self, commit: Commit, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.caught_up().await?;
        self.cluster.paced(|| self.store.own_seq()).await;
        if self.mode() != Mode::Leader {
            return Ok(self
                .store
                .write_bounded(self.config.max_write_queue, commit, change)
                .await?);
        }
        let term = self.cluster.leadership().term;
        self.lead_with_quorum().await?;
        self.record_lead(term).await?;
        let recorded = self
            .store
            .write_bounded(self.config.max_write_queue, commit, change)
            .await?;
        let seq = self.store.own_seq();
        self.cluster.replicated_to_majority(seq, term).await?;
        // Deposed meanwhile: the write is not acknowledged by a leader.
        if !self.cluster.is_leader() || self.cluster.leadership().term != term {
            return Err(ApiError::NoQuorum);
        }
        Ok(recorded)
    }

    /// Waits (bounded) until this broker may record events of its own: a
    /// write before it has its own history back would reuse its seqs (the
    /// writer refuses it, see `Store::holds_own_history`).
    pub async fn caught_up(&self) -> Result<(), ApiError> {
        tokio::time::timeout(CATCH_UP_WAIT, self.store.until_own_history())
            .await
            .map_err(|_| StoreError::CatchingUp.into())
    }

    /// Lets the writer record events of its own once this broker holds
    /// its own history (see `Cluster::holds_own_history`).
    pub fn check_own_history(&self) {
        if !self.store.holds_own_history() && self.cluster.holds_own_history(self.store.own_seq()) {
            self.store.own_history_held();
        }
    }

    /// Leader mode: this broker leads, a majority is alive, and it holds
    /// everything a majority told it in this term that they hold (waiting
    /// up to `LEAD_WAIT` for that, as peers answer and events arrive).
    pub async fn lead_with_quorum(&self) -> Result<(), ApiError> {
        let mut peers = self.cluster.watch_peers();
        let mut have = self.store.watch_have();
        let ready = async {
            loop {
                if !(self.cluster.is_leader() && self.cluster.has_quorum()) {
                    return Err(ApiError::NoQuorum);
                }
                if self.cluster.holds_what_a_majority_holds(&self.store.have()) {
                    return Ok(());
                }
                // Every sync answer ticks (a heartbeat at least every 200 ms).
                let changed = tokio::select! {
                    changed = peers.changed() => changed.is_ok(),
                    changed = have.changed() => changed.is_ok(),
                };
                if !changed {
                    return Err(ApiError::ShuttingDown);
                }
            }
        };
        tokio::time::timeout(LEAD_WAIT, ready)
            .await
            .unwrap_or(Err(ApiError::NoQuorum))
    }
}
