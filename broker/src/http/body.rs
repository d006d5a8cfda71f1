//! `Body<T>`: a JSON object request body.
//!
//! Unlike `web::Json`, it refuses a JSON array where an object is expected
//! (serde would otherwise read a struct from an array of its fields), and it
//! reports every failure as `ApiError`: 415 for a body not declared
//! `application/json` (so that a web page cannot post a form or text to a
//! broker across sites), 408 when the body does not arrive within 30 s,
//! 413 over the body limit, 400 otherwise.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
        let bytes = read_body(request, payload);
        Box::pin(async move { parse_object(&bytes.await?).map(Body) })
    }
}

/// How long a request body may take to arrive (API.md §5.5).
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Reads a request's whole body, within `BODY_DEADLINE` (`408`) and the
/// body limit (`413`).
pub fn read_body(
    request: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::Bytes, ApiError>> {
    let bytes = web::Bytes::from_request(request, payload);
    async move {
        let received = tokio::time::timeout(BODY_DEADLINE, bytes)
            .await
            .map_err(|_| ApiError::RequestTimeout(BODY_DEADLINE))?;
        received.map_err(|error| {
            if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!("request body is too large: {error}"))
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {error}"))
            }
        })
    }
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
