//! The one error type of request handling, mapped to HTTP statuses and the
//! stable error codes of `API.md` §2 here and nowhere else.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use client::wire::{ErrorBody, ErrorDetail};

use crate::store::StoreError;
use crate::trust::Denied;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body was not received within {0:?}")]
    RequestTimeout(std::time::Duration),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// Past a bound of the broker's (`Retry-After` says when to retry).
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no majority of the cluster is reachable")]
    NoQuorum,
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
    /// Refused or failed by the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Denied> for ApiError {
    fn from(Denied(reason): Denied) -> ApiError {
        ApiError::Forbidden(reason)
    }
}

impl ApiError {
    /// The stable code of `API.md` §2.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Store(StoreError::Invalid(_)) => "bad_request",
            ApiError::InvalidName(_) => "invalid_name",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NoQuorum => "no_quorum",
            ApiError::ShuttingDown
            | ApiError::Store(StoreError::Closed | StoreError::CatchingUp) => "unavailable",
            ApiError::Overloaded(_) | ApiError::Store(StoreError::Overloaded) => "overloaded",
            ApiError::Internal(_) | ApiError::Store(StoreError::Failed(_)) => "internal",
            ApiError::Store(StoreError::NotTopicOwner { .. }) => "not_topic_owner",
            ApiError::Store(StoreError::PublisherNotFound(_)) => "publisher_not_found",
            ApiError::Store(StoreError::SubscriberNotFound(_)) => "subscriber_not_found",
            ApiError::Store(StoreError::TopicNotFound(_)) => "topic_not_found",
            ApiError::Store(StoreError::NotSubscribed { .. }) => "not_subscribed",
            ApiError::Store(StoreError::MemberNotFound(_)) => "member_not_found",
            ApiError::Store(StoreError::TopicExists(_)) => "topic_exists",
        }
    }

    /// A failure of the broker itself (logged), not of the request.
    fn is_internal(&self) -> bool {
        matches!(
            self,
            ApiError::Internal(_) | ApiError::Store(StoreError::Failed(_))
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.code() {
            "bad_request" | "invalid_name" => StatusCode::BAD_REQUEST,
            "not_topic_owner" | "forbidden" => StatusCode::FORBIDDEN,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "publisher_not_found"
            | "subscriber_not_found"
            | "topic_not_found"
            | "not_subscribed"
            | "member_not_found"
            | "not_found" => StatusCode::NOT_FOUND,
            "topic_exists" => StatusCode::CONFLICT,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request_timeout" => StatusCode::REQUEST_TIMEOUT,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
            "no_quorum" | "unavailable" | "overloaded" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.is_internal() {
            tracing::error!("request failed: {self}");
        }
        let mut response = HttpResponse::build(self.status_code());
        if self.code() == "overloaded" {
            // Seconds; a writer empties its queue well within one.
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if self.code() == "unauthenticated" {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        })
    }
}
