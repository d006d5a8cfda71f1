//! `GET /health`, `GET /cluster`, `GET /metrics`.

use actix_web::{web, HttpResponse};
use client::wire::{ClusterInfo, Health, ModeChange, NewMember, Registration};

use super::body::Body;
use crate::config::{is_loopback, Mode};
use crate::error::ApiError;
use crate::event::now_ms;
use crate::metrics::Gauges;
use crate::names::is_broker_id;
use crate::store::queries;
use crate::trust::Caller;

use crate::AppState;

#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "cluster",
    responses((status = 200, description = "The broker runs", body = client::wire::Health))
)]
pub async fn health(app: web::Data<AppState>) -> web::Json<Health> {
    web::Json(Health {
        broker: app.config.id.clone(),
        status: "ok".to_string(),
    })
}

#[utoipa::path(
    get,
    path = "/cluster",
    operation_id = "cluster",
    tag = "cluster",
    responses((status = 200, description = "What this broker knows of the cluster", body = client::wire::ClusterInfo), super::openapi::Errors)
)]
pub async fn cluster(app: web::Data<AppState>) -> Result<web::Json<ClusterInfo>, ApiError> {
    let have = app.store.read(|conn| Ok(queries::have(conn)?)).await?;
    let leadership = app.cluster.leadership();
    Ok(web::Json(ClusterInfo {
        self_id: app.config.id.clone(),
        leader: leadership.leader,
        term: leadership.term,
        mode: app.mode().as_str().to_string(),
        lamport: app.store.lamport(),
        members: app.cluster.members_with_lags(&have),
        have,
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "cluster",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), super::openapi::Errors)
)]
pub async fn metrics(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let (topics, backlogs) = app
        .store
        .read(move |conn| {
            Ok((
                queries::topic_sizes(conn)?,
                queries::backlogs(conn, None, now)?,
            ))
        })
        .await?;
    let subscriptions = backlogs
        .into_iter()
        .map(|b| {
            let age = b.oldest_age_ms as f64 / 1000.0;
            (b.subscriber, b.topic, b.pending, age)
        })
        .collect();
    let leadership = app.cluster.leadership();
    let (db_bytes, wal_bytes) = app.store.file_sizes();
    let gauges = Gauges {
        lamport: app.store.lamport(),
        term: leadership.term,
        is_leader: leadership.leader.as_deref() == Some(app.config.id.as_str()),
        topics,
        subscriptions,
        peers: app.cluster.peer_lags(&app.store.have()),
        db_bytes,
        wal_bytes,
    };
    let text = app.metrics.render(&gauges, app.store.commit_metrics());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// `PUT /cluster/mode`: switches the whole cluster (recorded by the leader,
/// replicated like every event).
#[utoipa::path(
    put,
    path = "/cluster/mode",
    operation_id = "set_mode",
    tag = "cluster",
    request_body = client::wire::ModeChange, responses((status = 200, description = "The mode from now on", body = client::wire::ModeChange), super::openapi::Errors)
)]
pub async fn set_mode(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<ModeChange>,
) -> Result<HttpResponse, ApiError> {
    caller.may_administer()?;
    let ModeChange { mode } = body.into_inner();
    let parsed = Mode::parse(&mode).ok_or_else(|| {
        ApiError::BadRequest(format!("mode must be gossip or leader, not {mode:?}"))
    })?;
    app.record(move |tx| tx.set_mode(parsed)).await?;
    Ok(HttpResponse::Ok().json(ModeChange { mode }))
}

/// `POST /cluster/members`: adds a broker (recorded by the leader).
#[utoipa::path(
    post,
    path = "/cluster/members",
    operation_id = "add_member",
    tag = "cluster",
    request_body = client::wire::NewMember, responses((status = 201, description = "Added", body = client::wire::Registration), (status = 200, description = "Already a member", body = client::wire::Registration), super::openapi::Errors)
)]
pub async fn add_member(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<NewMember>,
) -> Result<HttpResponse, ApiError> {
    caller.may_administer()?;
    let NewMember { host, port } = body.into_inner();
    let id = format!("{host}:{port}");
    if port == 0 || !is_broker_id(&id) {
        return Err(ApiError::BadRequest(format!(
            "{id:?} is not a host and port"
        )));
    }
    if app.config.cluster_key.is_none() && !is_loopback(&host) {
        return Err(ApiError::BadRequest(format!(
            "{id} is not on this machine: brokers across machines need --cluster-key-file"
        )));
    }
    let created = app.record(move |tx| tx.add_member(&host, port)).await?;
    Ok(super::created_response(created, Registration { id }))
}

/// `DELETE /cluster/members/{id}`: removes a broker (recorded by the leader).
#[utoipa::path(
    delete,
    path = "/cluster/members/{id}",
    operation_id = "remove_member",
    tag = "cluster",
    params(("id" = String, Path, description = "The broker, HOST:PORT")), responses((status = 204, description = "Removed"), super::openapi::Errors)
)]
pub async fn remove_member(
    app: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.may_administer()?;
    let id = id.into_inner();
    let known = app.cluster.knows(&id) || id == app.config.id;
    app.record(move |tx| tx.remove_member(&id, known)).await?;
    Ok(HttpResponse::NoContent().finish())
}
