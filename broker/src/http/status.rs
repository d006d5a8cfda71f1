//! `GET /health`, `GET /cluster`, `GET /metrics`.

use actix_web::{web, HttpResponse};
use client::wire::{ClusterInfo, Health, Member};

use crate::AppState;

pub async fn health(app: web::Data<AppState>) -> web::Json<Health> {
    web::Json(Health {
        broker: app.config.id.clone(),
        status: "ok".to_string(),
    })
}

/// Alone until replication arrives: this broker leads itself, and the peers
/// of the peer list are shown as not (yet) known to be alive.
pub async fn cluster(app: web::Data<AppState>) -> web::Json<ClusterInfo> {
    let me = Member {
        id: app.config.id.clone(),
        alive: true,
    };
    let peers = app.config.peers.iter().map(|peer| Member {
        id: peer.id(),
        alive: false,
    });
    web::Json(ClusterInfo {
        self_id: app.config.id.clone(),
        leader: Some(app.config.id.clone()),
        term: 1,
        mode: app.config.mode.as_str().to_string(),
        lamport: app.store.lamport(),
        members: std::iter::once(me).chain(peers).collect(),
    })
}

pub async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(app.metrics.render(app.store.lamport()))
}
