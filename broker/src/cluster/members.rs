//! Members at run time: keeps the peer list in step with the members added
//! and removed (stored events, see `store::apply`), starting a replicator
//! for every new peer (a removed peer's replicator ends by itself).

use std::time::Duration;

use actix_web::web;
use client::Client;

use super::replicator;
use crate::store::queries;
use crate::wakeups::Key;
use crate::AppState;

/// Longest pause between attempts to join.
const MAX_JOIN_PAUSE: Duration = Duration::from_secs(2);

pub async fn run(app: web::Data<AppState>) {
    let mut shutdown = app.shutdown.clone();
    for peer in app.cluster.peers() {
        tokio::spawn(replicator::run(app.clone(), peer.id()));
    }
    loop {
        let changed = app.wakeups.watch(Key::MembersChanged);
        let mut members_changed = Box::pin(changed.notified());
        members_changed.as_mut().enable();
        match app
            .store
            .read(|conn| Ok(queries::member_changes(conn)?))
            .await
        {
            Ok(changes) => {
                for peer in app.cluster.apply_members(&changes) {
                    tokio::spawn(replicator::run(app.clone(), peer.id()));
                }
            }
            Err(error) => tracing::error!("cannot read the members: {error}"),
        }
        tokio::select! {
            _ = members_changed => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// `--join`: asks the given member to add this broker, until one answers.
/// The member list and the whole state then arrive by anti-entropy.
pub async fn join(app: web::Data<AppState>) {
    let Some(target) = app.config.join.clone() else {
        return;
    };
    let client = match Client::to(&target, &app.config.peer_connect) {
        Ok(client) => client,
        Err(error) => return tracing::error!("cannot join through {target}: {error}"),
    };
    let mut shutdown = app.shutdown.clone();
    let mut pause = Duration::from_millis(100);
    loop {
        match client.add_member(&app.config.host, app.config.port).await {
            Ok(_) => {
                tracing::info!("joined the cluster through {target}");
                return;
            }
            Err(error) => tracing::warn!("cannot join through {target} yet: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        pause = (pause * 2).min(MAX_JOIN_PAUSE);
    }
}
