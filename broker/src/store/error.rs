//! The store's own error: why a read or a write did not happen. The HTTP
//! edge maps it to a status and code (`error.rs`).

/// A read or write refused (what it names does not exist, or the state
/// forbids it) or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    #[error("topic {topic:?} was created by another publisher than {publisher:?}")]
    NotTopicOwner { topic: String, publisher: String },
    /// The request names something that cannot be (e.g. a cursor past what
    /// the broker holds).
    #[error("{0}")]
    Invalid(String),
    #[error("this broker is catching up on its own history from its peers; try again")]
    CatchingUp,
    #[error("the broker is shutting down")]
    Closed,
    #[error("too many writes are waiting; retry in a moment")]
    Overloaded,
    /// SQLite or the pool failed, or a write failed half-way.
    #[error("{0}")]
    Failed(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Failed(format!("storage: {error}"))
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        StoreError::Failed(format!("storage pool: {error}"))
    }
}
