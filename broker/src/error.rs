//! The one error type of request handling, mapped to HTTP statuses and the
//! stable error codes of `API.md` §2 here and nowhere else.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use client::wire::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("topic {topic:?} was created by another publisher than {publisher:?}")]
    NotTopicOwner { topic: String, publisher: String },
    #[error("publisher {0:?} is not registered")]
    PublisherNotFound(String),
    #[error("subscriber {0:?} is not registered")]
    SubscriberNotFound(String),
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    #[error("subscriber {subscriber:?} is not subscribed to topic {topic:?}")]
    NotSubscribed { subscriber: String, topic: String },
    #[error("{0:?} is not a member of the cluster")]
    MemberNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("no majority of the cluster is reachable")]
    NoQuorum,
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("this broker is catching up on its own history from its peers; try again")]
    CatchingUp,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable code of `API.md` §2.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidName(_) => "invalid_name",
            ApiError::NotTopicOwner { .. } => "not_topic_owner",
            ApiError::PublisherNotFound(_) => "publisher_not_found",
            ApiError::SubscriberNotFound(_) => "subscriber_not_found",
            ApiError::TopicNotFound(_) => "topic_not_found",
            ApiError::NotSubscribed { .. } => "not_subscribed",
            ApiError::MemberNotFound(_) => "member_not_found",
            ApiError::TopicExists(_) => "topic_exists",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NoQuorum => "no_quorum",
            ApiError::ShuttingDown | ApiError::CatchingUp => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidName(_) => StatusCode::BAD_REQUEST,
            ApiError::NotTopicOwner { .. } => StatusCode::FORBIDDEN,
            ApiError::PublisherNotFound(_)
            | ApiError::SubscriberNotFound(_)
            | ApiError::TopicNotFound(_)
            | ApiError::NotSubscribed { .. }
            | ApiError::MemberNotFound(_)
            | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TopicExists(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NoQuorum | ApiError::ShuttingDown | ApiError::CatchingUp => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(reason) = self {
            tracing::error!("request failed: {reason}");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        })
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        ApiError::Internal(format!("storage: {error}"))
    }
}

impl From<r2d2::Error> for ApiError {
    fn from(error: r2d2::Error) -> Self {
        ApiError::Internal(format!("storage pool: {error}"))
    }
}
