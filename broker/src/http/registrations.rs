//! `POST /publishers`, `POST /subscribers`, `GET /subscriptions`.

use actix_web::{web, HttpResponse};
use client::http::Created;
use client::wire::{Registration, SubscriberInfo, SubscriptionInfo, TopicsQuery};

use super::body::Body;
use super::created_response;
use crate::error::ApiError;
use crate::event::now_ms;
use crate::names::check_name;
use crate::store::{queries, StoreError, WriteTx};
use crate::trust::Caller;
use crate::AppState;

type Register = fn(&mut WriteTx<'_>, &str) -> Result<Created, StoreError>;

#[utoipa::path(
    post,
    path = "/publishers",
    operation_id = "register_publisher",
    tag = "registrations",
    request_body = client::wire::Registration, responses((status = 201, description = "Registered", body = client::wire::Registration), (status = 200, description = "Already registered", body = client::wire::Registration), super::openapi::Errors)
)]
pub async fn publisher(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<Registration>,
) -> Result<HttpResponse, ApiError> {
    register(&app, &caller, body.into_inner(), "publisher", |tx, id| {
        tx.register_publisher(id)
    })
    .await
}

#[utoipa::path(
    post,
    path = "/subscribers",
    operation_id = "register_subscriber",
    tag = "registrations",
    request_body = client::wire::Registration, responses((status = 201, description = "Registered", body = client::wire::Registration), (status = 200, description = "Already registered", body = client::wire::Registration), super::openapi::Errors)
)]
pub async fn subscriber(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<Registration>,
) -> Result<HttpResponse, ApiError> {
    register(&app, &caller, body.into_inner(), "subscriber", |tx, id| {
        tx.register_subscriber(id)
    })
    .await
}

/// `GET /subscriptions`: a page of registered subscribers with their live
/// subscriptions and backlogs on this broker. (Not `GET /subscribers`,
/// which v1 answers `405`.)
#[utoipa::path(
    get,
    path = "/subscriptions",
    operation_id = "list_subscribers",
    tag = "registrations",
    params(client::wire::TopicsQuery), responses((status = 200, description = "A page of subscribers", body = Vec<client::wire::SubscriberInfo>), super::openapi::Errors)
)]
pub async fn subscriptions(
    app: web::Data<AppState>,
    query: web::Query<TopicsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, after) = super::page(query.into_inner())?;
    let now = now_ms();
    let (ids, backlogs) = app
        .store
        .read(move |conn| {
            let ids = queries::subscribers(conn, &after, limit)?;
            let backlogs = match (ids.first(), ids.last()) {
                (Some(first), Some(last)) => queries::backlogs(conn, Some((first, last)), now)?,
                _ => Vec::new(),
            };
            Ok((ids, backlogs))
        })
        .await?;
    let mut infos: Vec<SubscriberInfo> = ids
        .into_iter()
        .map(|id| SubscriberInfo {
            id,
            subscriptions: Vec::new(),
        })
        .collect();
    for backlog in backlogs {
        if let Some(info) = infos.iter_mut().find(|info| info.id == backlog.subscriber) {
            info.subscriptions.push(SubscriptionInfo {
                topic: backlog.topic,
                shared: backlog.shared,
                pending: backlog.pending,
                leased: backlog.leased,
                oldest_unacked_age_ms: backlog.oldest_age_ms,
            });
        }
    }
    Ok(HttpResponse::Ok().json(infos))
}

async fn register(
    app: &AppState,
    caller: &Caller,
    body: Registration,
    what: &str,
    register: Register,
) -> Result<HttpResponse, ApiError> {
    check_name(what, &body.id)?;
    caller.may_act_as(&body.id)?;
    let id = body.id.clone();
    let created = app.record(move |tx| register(tx, &id)).await?;
    Ok(created_response(created, body))
}
