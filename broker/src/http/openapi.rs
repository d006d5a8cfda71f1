//! `GET /openapi.json` (API.md §7): an OpenAPI 3.1 document of every public
//! endpoint, generated from the handlers' own annotations and the wire
//! types of `client::wire`, so that it follows them. The peer protocol
//! (`/peer/*`) is not public and not in it.

use actix_web::HttpResponse;
use client::wire::{ErrorBody, Published, PublishedBatch};
use utoipa::OpenApi;

use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rumor",
        description = "A cluster of publish/subscribe message brokers (docs/api.md).",
        license(name = "MIT")
    ),
    paths(
        super::status::health,
        super::status::cluster,
        super::status::set_mode,
        super::status::add_member,
        super::status::remove_member,
        super::status::metrics,
        super::registrations::publisher,
        super::registrations::subscriber,
        super::registrations::subscriptions,
        super::topics::create,
        super::topics::list,
        super::topics::get,
        super::topics::delete,
        super::topics::set_limits,
        super::publish::publish,
        super::stream::topic,
        super::subscriptions::subscribe,
        super::subscriptions::unsubscribe,
        super::subscriptions::seek,
        super::subscriptions::pull,
        super::stream::subscriber,
        super::subscriptions::ack,
        super::subscriptions::nack,
        super::subscriptions::extend,
        super::ui::index,
        openapi_json,
    ),
    components(schemas(ErrorBody, client::wire::ErrorDetail))
)]
struct ApiDoc;

/// What a publish answers: one message's place, or a batch's.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the handler answers the wire types
#[serde(untagged)]
pub enum PublishAnswer {
    One(Published),
    Batch(PublishedBatch),
}

/// The errors any endpoint may answer, each with the JSON error body
/// (docs/api.md lists which code comes when).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a schema only: `ApiError` makes the answers
pub enum Errors {
    /// `bad_request` or `invalid_name`.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `unauthenticated`: no valid token (with `--auth-file`).
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// `forbidden` or `not_topic_owner`.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// `publisher_not_found`, `subscriber_not_found`, `topic_not_found`,
    /// `not_subscribed`.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// `request_timeout`: the body did not arrive within 30 s.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// `topic_exists`.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `payload_too_large`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// `unsupported_media_type`: a body that is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// `too_many_requests`: 16 pulls or streams of the subscriber wait already.
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// `internal`.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// `no_quorum`, `unavailable`, `overloaded` or `shutting_down`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operator",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    let json = ApiDoc::openapi()
        .to_json()
        .map_err(|error| ApiError::Internal(format!("the OpenAPI document: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}
