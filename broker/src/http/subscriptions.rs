//! `/subscribers/{sid}/...`: subscribe, unsubscribe, pull, ack.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use client::wire::pull_limits::{DEFAULT_MAX, DEFAULT_WAIT_MS, MAX_MAX, MAX_WAIT_MS};
use client::wire::{Ack, PullQuery, Subscribe, Subscription};

use super::body::Body;
use super::created_response;
use crate::delivery::{self, Pull};
use crate::error::ApiError;
use crate::names::check_name;
use crate::AppState;

pub async fn subscribe(
    app: web::Data<AppState>,
    sid: web::Path<String>,
    body: Body<Subscribe>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    let Subscribe { topic, from } = body.into_inner();
    check_name("subscriber", &subscriber)?;
    check_name("topic", &topic)?;
    let (who, what) = (subscriber.clone(), topic.clone());
    let created = app
        .record(move |tx| tx.subscribe(&who, &what, from))
        .await?;
    Ok(created_response(
        created,
        Subscription { subscriber, topic },
    ))
}

pub async fn unsubscribe(
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (subscriber, topic) = path.into_inner();
    check_name("subscriber", &subscriber)?;
    check_name("topic", &topic)?;
    app.record(move |tx| tx.unsubscribe(&subscriber, &topic))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn pull(
    app: web::Data<AppState>,
    sid: web::Path<String>,
    query: web::Query<PullQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    check_name("subscriber", &subscriber)?;
    let PullQuery {
        topic,
        max,
        wait_ms,
        auto_ack,
    } = query.into_inner();
    if let Some(topic) = &topic {
        check_name("topic", topic)?;
    }
    let max = match max.unwrap_or(DEFAULT_MAX) {
        0 => return Err(ApiError::BadRequest("max must be at least 1".to_string())),
        max => max.min(MAX_MAX),
    };
    let wait = Duration::from_millis(wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
    let pull = Pull {
        subscriber,
        topic,
        max,
        wait,
        auto_ack: auto_ack.unwrap_or(false),
    };
    // The response is built only once the pull has its messages: a builder
    // made first would hold a response head through the whole long poll.
    let delivered = delivery::pull(&app, pull).await?;
    Ok(HttpResponse::Ok().json(delivered))
}

pub async fn ack(
    app: web::Data<AppState>,
    sid: web::Path<String>,
    body: Body<Ack>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    check_name("subscriber", &subscriber)?;
    let Ack { cursor } = body.into_inner();
    delivery::acknowledge_token(&app, subscriber, &cursor).await?;
    Ok(HttpResponse::NoContent().finish())
}
