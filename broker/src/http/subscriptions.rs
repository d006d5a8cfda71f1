//! `/subscribers/{sid}/...`: subscribe, unsubscribe, seek, pull, ack, nack,
//! extend.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use client::http::ForwardedRequest;
use client::peer::EventId;
use client::wire::pull_limits::{DEFAULT_MAX, DEFAULT_WAIT_MS, MAX_MAX, MAX_WAIT_MS};
use client::wire::shared_limits::MAX_DELAY_MS;
use client::wire::{
    Ack, Extend, Nack, PullQuery, Seek, SeekTo, SharedSettings, StartFrom, Subscribe, Subscription,
};

use super::body::Body;
use super::created_response;
use super::forward::send_to_leader;
use crate::delivery::{self, Pull};
use crate::error::ApiError;
use crate::event::now_ms;
use crate::names::{check_name, parse_message_id};
use crate::store::queries::Sent;
use crate::store::SeekPoint;
use crate::trust::Caller;
use crate::AppState;

#[utoipa::path(
    post,
    path = "/subscribers/{sid}/subscriptions",
    operation_id = "subscribe",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::Subscribe, responses((status = 201, description = "Subscribed", body = client::wire::Subscription), (status = 200, description = "Already subscribed with these settings", body = client::wire::Subscription), super::openapi::Errors)
)]
pub async fn subscribe(
    app: web::Data<AppState>,
    caller: Caller,
    sid: web::Path<String>,
    body: Body<Subscribe>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    let request = body.into_inner();
    let (topic, from) = (request.topic.clone(), request.from);
    check_name("subscriber", &subscriber)?;
    check_name("topic", &topic)?;
    caller.may_act_as(&subscriber)?;
    caller.may_subscribe(&topic)?;
    let shared = shared_settings(request)?;
    if let Some(dead_letters) = shared.as_ref().and_then(|s| s.dead_letter_topic.as_ref()) {
        // The broker publishes there on the subscriber's behalf.
        caller.may_publish(dead_letters)?;
    }
    let (who, what) = (subscriber.clone(), topic.clone());
    let created = app
        .record(move |tx| tx.subscribe(&who, &what, from, shared))
        .await?;
    Ok(created_response(
        created,
        Subscription { subscriber, topic },
    ))
}

#[utoipa::path(
    delete,
    path = "/subscribers/{sid}/subscriptions/{topic}",
    operation_id = "unsubscribe",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$"), ("topic" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$")), responses((status = 204, description = "Unsubscribed"), super::openapi::Errors)
)]
pub async fn unsubscribe(
    app: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (subscriber, topic) = path.into_inner();
    check_name("subscriber", &subscriber)?;
    check_name("topic", &topic)?;
    caller.may_act_as(&subscriber)?;
    app.record(move |tx| tx.unsubscribe(&subscriber, &topic))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /subscribers/{sid}/subscriptions/{topic}/seek` (API.md §6.4).
#[utoipa::path(
    post,
    path = "/subscribers/{sid}/subscriptions/{topic}/seek",
    operation_id = "seek",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$"), ("topic" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::Seek, responses((status = 204, description = "The position moved"), super::openapi::Errors)
)]
pub async fn seek(
    app: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Body<Seek>,
) -> Result<HttpResponse, ApiError> {
    let (subscriber, topic) = path.into_inner();
    check_name("subscriber", &subscriber)?;
    check_name("topic", &topic)?;
    caller.may_act_as(&subscriber)?;
    caller.may_subscribe(&topic)?;
    let to = match body.into_inner().to {
        SeekTo::Edge(StartFrom::Earliest) => SeekPoint::Earliest,
        SeekTo::Edge(StartFrom::Latest) => SeekPoint::Latest,
        SeekTo::Time { time_ms } => SeekPoint::Time(time_ms),
        SeekTo::Id { id } => SeekPoint::Message(message_ids(&[id])?.remove(0)),
    };
    app.record(move |tx| tx.seek(&subscriber, &topic, to))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/subscribers/{sid}/messages",
    operation_id = "pull",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$"), client::wire::PullQuery), responses((status = 200, description = "Pending messages (waits up to wait_ms for one)", body = client::wire::Pulled), super::openapi::Errors)
)]
pub async fn pull(
    app: web::Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    sid: web::Path<String>,
    query: web::Query<PullQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    check_name("subscriber", &subscriber)?;
    caller.may_act_as(&subscriber)?;
    let PullQuery {
        topic,
        max,
        wait_ms,
        auto_ack,
    } = query.into_inner();
    if let Some(topic) = &topic {
        check_name("topic", topic)?;
        caller.may_subscribe(topic)?;
    }
    let max = match max.unwrap_or(DEFAULT_MAX) {
        0 => return Err(ApiError::BadRequest("max must be at least 1".to_string())),
        max => max.min(MAX_MAX),
    };
    let wait = Duration::from_millis(wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
    // Leader mode: only the leader leases a shared subscription's messages.
    if app.follows_leader() && delivery::reads_shared(&app, &subscriber, topic.as_deref()).await? {
        let path = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.path(), |p| p.as_str());
        let forwarded = ForwardedRequest {
            for_cluster: false,
            method: "GET",
            path,
            content_type: None,
            authorization: authorization(&request),
            body: Vec::new(),
            timeout: Some(wait + LEADER_GRACE),
        };
        // Boxed: the forwarded request's state (about 3.7 KB) would
        // otherwise be part of every waiting poll's.
        return Box::pin(send_to_leader(&app, forwarded)).await;
    }
    let pull = Pull {
        subscriber,
        topic,
        max,
        wait,
        auto_ack: auto_ack.unwrap_or(false),
        authorization: authorization(&request).map(<[u8]>::to_vec),
        sent: Sent::new(),
        for_stream: false,
    };
    // The response is built only once the pull has its messages: a builder
    // made first would hold a response head through the whole long poll.
    let delivered = delivery::pull(&app, pull).await?;
    Ok(HttpResponse::Ok()
        .insert_header(header::ContentType::json())
        .body(delivered.to_json()))
}

#[utoipa::path(
    post,
    path = "/subscribers/{sid}/ack",
    operation_id = "ack",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::Ack, responses((status = 204, description = "Acknowledged"), super::openapi::Errors)
)]
pub async fn ack(
    app: web::Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    sid: web::Path<String>,
    body: Body<Ack>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    check_name("subscriber", &subscriber)?;
    caller.may_act_as(&subscriber)?;
    match body.into_inner() {
        Ack {
            cursor: Some(cursor),
            ids: None,
        } => {
            delivery::acknowledge_token(&app, subscriber, &cursor, authorization(&request)).await?
        }
        Ack {
            cursor: None,
            ids: Some(ids),
        } => {
            let ids = message_ids(&ids)?;
            app.record(move |tx| tx.ack_messages(&subscriber, ids))
                .await?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of cursor or ids".to_string(),
            ))
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /subscribers/{sid}/nack`: ends the leases of these messages now;
/// they are given out again after `delay_ms`.
#[utoipa::path(
    post,
    path = "/subscribers/{sid}/nack",
    operation_id = "nack",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::Nack, responses((status = 204, description = "Leases ended"), super::openapi::Errors)
)]
pub async fn nack(
    app: web::Data<AppState>,
    caller: Caller,
    sid: web::Path<String>,
    body: Body<Nack>,
) -> Result<HttpResponse, ApiError> {
    let Nack { ids, delay_ms } = body.into_inner();
    if delay_ms > MAX_DELAY_MS {
        return Err(ApiError::BadRequest(format!(
            "delay_ms is at most {MAX_DELAY_MS}, not {delay_ms}"
        )));
    }
    relet(&app, &caller, sid.into_inner(), &ids, Some(delay_ms)).await
}

/// `POST /subscribers/{sid}/extend`: restarts the leases of these messages.
#[utoipa::path(
    post,
    path = "/subscribers/{sid}/extend",
    operation_id = "extend",
    tag = "subscriptions",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::Extend, responses((status = 204, description = "Leases restarted"), super::openapi::Errors)
)]
pub async fn extend(
    app: web::Data<AppState>,
    caller: Caller,
    sid: web::Path<String>,
    body: Body<Extend>,
) -> Result<HttpResponse, ApiError> {
    relet(
        &app,
        &caller,
        sid.into_inner(),
        &body.into_inner().ids,
        None,
    )
    .await
}

/// Changes the leases of `ids` (see `WriteTx::relet`).
async fn relet(
    app: &AppState,
    caller: &Caller,
    subscriber: String,
    ids: &[String],
    nack_delay_ms: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    check_name("subscriber", &subscriber)?;
    caller.may_act_as(&subscriber)?;
    let ids = message_ids(ids)?;
    let now = now_ms();
    app.record(move |tx| tx.relet(&subscriber, ids, nack_delay_ms, now))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The client's `Authorization` header, for what this broker sends on to
/// the leader on its behalf.
fn authorization(request: &HttpRequest) -> Option<&[u8]> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes())
}

/// How much longer than its wait a pull sent on to the leader may take.
const LEADER_GRACE: Duration = Duration::from_secs(10);

/// Most message ids in one request.
const MAX_IDS: usize = 10_000;

/// Message ids (`<origin>/<seq>`) as events; a malformed one is `400`.
fn message_ids(ids: &[String]) -> Result<Vec<EventId>, ApiError> {
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_IDS} ids, not {}",
            ids.len()
        )));
    }
    ids.iter()
        .map(|id| {
            parse_message_id(id)
                .ok_or_else(|| ApiError::BadRequest(format!("{id:?} is not a message id")))
        })
        .collect()
}

/// A shared subscription's settings from a subscribe request, checked
/// (API.md §6.2); `None` without `ack_wait_ms`.
fn shared_settings(request: Subscribe) -> Result<Option<SharedSettings>, ApiError> {
    use client::wire::shared_limits::*;
    let bad = |message: String| Err(ApiError::BadRequest(message));
    let Subscribe {
        topic,
        ack_wait_ms,
        backoff_ms,
        max_deliveries,
        dead_letter_topic,
        ..
    } = request;
    let Some(ack_wait_ms) = ack_wait_ms else {
        if backoff_ms.is_some() || max_deliveries.is_some() || dead_letter_topic.is_some() {
            return bad("backoff_ms, max_deliveries and dead_letter_topic need ack_wait_ms".into());
        }
        return Ok(None);
    };
    if !(MIN_ACK_WAIT_MS..=MAX_ACK_WAIT_MS).contains(&ack_wait_ms) {
        return bad(format!(
            "ack_wait_ms must be {MIN_ACK_WAIT_MS}-{MAX_ACK_WAIT_MS}, not {ack_wait_ms}"
        ));
    }
    let backoff_ms = backoff_ms.unwrap_or_else(|| vec![0]);
    if backoff_ms.is_empty() || backoff_ms.len() > MAX_BACKOFF_STEPS {
        return bad(format!(
            "backoff_ms holds 1-{MAX_BACKOFF_STEPS} delays, not {}",
            backoff_ms.len()
        ));
    }
    if let Some(delay) = backoff_ms.iter().find(|&&delay| delay > MAX_DELAY_MS) {
        return bad(format!(
            "a delay of backoff_ms is at most {MAX_DELAY_MS}, not {delay}"
        ));
    }
    match (&max_deliveries, &dead_letter_topic) {
        (None, None) => {}
        (Some(0), _) => return bad("max_deliveries must be at least 1".into()),
        (Some(_), Some(dead_letters)) => {
            check_name("topic", dead_letters)?;
            if *dead_letters == topic {
                return bad("a topic cannot be its own dead_letter_topic".into());
            }
        }
        _ => return bad("max_deliveries and dead_letter_topic go together".into()),
    }
    Ok(Some(SharedSettings {
        ack_wait_ms,
        backoff_ms,
        max_deliveries,
        dead_letter_topic,
    }))
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// The size of the future `handler` returns, without calling it.
    fn future_size<H, A, B, C, D, E, F>(_handler: H) -> usize
    where
        H: Fn(A, B, C, D, E) -> F,
        F: Future,
    {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_waiting_poll_holds_no_room_for_a_forward() {
        // Every waiting poll holds its handler's future: with room for a
        // forward to the leader it took 4 KB (a debug build), and 10,000
        // waiting polls held 26-33 MB more RSS.
        let size = future_size(pull);
        assert!(size < 2048, "a pull's future takes {size} bytes");
    }
}
