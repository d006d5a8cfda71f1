//! The rumor broker: an actix-web HTTP server over a SQLite event log.
//!
//! `run` serves the API of `API.md` on an already-bound listener until the
//! `shutdown` future completes. Module map: `http` (routes and handlers),
//! `delivery` (pulls, long polling, acks), `store` (SQLite: the only module
//! that knows SQL), `event` and `clock` (the event model and Lamport clock),
//! `wakeups` (long-poll notifications), `retention`, `metrics`, `cursor`,
//! `names`, `error` (the one request error type), `config`.

pub mod clock;
mod cluster;
mod config;
mod cursor;
mod delivery;
mod error;
mod event;
mod http;
mod metrics;
mod names;
mod retention;
mod store;
mod wakeups;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use error::ApiError;

pub use config::{Cli, Config};

use metrics::Metrics;
use store::Store;
use wakeups::Wakeups;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every request handler shares.
pub(crate) struct AppState {
    config: Config,
    cluster: cluster::Cluster,
    store: Store,
    wakeups: Arc<Wakeups>,
    metrics: Metrics,
    /// Becomes `true` when the broker starts shutting down; long polls answer at once.
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Whether this broker follows in leader mode: its client writes are
    /// the leader's to sequence.
    pub(crate) fn follows_leader(&self) -> bool {
        self.mode() == config::Mode::Leader && !self.cluster.is_leader()
    }

    /// The replication mode: as set at run time for the cluster, else `--mode`.
    pub(crate) fn mode(&self) -> config::Mode {
        self.store.mode_setting().unwrap_or(self.config.mode)
    }

    /// Records a change made through this broker, once it may record events
    /// of its own (see `Cluster::caught_up`). In leader mode only the leader
    /// records (followers forward, see `http::forward`), only with a
    /// majority alive, and answers once a majority holds the change.
    pub(crate) async fn record<T, F>(&self, change: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut store::WriteTx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.cluster.caught_up().await?;
        if self.mode() != config::Mode::Leader {
            return self.store.write(change).await;
        }
        let term = self.cluster.leadership().term;
        self.lead_with_quorum().await?;
        let recorded = self.store.write(change).await?;
        let seq = self.store.own_seq();
        self.cluster.replicated_to_majority(seq, term).await?;
        // Deposed meanwhile: the write is not acknowledged by a leader.
        if !self.cluster.is_leader() || self.cluster.leadership().term != term {
            return Err(ApiError::NoQuorum);
        }
        Ok(recorded)
    }
}

impl AppState {
    /// Leader mode: this broker leads, a majority is alive, and it holds
    /// everything the live peers hold (waiting a little for that).
    async fn lead_with_quorum(&self) -> Result<(), ApiError> {
        const POLL: Duration = Duration::from_millis(20);
        const LIMIT: u32 = 150; // 3 s
        for _ in 0..LIMIT {
            if !(self.cluster.is_leader() && self.cluster.has_quorum()) {
                return Err(ApiError::NoQuorum);
            }
            let mine = self
                .store
                .read(|conn| Ok(store::queries::have(conn)?))
                .await?;
            if self.cluster.holds_what_live_peers_hold(&mine) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ApiError::NoQuorum)
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves the broker on `listener` until `shutdown` completes, then finishes
/// in-flight requests, commits what is queued and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let wakeups = Arc::new(Wakeups::default());
    let store = Store::open(&config, wakeups.clone()).map_err(std::io::Error::other)?;
    let (stopping, shutdown_rx) = watch::channel(false);
    let max_body_bytes = config.max_body_bytes();
    tracing::info!(
        "broker {} listening on {} (data in {}, {} peers)",
        config.id,
        listener.local_addr()?,
        config.data_dir.display(),
        config.peers.len()
    );
    let (cluster, election) = cluster::Cluster::new(&config.id, &config.peers, store.has_history());
    let app = web::Data::new(AppState {
        config,
        cluster,
        store,
        wakeups,
        metrics: Metrics::default(),
        shutdown: shutdown_rx,
    });
    let mut tasks = cluster::spawn(app.clone(), election);
    tasks.push(tokio::spawn(retention::run(app.clone())));
    let server_app = app.clone();
    let server = HttpServer::new(move || {
        let counted = server_app.clone();
        App::new()
            .app_data(server_app.clone())
            .wrap_fn(move |request, service| {
                counted.metrics.count_request();
                actix_web::dev::Service::call(service, request)
            })
            .wrap(actix_web::middleware::from_fn(http::to_leader))
            .configure(http::configure(max_body_bytes))
            .default_service(web::to(http::not_found))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .run();
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stopping.send(true);
        handle.stop(true).await;
    });
    let served = server.await;
    stopper.abort();
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    let store_app = app.clone();
    tokio::task::spawn_blocking(move || store_app.store.close())
        .await
        .map_err(std::io::Error::other)?;
    tracing::info!("stopped");
    served
}
