//! `POST /topics/{name}/messages`: one message or a batch, with headers
//! and client ids (API.md §3, §6.1); a message whose `msg_id` was stored
//! within `--dedup-window` is answered as a duplicate and stored again
//! nowhere.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use client::wire::header_limits::{MAX_HEADERS, MAX_VALUE_BYTES};
use client::wire::{message_id, NewMessage, PublishRequest, Published, PublishedBatch};

use super::body::Body;
use crate::error::ApiError;
use crate::event::now_ms;
use crate::names::{check_name, is_valid_name};
use crate::store::Outcome;
use crate::trust::Caller;
use crate::AppState;

/// Most messages in one batch publish: one commit must stay short, because
/// every other write waits for it.
const MAX_BATCH: usize = 10_000;

#[utoipa::path(
    post,
    path = "/topics/{name}/messages",
    operation_id = "publish",
    tag = "topics",
    params(("name" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$")), request_body = client::wire::PublishRequest, responses((status = 201, description = "Stored (a single message, or a batch: messages)", body = super::openapi::PublishAnswer), (status = 200, description = "Every message a duplicate of one stored within --dedup-window", body = super::openapi::PublishAnswer), super::openapi::Errors)
)]
pub async fn publish(
    app: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: Body<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let topic = name.into_inner();
    check_name("topic", &topic)?;
    let request = body.into_inner();
    let publisher = request.publisher.clone();
    check_name("publisher", &publisher)?;
    caller.may_act_as(&publisher)?;
    caller.may_publish(&topic)?;
    let (messages, batch) = messages_of(request)?;
    check_payload_sizes(&messages, app.config.max_payload_bytes)?;
    let published_at_ms = now_ms();
    let dedup_since_ms = published_at_ms.saturating_sub(app.config.dedup_window_ms());
    let counted = topic.clone();
    let outcomes = app
        .record(move |tx| {
            tx.publish(
                &topic,
                &publisher,
                messages,
                published_at_ms,
                dedup_since_ms,
            )
        })
        .await?;
    let stored = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Outcome::Stored(_)))
        .count();
    app.metrics.count_published(&counted, stored);
    let status = if stored > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut published = outcomes
        .into_iter()
        .map(|outcome| answer(&app.config.id, outcome));
    if batch {
        return Ok(HttpResponse::build(status).json(PublishedBatch {
            messages: published.collect(),
        }));
    }
    let one = published
        .next()
        .ok_or_else(|| ApiError::Internal("a publish stored no message".to_string()))?;
    Ok(HttpResponse::build(status).json(one))
}

/// Where a message landed, as the answer says it.
fn answer(me: &str, outcome: Outcome) -> Published {
    let (origin, seq, lamport, duplicate) = match outcome {
        Outcome::Stored((seq, lamport)) => (me.to_string(), seq, lamport, false),
        Outcome::Duplicate(origin, seq, lamport) => (origin, seq, lamport, true),
    };
    Published {
        id: message_id(&origin, seq),
        origin,
        seq,
        lamport,
        duplicate,
    }
}

/// The messages of a request, checked, and whether it was a batch: one
/// `payload` (with its `headers` and `msg_id`), or `payloads`, or
/// `messages`.
fn messages_of(request: PublishRequest) -> Result<(Vec<NewMessage>, bool), ApiError> {
    let PublishRequest {
        payload,
        headers,
        msg_id,
        payloads,
        messages,
        ..
    } = request;
    let (messages, batch) = match (payload, payloads, messages) {
        (Some(payload), None, None) => (
            vec![NewMessage {
                payload,
                headers,
                msg_id,
            }],
            false,
        ),
        (None, Some(_), None) | (None, None, Some(_)) if headers.is_some() || msg_id.is_some() => {
            return Err(bad_request(
                "headers and msg_id go with each message of a batch, in messages",
            ))
        }
        (None, Some(payloads), None) => (
            payloads
                .into_iter()
                .map(|payload| NewMessage {
                    payload,
                    ..NewMessage::default()
                })
                .collect(),
            true,
        ),
        (None, None, Some(messages)) => (messages, true),
        _ => {
            return Err(bad_request(
                "give exactly one of payload, payloads or messages",
            ))
        }
    };
    if messages.is_empty() {
        return Err(bad_request("a batch must not be empty"));
    }
    if messages.len() > MAX_BATCH {
        return Err(bad_request(&format!(
            "a batch holds at most {MAX_BATCH} messages, not {}",
            messages.len()
        )));
    }
    messages.iter().enumerate().try_for_each(check_message)?;
    Ok((messages, batch))
}

/// A message's headers and `msg_id` follow API.md §6.1.
fn check_message((index, message): (usize, &NewMessage)) -> Result<(), ApiError> {
    let refuse = |what: String| Err(bad_request(&format!("message {index}: {what}")));
    if let Some(msg_id) = &message.msg_id {
        if !is_valid_name(msg_id) {
            return refuse(format!(
                "msg_id {msg_id:?} must be 1-128 characters of A-Z a-z 0-9 . _ -"
            ));
        }
    }
    let Some(headers) = &message.headers else {
        return Ok(());
    };
    if headers.len() > MAX_HEADERS {
        return refuse(format!("{} headers, at most {MAX_HEADERS}", headers.len()));
    }
    for (name, value) in headers {
        if !is_valid_name(name) {
            return refuse(format!(
                "header name {name:?} must be 1-128 characters of A-Z a-z 0-9 . _ -"
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return refuse(format!(
                "header {name} is {} bytes, at most {MAX_VALUE_BYTES}",
                value.len()
            ));
        }
    }
    Ok(())
}

fn check_payload_sizes(messages: &[NewMessage], max_bytes: usize) -> Result<(), ApiError> {
    match messages.iter().position(|m| m.payload.len() > max_bytes) {
        None => Ok(()),
        Some(index) => Err(ApiError::PayloadTooLarge(format!(
            "payload {index} is {} bytes, over the limit of {max_bytes}",
            messages[index].payload.len()
        ))),
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::wire::Headers;

    fn request(json: serde_json::Value) -> PublishRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn one_message_carries_its_headers_and_id() {
        let (messages, batch) = messages_of(request(serde_json::json!({
            "publisher": "p", "payload": "x", "headers": {"a": "1"}, "msg_id": "m-1"
        })))
        .unwrap();
        assert!(!batch);
        assert_eq!(messages[0].msg_id.as_deref(), Some("m-1"));
        assert_eq!(messages[0].headers.as_ref().unwrap()["a"], "1");
    }

    #[test]
    fn a_batch_is_payloads_or_messages() {
        let (messages, batch) = messages_of(request(serde_json::json!({
            "publisher": "p", "messages": [{"payload": "a", "msg_id": "1"}, {"payload": "b"}]
        })))
        .unwrap();
        assert!(batch);
        assert_eq!(messages.len(), 2);
        let (messages, batch) = messages_of(request(serde_json::json!({
            "publisher": "p", "payloads": ["a", "b", "c"]
        })))
        .unwrap();
        assert!(batch && messages.len() == 3 && messages[2].msg_id.is_none());
    }

    #[test]
    fn bad_headers_and_ids_are_refused() {
        let long = "v".repeat(MAX_VALUE_BYTES + 1);
        let many: Headers = (0..=MAX_HEADERS)
            .map(|i| (format!("h{i}"), String::new()))
            .collect();
        for body in [
            serde_json::json!({"publisher": "p", "payload": "x", "msg_id": ""}),
            serde_json::json!({"publisher": "p", "payload": "x", "msg_id": "a b"}),
            serde_json::json!({"publisher": "p", "payload": "x", "headers": {"a b": "1"}}),
            serde_json::json!({"publisher": "p", "payload": "x", "headers": {"": "1"}}),
            serde_json::json!({"publisher": "p", "payload": "x", "headers": {"a": long}}),
            serde_json::json!({"publisher": "p", "payload": "x", "headers": many}),
            serde_json::json!({"publisher": "p", "payloads": ["x"], "msg_id": "m"}),
            serde_json::json!({"publisher": "p", "messages": []}),
            serde_json::json!({"publisher": "p", "payload": "x", "payloads": ["y"]}),
            serde_json::json!({"publisher": "p"}),
        ] {
            assert!(
                matches!(
                    messages_of(request(body.clone())),
                    Err(ApiError::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
