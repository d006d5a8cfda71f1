//! `/topics`: create, list, get, delete, limits (publishing: `publish`).

use actix_web::{web, HttpResponse};
use client::wire::{CreateTopic, SetLimits, TopicCreated, TopicsQuery};
use serde::Deserialize;

use super::body::Body;
use crate::error::ApiError;
use crate::names::check_name;
use crate::store::{queries, StoreError};
use crate::topic_limits;
use crate::trust::Caller;
use crate::AppState;

#[utoipa::path(
    post,
    path = "/topics",
    operation_id = "create_topic",
    tag = "topics",
    request_body = client::wire::CreateTopic, responses((status = 201, description = "Created", body = client::wire::TopicCreated), super::openapi::Errors)
)]
pub async fn create(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateTopic>,
) -> Result<HttpResponse, ApiError> {
    let CreateTopic {
        name,
        publisher,
        limits,
    } = body.into_inner();
    check_name("topic", &name)?;
    check_name("publisher", &publisher)?;
    if let Some(limits) = &limits {
        topic_limits::check(limits).map_err(ApiError::BadRequest)?;
    }
    caller.may_act_as(&publisher)?;
    caller.may_publish(&name)?;
    let (topic, by, with) = (name.clone(), publisher.clone(), limits.clone());
    app.record(move |tx| tx.create_topic(&topic, &by, with))
        .await?;
    Ok(HttpResponse::Created().json(TopicCreated {
        name,
        created_by: publisher,
        limits,
    }))
}

/// `PUT /topics/{name}/limits`: the owner (or an admin) replaces the
/// topic's limits; answers with the topic.
#[utoipa::path(
    put,
    path = "/topics/{name}/limits",
    operation_id = "set_topic_limits",
    tag = "topics",
    params(("name" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::SetLimits, responses((status = 200, description = "The topic with its new limits", body = client::wire::TopicInfo), super::openapi::Errors)
)]
pub async fn set_limits(
    app: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: Body<SetLimits>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let SetLimits { publisher, limits } = body.into_inner();
    check_name("topic", &name)?;
    check_name("publisher", &publisher)?;
    topic_limits::check(&limits).map_err(ApiError::BadRequest)?;
    let owner = acting_owner(&caller, Some(publisher))?;
    let topic = app
        .record(move |tx| tx.set_limits(&name, owner.as_deref(), limits))
        .await?;
    Ok(HttpResponse::Ok().json(topic))
}

/// `GET /topics`, a page at a time (see `TopicsQuery`).
#[utoipa::path(
    get,
    path = "/topics",
    operation_id = "list_topics",
    tag = "topics",
    params(client::wire::TopicsQuery), responses((status = 200, description = "A page of topics", body = Vec<client::wire::TopicInfo>), super::openapi::Errors)
)]
pub async fn list(
    app: web::Data<AppState>,
    query: web::Query<TopicsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, after) = super::page(query.into_inner())?;
    let topics = app
        .store
        .read(move |conn| Ok(queries::topics(conn, &after, limit)?))
        .await?;
    Ok(HttpResponse::Ok().json(topics))
}

#[utoipa::path(
    get,
    path = "/topics/{name}",
    operation_id = "get_topic",
    tag = "topics",
    params(("name" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$")), responses((status = 200, description = "The topic", body = client::wire::TopicInfo), super::openapi::Errors)
)]
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

#[utoipa::path(
    delete,
    path = "/topics/{name}",
    operation_id = "delete_topic",
    tag = "topics",
    params(("name" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$"), ("publisher" = Option<String>, Query, description = "Its owner (an admin may leave it out)", pattern = "^[A-Za-z0-9._-]{1,128}$")), responses((status = 204, description = "Deleted"), super::openapi::Errors)
)]
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
    let owner = acting_owner(&caller, publisher)?;
    app.record(move |tx| tx.delete_topic(&name, owner.as_deref()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who changes a topic as its owner: an admin any topic (`None`), anyone
/// else as `publisher` (required, and one the caller may act as), whom the
/// store then checks is the owner.
fn acting_owner(caller: &Caller, publisher: Option<String>) -> Result<Option<String>, ApiError> {
    if caller.overrides_ownership() {
        return Ok(None);
    }
    let publisher = publisher
        .ok_or_else(|| ApiError::BadRequest("query parameter publisher is required".to_string()))?;
    caller.may_act_as(&publisher)?;
    Ok(Some(publisher))
}
