//! `GET /health`, `GET /cluster`, `GET /metrics`.

use actix_web::{web, HttpResponse};
use client::wire::{ClusterInfo, Health};

use crate::AppState;

pub async fn health(app: web::Data<AppState>) -> web::Json<Health> {
    web::Json(Health {
        broker: app.config.id.clone(),
        status: "ok".to_string(),
    })
}

pub async fn cluster(app: web::Data<AppState>) -> web::Json<ClusterInfo> {
    let leadership = app.cluster.leadership();
    web::Json(ClusterInfo {
        self_id: app.config.id.clone(),
        leader: leadership.leader,
        term: leadership.term,
        mode: app.config.mode.as_str().to_string(),
        lamport: app.store.lamport(),
        members: app.cluster.members(),
    })
}

pub async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(app.metrics.render(app.store.lamport()))
}
