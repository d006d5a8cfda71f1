//! Trust (API.md §5): the cluster key and the replay guard that
//! authenticate peers, the client principals of `--auth-file` (re-read on
//! SIGHUP), and the TLS server set-up. The HTTP side of it (which request
//! needs what, the answers' signatures) is `http::guard`.

mod principals;
mod replay;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use actix_web::web;
use client::peer_auth::ClusterKey;
use tokio::signal::unix::{signal, SignalKind};

pub use principals::{new_token, Caller, Denied, Principals};
pub use replay::Refusal;
pub use tls::server_config;

use crate::config::Config;
use crate::{lock, AppState};
use replay::ReplayGuard;

/// What this broker trusts.
pub struct Trust {
    cluster_key: Option<ClusterKey>,
    replay: Mutex<ReplayGuard>,
    auth: Option<Auth>,
}

/// `--auth-file`: its path and the principals last read from it.
struct Auth {
    path: PathBuf,
    principals: RwLock<Arc<Principals>>,
}

impl Trust {
    /// Reads the auth file, if any; the error is one line.
    pub fn new(config: &Config) -> Result<Trust, String> {
        let auth = match &config.auth_file {
            Some(path) => Some(Auth {
                principals: RwLock::new(Arc::new(Principals::load(path)?)),
                path: path.clone(),
            }),
            None => None,
        };
        Ok(Trust {
            cluster_key: config.cluster_key.clone(),
            replay: Mutex::default(),
            auth,
        })
    }

    pub fn cluster_key(&self) -> Option<&ClusterKey> {
        self.cluster_key.as_ref()
    }

    /// Takes a signed request's nonce once, while its time is fresh.
    pub fn admit(&self, nonce: &str, time_ms: u64) -> Result<(), Refusal> {
        lock(&self.replay).admit(nonce, time_ms, client::peer_auth::now_ms())
    }

    /// Whether clients need a token (`--auth-file`).
    pub fn authenticates_clients(&self) -> bool {
        self.auth.is_some()
    }

    /// The caller a bearer token makes, if the token is known.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let auth = self.auth.as_ref()?;
        let principals = auth
            .principals
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        principals.authenticate(token).map(Caller::Principal)
    }

    /// Reads the auth file again; on an error the principals read before
    /// stay in force. Returns how many principals it holds now.
    fn reload(&self) -> Result<usize, String> {
        let Some(auth) = &self.auth else {
            return Ok(0);
        };
        let principals = Principals::load(&auth.path)?;
        let count = principals.len();
        *auth
            .principals
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(principals);
        Ok(count)
    }
}

/// Re-reads the auth file on every SIGHUP (revocation without a restart).
pub async fn reload_on_hangup(app: web::Data<AppState>) {
    if !app.trust.authenticates_clients() {
        return;
    }
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: the auth file is read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match app.trust.reload() {
            Ok(count) => tracing::info!("auth file re-read: {count} principals"),
            Err(error) => tracing::error!("{error}; the previous principals stay in force"),
        }
    }
}
