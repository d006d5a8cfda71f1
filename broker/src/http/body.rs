//! `Body<T>`: a JSON object request body.
//!
//! Unlike `web::Json`, it refuses a JSON array where an object is expected
//! (serde would otherwise read a struct from an array of its fields), and it
//! reports every failure as `ApiError`: 415 for a body not declared
//! `application/json` (so that a web page cannot post a form or text to a
//! broker across sites), 408 when the body does not arrive within 30 s,
//! 413 over the body limit, 503 past the budget for buffered bodies
//! (`BodyBudget`), 400 otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::AppState;

pub struct Body<T>(T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if let Err(refused) = check_json(request) {
            return Box::pin(async move { Err(refused) });
        }
        let body = read_body(request, payload);
        Box::pin(async move { parse_object(&body.await?.bytes).map(Body) })
    }
}

/// How long a request body may take to arrive (API.md §5.5).
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The bytes of request bodies buffered at once, across all requests
/// (API.md §5.5): a body takes its share chunk by chunk as it arrives and
/// gives it back once read and parsed; past the budget, `503 overloaded`.
/// Bodies declared small (a single publish, an ack) have a pool of their
/// own, so that a flood of large bodies cannot hold every publish back.
pub struct BodyBudget {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
    /// Largest single body (`413` beyond).
    max_body_bytes: usize,
}

/// A body declared this long or shorter draws on the small pool.
const SMALL_BODY_BYTES: usize = 64 * 1024;
/// The small pool: a thousand small bodies at once.
const SMALL_POOL_BYTES: usize = 1024 * SMALL_BODY_BYTES;

impl BodyBudget {
    /// `large_bytes`: the pool of bodies not declared small.
    pub fn new(large_bytes: usize, max_body_bytes: usize) -> BodyBudget {
        let pool = |bytes: usize| Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)));
        BodyBudget {
            small: pool(SMALL_POOL_BYTES),
            large: pool(large_bytes),
            max_body_bytes,
        }
    }

    fn pool(&self, declared: Option<usize>) -> &Arc<Semaphore> {
        match declared {
            Some(length) if length <= SMALL_BODY_BYTES => &self.small,
            _ => &self.large,
        }
    }
}

/// A whole request body and its share of the budget.
pub struct Received {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

/// Reads a request's whole body, within `BODY_DEADLINE` (`408`), the body
/// limit (`413`) and the broker's budget for buffered bodies (`503`).
pub fn read_body(
    request: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<Received, ApiError>> {
    let payload = payload.take();
    let app = request.app_data::<web::Data<AppState>>().cloned();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    async move {
        let Some(app) = app else {
            return Err(ApiError::Internal("no broker state".to_string()));
        };
        let budget = &app.bodies;
        if declared.is_some_and(|length| length > budget.max_body_bytes) {
            return Err(too_large(budget.max_body_bytes));
        }
        let pool = budget.pool(declared);
        tokio::time::timeout(BODY_DEADLINE, receive(payload, pool, budget.max_body_bytes))
            .await
            .map_err(|_| ApiError::RequestTimeout(BODY_DEADLINE))?
    }
}

async fn receive(
    mut payload: Payload,
    pool: &Arc<Semaphore>,
    limit: usize,
) -> Result<Received, ApiError> {
    let mut body = BytesMut::new();
    let mut share: Option<OwnedSemaphorePermit> = None;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::BadRequest(format!("cannot read the request body: {error}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        let more = u32::try_from(chunk.len())
            .ok()
            .and_then(|n| pool.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                ApiError::Overloaded("too many request bodies are arriving at once".to_string())
            })?;
        match &mut share {
            Some(share) => share.merge(more),
            None => share = Some(more),
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Received {
        bytes: body.freeze(),
        _share: share,
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body is over the limit of {limit} bytes"))
}

/// The body must be declared `application/json` (parameters such as a
/// charset are fine).
fn check_json(request: &HttpRequest) -> Result<(), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let essence = declared.map(|value| value.split(';').next().unwrap_or("").trim());
    if essence.is_some_and(|essence| essence.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the request body must be Content-Type: application/json, not {}",
        declared.map_or_else(|| "none".to_string(), |value| format!("{value:?}"))
    )))
}

fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let starts_as_object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts_as_object {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".to_string(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::wire::Registration;

    #[test]
    fn reads_an_object() {
        let parsed: Registration = parse_object(b" {\"id\": \"P1\"}").unwrap();
        assert_eq!(parsed.id, "P1");
    }

    #[test]
    fn refuses_arrays_scalars_and_garbage() {
        for body in [
            &b"[\"P1\"]"[..],
            b"\"P1\"",
            b"",
            b"{",
            b"{\"id\": 5}",
            b"{}",
        ] {
            assert!(
                matches!(
                    parse_object::<Registration>(body),
                    Err(ApiError::BadRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
