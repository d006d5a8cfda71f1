//! Server-Sent Events (API.md §7). `GET /subscribers/{sid}/stream` gives a
//! subscriber its messages as its pulls would (in pull order, leasing what
//! it gives out of shared subscriptions), starting with those it has not
//! acknowledged; `GET /topics/{name}/stream` follows a topic's new messages
//! without taking them from anyone (the dashboard's live tail, `rumor
//! tail`). One event per message: `id:` the message id, `data:` the
//! message JSON; a comment every `KEEP_ALIVE` while nothing comes, so that
//! proxies and clients see the connection alive.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use client::peer::Have;
use client::wire::{Message, StartFrom};
use serde::Deserialize;

use crate::cursor::Cursor;
use crate::delivery::{self, Pull, PullSlot};
use crate::error::ApiError;
use crate::names::check_name;
use crate::store::queries::Sent;
use crate::store::{queries, StoreError};
use crate::trust::Caller;
use crate::wakeups::Key;
use crate::AppState;

/// How long a stream stays silent before it sends a comment. It is also
/// how soon the broker notices a client that went away (a write fails) and
/// frees its place among the subscriber's 16.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Most messages one read of a stream takes.
const READ_MAX: u32 = 100;

/// How long a stream waits before it reads again after a read failed for
/// a moment (overloaded, no quorum).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
pub struct StreamQuery {
    topic: Option<String>,
    auto_ack: Option<bool>,
}

/// `GET /subscribers/{sid}/stream`. Without `auto_ack` the client
/// acknowledges by id (`POST /subscribers/{sid}/ack`); a stream gives each
/// message once (a shared subscription's again when its lease ends), and a
/// new stream starts again with what is unacknowledged, so a reconnect
/// loses nothing. With `auto_ack` a batch of messages is acknowledged once
/// the stream has handed all of it to the connection (as a pull's
/// `auto_ack`: what the connection then loses is not given again).
#[utoipa::path(
    get,
    path = "/subscribers/{sid}/stream",
    operation_id = "stream_subscriber",
    tag = "streams",
    params(("sid" = String, Path, description = "The subscriber", pattern = "^[A-Za-z0-9._-]{1,128}$"), ("topic" = Option<String>, Query, description = "Only this topic"), ("auto_ack" = Option<bool>, Query, description = "Acknowledge as the stream goes")), responses((status = 200, description = "Server-Sent Events: one per message (id: the message id, data: the message JSON)", body = String, content_type = "text/event-stream"), super::openapi::Errors)
)]
pub async fn subscriber(
    app: web::Data<AppState>,
    request: actix_web::HttpRequest,
    caller: Caller,
    sid: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscriber = sid.into_inner();
    check_name("subscriber", &subscriber)?;
    caller.may_act_as(&subscriber)?;
    let StreamQuery { topic, auto_ack } = query.into_inner();
    if let Some(topic) = &topic {
        check_name("topic", topic)?;
        caller.may_subscribe(topic)?;
    }
    if app.follows_leader() && delivery::reads_shared(&app, &subscriber, topic.as_deref()).await? {
        let leader = app.cluster.leadership().leader;
        return Err(ApiError::BadRequest(format!(
            "leader mode: stream a shared subscription from the leader ({})",
            leader.as_deref().unwrap_or("none known now")
        )));
    }
    // A stream counts among the subscriber's waiting pulls for its whole
    // life (API.md §5.5).
    let slot = app.pulls.take(&subscriber)?;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec());
    let mut stream = SubscriberStream {
        app,
        _slot: slot,
        subscriber,
        topic,
        auto_ack: auto_ack.unwrap_or(false),
        authorization,
        sent: Sent::new(),
        queue: VecDeque::new(),
        unacknowledged: None,
        ended: false,
    };
    // The first read answers an unknown subscriber or topic with its error.
    stream.read(Duration::ZERO).await?;
    Ok(event_stream(futures_util::stream::unfold(
        stream,
        SubscriberStream::next_event,
    )))
}

/// A subscriber's messages, pull after pull.
struct SubscriberStream {
    app: web::Data<AppState>,
    _slot: PullSlot,
    subscriber: String,
    topic: Option<String>,
    auto_ack: bool,
    authorization: Option<Vec<u8>>,
    /// What this stream gave out already of v1 subscriptions.
    sent: Sent,
    queue: VecDeque<Message>,
    /// With `auto_ack`: the cursor of the messages in `queue`, acknowledged
    /// once they are all handed to the connection.
    unacknowledged: Option<Cursor>,
    ended: bool,
}

impl SubscriberStream {
    /// One pull, waiting up to `wait`, into the queue.
    async fn read(&mut self, wait: Duration) -> Result<(), ApiError> {
        let pull = Pull {
            subscriber: self.subscriber.clone(),
            topic: self.topic.clone(),
            max: READ_MAX,
            wait,
            auto_ack: false,
            authorization: self.authorization.clone(),
            sent: self.sent.clone(),
            for_stream: true,
        };
        let pulled = delivery::pull(&self.app, pull).await?;
        let cursor = Cursor::decode(&pulled.cursor, &self.subscriber)?;
        cursor.mark_sent(&mut self.sent);
        if self.auto_ack && !pulled.messages.is_empty() {
            self.unacknowledged = Some(cursor);
        }
        self.queue.extend(pulled.messages);
        Ok(())
    }

    async fn next_event(mut self) -> Option<(Result<Bytes, ApiError>, SubscriberStream)> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some((Ok(message_event(&message)), self));
            }
            if self.ended || *self.app.shutdown.borrow() {
                return None;
            }
            if let Some(cursor) = self.unacknowledged.take() {
                // Committed beside the next read, not before it (a commit
                // can take milliseconds): that read passes over what was
                // sent anyway, as do the subscriber's other reads.
                let authorization = self.authorization.clone();
                delivery::acknowledge_in_background(self.app.clone(), cursor, authorization);
            }
            match self.read(KEEP_ALIVE).await {
                Ok(()) if self.queue.is_empty() => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
                Ok(()) => {}
                Err(error) if ends_the_stream(&error) => {
                    // Not subscribed any more, the topic is gone: the
                    // stream says why and ends.
                    self.ended = true;
                    let body = serde_json::json!({
                        "error": {"code": error.code(), "message": error.to_string()}
                    });
                    let event = format!("event: end\ndata: {body}\n\n");
                    return Some((Ok(Bytes::from(event)), self));
                }
                Err(error) => {
                    // Overloaded, no quorum during an election, ...: the
                    // stream waits a moment and reads again.
                    tracing::debug!("a stream's read failed, trying again: {error}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
            }
        }
    }
}

/// Whether a read's `error` ends a stream for good (what it reads is gone)
/// rather than for a moment.
fn ends_the_stream(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Store(
            StoreError::SubscriberNotFound(_)
                | StoreError::TopicNotFound(_)
                | StoreError::NotSubscribed { .. }
        ) | ApiError::Unauthenticated(_)
            | ApiError::Forbidden(_)
    )
}

/// A streaming `text/event-stream` answer.
fn event_stream(
    events: impl futures_util::Stream<Item = Result<Bytes, ApiError>> + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(events)
}

#[derive(Deserialize)]
pub struct TailQuery {
    /// `latest` (default): messages published from now on; `earliest`:
    /// every message the topic holds first.
    from: Option<StartFrom>,
}

/// `GET /topics/{name}/stream`.
#[utoipa::path(
    get,
    path = "/topics/{name}/stream",
    operation_id = "stream_topic",
    tag = "streams",
    params(("name" = String, Path, description = "The topic", pattern = "^[A-Za-z0-9._-]{1,128}$"), ("from" = Option<client::wire::StartFrom>, Query, description = "latest (default) or earliest")), responses((status = 200, description = "Server-Sent Events of the topic's messages, taken from nobody", body = String, content_type = "text/event-stream"), super::openapi::Errors)
)]
pub async fn topic(
    app: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    query: web::Query<TailQuery>,
) -> Result<HttpResponse, ApiError> {
    let topic = name.into_inner();
    check_name("topic", &topic)?;
    caller.may_subscribe(&topic)?;
    let seen = match query.into_inner().from.unwrap_or_default() {
        StartFrom::Earliest => Have::new(),
        StartFrom::Latest => app.store.have().as_ref().clone(),
    };
    let wanted = topic.clone();
    app.store
        .read(move |conn| queries::require_topic(conn, &wanted))
        .await?;
    let tail = Tail {
        app,
        topic,
        seen,
        queue: VecDeque::new(),
        ended: false,
    };
    Ok(event_stream(futures_util::stream::unfold(
        tail,
        Tail::next_event,
    )))
}

/// A topic followed from `seen` on.
struct Tail {
    app: web::Data<AppState>,
    topic: String,
    /// Per origin, the seq of the last message sent (or skipped).
    seen: Have,
    queue: VecDeque<Message>,
    ended: bool,
}

impl Tail {
    /// The stream's next bytes: a message, a keep-alive comment, or the
    /// end (the topic is gone, the broker stops).
    async fn next_event(mut self) -> Option<(Result<Bytes, ApiError>, Tail)> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some((Ok(message_event(&message)), self));
            }
            if self.ended || *self.app.shutdown.borrow() {
                return None;
            }
            let app = self.app.clone();
            let watch = app.wakeups.watch(Key::Topic(self.topic.clone()));
            let mut published = std::pin::pin!(watch.notified());
            published.as_mut().enable();
            let (topic, seen) = (self.topic.clone(), self.seen.clone());
            let read = app
                .store
                .read(move |conn| queries::topic_messages_after(conn, &topic, &seen, READ_MAX))
                .await;
            let messages = match read {
                Ok(messages) => messages,
                Err(StoreError::TopicNotFound(_)) => {
                    self.ended = true;
                    return Some((Ok(Bytes::from_static(b"event: end\ndata: {}\n\n")), self));
                }
                Err(error) => return Some((Err(error.into()), self)),
            };
            if !messages.is_empty() {
                for message in &messages {
                    let seen = self.seen.entry(message.origin.clone()).or_default();
                    *seen = (*seen).max(message.seq);
                }
                self.queue.extend(messages);
                continue;
            }
            let mut shutdown = app.shutdown.clone();
            tokio::select! {
                _ = published => {}
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
                _ = shutdown.changed() => return None,
            }
        }
    }
}

/// One message as a Server-Sent Event.
fn message_event(message: &Message) -> Bytes {
    let json = message.to_json();
    let mut event = Vec::with_capacity(json.len() + message.id.len() + 16);
    event.extend_from_slice(b"id: ");
    event.extend_from_slice(message.id.as_bytes());
    event.extend_from_slice(b"\ndata: ");
    event.extend_from_slice(&json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}
