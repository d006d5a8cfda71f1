//! Server-Sent Events (API.md §7): `GET /topics/{name}/stream` follows a
//! topic's new messages without taking them from anyone (the dashboard's
//! live tail, `rumor tail`). One event per message: `id:` the message id,
//! `data:` the message JSON; a comment every `KEEP_ALIVE` while nothing
//! comes, so that proxies and clients see the connection alive.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use client::peer::Have;
use client::wire::{Message, StartFrom};
use serde::Deserialize;

use crate::error::ApiError;
use crate::names::check_name;
use crate::store::{queries, StoreError};
use crate::trust::Caller;
use crate::wakeups::Key;
use crate::AppState;

/// How long a stream stays silent before it sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most messages one read of a stream takes.
const READ_MAX: u32 = 100;

#[derive(Deserialize)]
pub struct TailQuery {
    /// `latest` (default): messages published from now on; `earliest`:
    /// every message the topic holds first.
    from: Option<StartFrom>,
}

/// `GET /topics/{name}/stream`.
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
    let events = futures_util::stream::unfold(tail, Tail::next_event);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(events))
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
