//! `/topics`: create, list, get, delete, publish.

use actix_web::{web, HttpResponse};
use client::wire::{
    message_id, CreateTopic, PublishRequest, Published, PublishedBatch, TopicCreated, TopicsQuery,
    MAX_TOPICS_PAGE,
};
use serde::Deserialize;

use super::body::Body;
use crate::error::ApiError;
use crate::event::now_ms;
use crate::names::check_name;
use crate::store::{queries, StoreError};
use crate::trust::Caller;
use crate::AppState;

/// Most payloads in one batch publish: one commit must stay short, because
/// every other write waits for it.
const MAX_BATCH: usize = 10_000;

pub async fn create(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateTopic>,
) -> Result<HttpResponse, ApiError> {
    let CreateTopic { name, publisher } = body.into_inner();
    check_name("topic", &name)?;
    check_name("publisher", &publisher)?;
    caller.may_act_as(&publisher)?;
    caller.may_publish(&name)?;
    let (topic, by) = (name.clone(), publisher.clone());
    app.record(move |tx| tx.create_topic(&topic, &by)).await?;
    Ok(HttpResponse::Created().json(TopicCreated {
        name,
        created_by: publisher,
    }))
}

/// `GET /topics`, a page at a time (see `TopicsQuery`).
pub async fn list(
    app: web::Data<AppState>,
    query: web::Query<TopicsQuery>,
) -> Result<HttpResponse, ApiError> {
    let TopicsQuery { limit, after } = query.into_inner();
    let limit = match limit.unwrap_or(MAX_TOPICS_PAGE) {
        0 => return Err(bad_request("limit must be at least 1")),
        limit => limit.min(MAX_TOPICS_PAGE),
    };
    let after = after.unwrap_or_default();
    let topics = app
        .store
        .read(move |conn| Ok(queries::topics(conn, &after, limit)?))
        .await?;
    Ok(HttpResponse::Ok().json(topics))
}

pub async fn get(
    app: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_name("topic", &name)?;
    let topic = app
        .store
        .read(move |conn| queries::topic(conn, &name)?.ok_or(StoreError::TopicNotFound(name)))
        .await?;
    Ok(HttpResponse::Ok().json(topic))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    publisher: Option<String>,
}

pub async fn delete(
    app: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_name("topic", &name)?;
    let publisher = query.into_inner().publisher;
    if let Some(publisher) = &publisher {
        check_name("publisher", publisher)?;
    }
    // An admin deletes any topic; anyone else as its owner.
    let owner = if caller.overrides_ownership() {
        None
    } else {
        let publisher = publisher.ok_or_else(|| {
            ApiError::BadRequest("query parameter publisher is required".to_string())
        })?;
        caller.may_act_as(&publisher)?;
        Some(publisher)
    };
    app.record(move |tx| tx.delete_topic(&name, owner.as_deref()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn publish(
    app: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: Body<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let topic = name.into_inner();
    check_name("topic", &topic)?;
    let PublishRequest {
        publisher,
        payload,
        payloads,
    } = body.into_inner();
    check_name("publisher", &publisher)?;
    caller.may_act_as(&publisher)?;
    caller.may_publish(&topic)?;
    let (payloads, batch) = match (payload, payloads) {
        (Some(one), None) => (vec![one], false),
        (None, Some(many)) if many.len() > MAX_BATCH => {
            return Err(bad_request(&format!(
                "a batch holds at most {MAX_BATCH} payloads, not {}",
                many.len()
            )))
        }
        (None, Some(many)) if !many.is_empty() => (many, true),
        (None, Some(_)) => return Err(bad_request("payloads must not be empty")),
        _ => return Err(bad_request("give exactly one of payload or payloads")),
    };
    check_payload_sizes(&payloads, app.config.max_payload_bytes)?;
    let count = payloads.len();
    let published_at_ms = now_ms();
    let stamped = app
        .record(move |tx| tx.publish(&topic, &publisher, payloads, published_at_ms))
        .await?;
    app.metrics.count_published(count);
    let origin = &app.config.id;
    let mut published = stamped.into_iter().map(|(seq, lamport)| Published {
        id: message_id(origin, seq),
        origin: origin.to_string(),
        seq,
        lamport,
    });
    if batch {
        return Ok(HttpResponse::Created().json(PublishedBatch {
            messages: published.collect(),
        }));
    }
    let one = published
        .next()
        .ok_or_else(|| ApiError::Internal("a publish stored no message".to_string()))?;
    Ok(HttpResponse::Created().json(one))
}

fn check_payload_sizes(payloads: &[String], max_bytes: usize) -> Result<(), ApiError> {
    match payloads.iter().position(|p| p.len() > max_bytes) {
        None => Ok(()),
        Some(index) => Err(ApiError::PayloadTooLarge(format!(
            "payload {index} is {} bytes, over the limit of {max_bytes}",
            payloads[index].len()
        ))),
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_string())
}
