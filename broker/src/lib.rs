//! The rumor broker: an actix-web HTTP server over a SQLite event log.
//!
//! `run` serves the API of `API.md` on an already-bound listener until the
//! `shutdown` future completes. Module map: `app` (the state handlers share
//! and the rule for recording a change), `http` (routes and handlers),
//! `delivery` (pulls, long polling, acks), `store` (SQLite: the only module
//! that knows SQL), `cluster` (replication, liveness, election), `event` and
//! `clock` (the event model and Lamport clock), `wakeups` (long-poll
//! notifications), `retention` (with `topic_limits`), `metrics`, `cursor`, `names`, `error` (the
//! one request error type), `trust` (cluster key, client principals, TLS),
//! `config`.

mod app;
mod clock;
mod cluster;
mod config;
mod cursor;
mod deliverable;
mod delivery;
mod epochs;
mod error;
mod event;
mod http;
mod metrics;
mod names;
mod retention;
mod store;
#[cfg(test)]
mod test_support;
mod topic_limits;
mod trust;
mod wakeups;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

pub use config::{Cli, Command, Config};
pub use trust::new_token;

pub(crate) use app::AppState;
use deliverable::Deliverable;
use delivery::{AcksInFlight, GivenCounts, PullSlots};
use http::BodyBudget;
use metrics::Metrics;
use store::Store;
use trust::Trust;
use wakeups::Wakeups;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Locks a mutex whose data stays valid even if a holder panicked.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connections the kernel queues before the broker accepts them: thousands
/// of clients may connect at once (std's listeners queue 128).
const LISTEN_BACKLOG: i32 = 4096;

/// Listens on `address` (`host:port`), on the first of its addresses that
/// binds.
pub fn listen(address: &str) -> io::Result<TcpListener> {
    let mut failure = io::Error::new(io::ErrorKind::AddrNotAvailable, "the host has no address");
    for address in address.to_socket_addrs()? {
        match listen_on(address) {
            Ok(listener) => return Ok(listener),
            Err(error) => failure = error,
        }
    }
    Err(failure)
}

/// Raises the soft limit of open files (`ulimit -n`, often 1024) to the
/// hard limit: every client connection is a file, and a broker that runs
/// out of them stops accepting. Returns the limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

fn listen_on(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Serves the broker on `listener` until `shutdown` completes, then finishes
/// in-flight requests, commits what is queued and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let trust = Trust::new(&config).map_err(std::io::Error::other)?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(trust::server_config(cert, key).map_err(std::io::Error::other)?),
        None => None,
    };
    let wakeups = Arc::new(Wakeups::default());
    let store = Store::open(&config, wakeups.clone()).map_err(std::io::Error::other)?;
    let (stopping, shutdown_rx) = watch::channel(false);
    let max_body_bytes = config.max_body_bytes();
    let max_buffered_bytes = config.max_buffered_body_bytes();
    tracing::info!(
        "broker {} listening on {} (data in {}, {} peers)",
        config.id,
        listener.local_addr()?,
        config.data_dir.display(),
        config.peers.len()
    );
    let (cluster, election) = cluster::Cluster::new(
        &config.id,
        &config.peers,
        config.max_replica_lag,
        config.peer_connect.clone(),
    );
    let app = web::Data::new(AppState {
        config,
        cluster,
        store,
        wakeups,
        metrics: Metrics::default(),
        shutdown: shutdown_rx,
        acks: AcksInFlight::default(),
        pulls: PullSlots::default(),
        deliverable: Deliverable::default(),
        trust,
        bodies: BodyBudget::new(max_buffered_bytes, max_body_bytes),
        given: GivenCounts::default(),
    });
    let mut tasks = cluster::spawn(app.clone(), election);
    tasks.push(tokio::spawn(retention::run(app.clone())));
    tasks.push(tokio::spawn(deliverable::run(app.clone())));
    tasks.push(tokio::spawn(trust::reload_on_hangup(app.clone())));
    let server = http::server(app.clone(), listener, tls, SHUTDOWN_GRACE)?;
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
