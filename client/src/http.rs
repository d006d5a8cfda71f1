//! A typed async client for one broker.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::connect::{innermost, Connect, ConnectError};
use crate::peer::{ElectionMessage, EncodedEvent, SyncRequest, SyncResponse};
use crate::peer_auth::{self, ClusterKey, SignedRequest};
use crate::peers::PeerAddr;
use crate::wire::*;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached (refused, reset, timed out).
    #[error("cannot reach broker {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The broker answered with an API error.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The broker answered something that is not the API's JSON.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl ClientError {
    /// True when another broker may succeed where this one failed.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// The stable error code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Whether a registration or subscription was new (201) or already there (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// Marks a request one broker forwards to another (never forwarded again),
/// with for whom: a client (`FORWARDED_FOR_CLIENT`: it acts with the
/// client's token) or the cluster itself (`FORWARDED_FOR_CLUSTER`: a
/// broker's own request, e.g. a joining broker adding itself).
pub const FORWARDED_HEADER: &str = "x-rumor-forwarded";
pub const FORWARDED_FOR_CLIENT: &str = "client";
pub const FORWARDED_FOR_CLUSTER: &str = "cluster";

/// The answer to a forwarded request.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Client for one broker, e.g. `Client::new("http://localhost:3000")`.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    /// `base` parsed, or why it is not a base URL (reported by every call).
    url: Result<Url, String>,
    http: reqwest::Client,
    connect: Connect,
    /// The broker's id, `<host>:<port>`, that signed requests are for.
    target: String,
}

/// An answer, read whole (and verified, between brokers).
struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
}

/// Extra time a long poll may take beyond its `wait_ms` before the client gives up.
const POLL_GRACE: Duration = Duration::from_secs(10);
/// Time for any call that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A plain-HTTP client without credentials (v1).
    pub fn new(base_url: impl Into<String>) -> Self {
        Client::with(base_url, &Connect::default()).expect("a client without TLS always builds")
    }

    /// A client with the transport and credentials of `connect`.
    pub fn with(base_url: impl Into<String>, connect: &Connect) -> Result<Self, ConnectError> {
        let http = connect.http_client()?;
        let base = base_url.into().trim_end_matches('/').to_string();
        let url = match Url::parse(&base) {
            Ok(url) if url.cannot_be_a_base() => Err("not a base URL".to_string()),
            Ok(url) => Ok(url),
            Err(error) => Err(error.to_string()),
        };
        let target = url.as_ref().map_or_else(
            |_| String::new(),
            |url| {
                let host = url.host_str().unwrap_or_default();
                format!("{host}:{}", url.port_or_known_default().unwrap_or(0))
            },
        );
        Ok(Client {
            base,
            url,
            http,
            connect: connect.clone(),
            target,
        })
    }

    /// A client for `broker` in the transport of `connect`; its signed
    /// requests name the broker by its id exactly as given.
    pub fn to(broker: &PeerAddr, connect: &Connect) -> Result<Self, ConnectError> {
        Ok(Client {
            target: broker.id(),
            ..Client::with(connect.url(broker), connect)?
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, &["health"])?).await
    }

    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.json(self.request(Method::GET, &["cluster"])?).await
    }

    pub async fn metrics(&self) -> Result<String, ClientError> {
        let reply = self.send(self.request(Method::GET, &["metrics"])?).await?;
        String::from_utf8(reply.body.to_vec()).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    pub async fn register_publisher(&self, id: &str) -> Result<Created, ClientError> {
        self.register("publishers", id).await
    }

    pub async fn register_subscriber(&self, id: &str) -> Result<Created, ClientError> {
        self.register("subscribers", id).await
    }

    async fn register(&self, kind: &str, id: &str) -> Result<Created, ClientError> {
        let body = Registration { id: id.to_string() };
        let response = self
            .send(self.request(Method::POST, &[kind])?.json(&body))
            .await?;
        Ok(created(response.status))
    }

    pub async fn create_topic(
        &self,
        name: &str,
        publisher: &str,
    ) -> Result<TopicCreated, ClientError> {
        let body = CreateTopic {
            name: name.to_string(),
            publisher: publisher.to_string(),
            limits: None,
        };
        self.json(self.request(Method::POST, &["topics"])?.json(&body))
            .await
    }

    /// Every topic (`GET /topics`, page after page).
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        self.every_page("topics", |topic: &TopicInfo| topic.name.as_str())
            .await
    }

    /// Every entry of the listing at `path`, a page (`MAX_TOPICS_PAGE`) at
    /// a time, each page after the `name` of the last entry of the one
    /// before.
    async fn every_page<T: DeserializeOwned>(
        &self,
        path: &str,
        name: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, ClientError> {
        let mut all: Vec<T> = Vec::new();
        loop {
            let after = all.last().map_or("", &name);
            let request = self
                .request(Method::GET, &[path])?
                .query(&[("after", after)]);
            let page: Vec<T> = self.json(request).await?;
            let done = page.len() < MAX_TOPICS_PAGE as usize;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    pub async fn topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        self.json(self.request(Method::GET, &["topics", name])?)
            .await
    }

    pub async fn delete_topic(&self, name: &str, publisher: &str) -> Result<(), ClientError> {
        let request = self
            .request(Method::DELETE, &["topics", name])?
            .query(&[("publisher", publisher)]);
        self.send(request).await.map(drop)
    }

    pub async fn publish(
        &self,
        topic: &str,
        publisher: &str,
        payload: &str,
    ) -> Result<Published, ClientError> {
        let body = PublishRequest {
            publisher: publisher.to_string(),
            payload: Some(payload.to_string()),
            ..PublishRequest::default()
        };
        self.post_message(topic, &body).await
    }

    /// Publishes one message with its headers and `msg_id`.
    pub async fn publish_message(
        &self,
        topic: &str,
        publisher: &str,
        message: NewMessage,
    ) -> Result<Published, ClientError> {
        let body = PublishRequest {
            publisher: publisher.to_string(),
            payload: Some(message.payload),
            headers: message.headers,
            msg_id: message.msg_id,
            ..PublishRequest::default()
        };
        self.post_message(topic, &body).await
    }

    /// Publishes a batch of messages with their headers and `msg_id`s.
    pub async fn publish_messages(
        &self,
        topic: &str,
        publisher: &str,
        messages: Vec<NewMessage>,
    ) -> Result<PublishedBatch, ClientError> {
        let body = PublishRequest {
            publisher: publisher.to_string(),
            messages: Some(messages),
            ..PublishRequest::default()
        };
        self.post_message(topic, &body).await
    }

    pub async fn publish_batch(
        &self,
        topic: &str,
        publisher: &str,
        payloads: Vec<String>,
    ) -> Result<PublishedBatch, ClientError> {
        let body = PublishRequest {
            publisher: publisher.to_string(),
            payloads: Some(payloads),
            ..PublishRequest::default()
        };
        self.post_message(topic, &body).await
    }

    async fn post_message<T: DeserializeOwned>(
        &self,
        topic: &str,
        body: &PublishRequest,
    ) -> Result<T, ClientError> {
        let path = ["topics", topic, "messages"];
        self.json(self.request(Method::POST, &path)?.json(body))
            .await
    }

    pub async fn subscribe(
        &self,
        subscriber: &str,
        topic: &str,
        from: StartFrom,
    ) -> Result<Created, ClientError> {
        let body = Subscribe {
            topic: topic.to_string(),
            from,
            ..Subscribe::default()
        };
        self.subscribe_with(subscriber, &body).await
    }

    /// Subscribes with every setting of `body` (a shared subscription with
    /// `ack_wait_ms`).
    pub async fn subscribe_with(
        &self,
        subscriber: &str,
        body: &Subscribe,
    ) -> Result<Created, ClientError> {
        let path = ["subscribers", subscriber, "subscriptions"];
        let response = self
            .send(self.request(Method::POST, &path)?.json(&body))
            .await?;
        Ok(created(response.status))
    }

    pub async fn unsubscribe(&self, subscriber: &str, topic: &str) -> Result<(), ClientError> {
        let path = ["subscribers", subscriber, "subscriptions", topic];
        self.send(self.request(Method::DELETE, &path)?)
            .await
            .map(drop)
    }

    /// Long-polls for messages; the request may take `wait_ms` plus a grace period.
    pub async fn pull(&self, subscriber: &str, query: &PullQuery) -> Result<Pulled, ClientError> {
        let path = ["subscribers", subscriber, "messages"];
        let wait = Duration::from_millis(query.wait_ms.unwrap_or(pull_limits::DEFAULT_WAIT_MS));
        let request = self
            .request(Method::GET, &path)?
            .query(query)
            .timeout(wait + POLL_GRACE);
        self.json(request).await
    }

    pub async fn ack(&self, subscriber: &str, cursor: &str) -> Result<(), ClientError> {
        let body = Ack {
            cursor: Some(cursor.to_string()),
            ids: None,
        };
        self.post_for_subscriber(subscriber, "ack", &body).await
    }

    /// Acknowledges single messages by id, in any order.
    pub async fn ack_ids(&self, subscriber: &str, ids: &[String]) -> Result<(), ClientError> {
        let body = Ack {
            cursor: None,
            ids: Some(ids.to_vec()),
        };
        self.post_for_subscriber(subscriber, "ack", &body).await
    }

    /// Ends the leases of `ids` now; they are given out again after `delay_ms`.
    pub async fn nack(
        &self,
        subscriber: &str,
        ids: &[String],
        delay_ms: u64,
    ) -> Result<(), ClientError> {
        let body = Nack {
            ids: ids.to_vec(),
            delay_ms,
        };
        self.post_for_subscriber(subscriber, "nack", &body).await
    }

    /// Restarts the leases of `ids`.
    pub async fn extend(&self, subscriber: &str, ids: &[String]) -> Result<(), ClientError> {
        let body = Extend { ids: ids.to_vec() };
        self.post_for_subscriber(subscriber, "extend", &body).await
    }

    /// `POST /subscribers/{subscriber}/{action}` with `body`, answered 2xx.
    async fn post_for_subscriber(
        &self,
        subscriber: &str,
        action: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), ClientError> {
        let path = ["subscribers", subscriber, action];
        self.send(self.request(Method::POST, &path)?.json(body))
            .await
            .map(drop)
    }

    /// Adds a broker to the cluster (`POST /cluster/members`).
    pub async fn add_member(&self, host: &str, port: u16) -> Result<Created, ClientError> {
        let body = NewMember {
            host: host.to_string(),
            port,
        };
        let response = self
            .send(
                self.request(Method::POST, &["cluster", "members"])?
                    .json(&body),
            )
            .await?;
        Ok(created(response.status))
    }

    /// Removes a broker from the cluster (`DELETE /cluster/members/{id}`).
    pub async fn remove_member(&self, id: &str) -> Result<(), ClientError> {
        let request = self.request(Method::DELETE, &["cluster", "members", id])?;
        self.send(request).await.map(drop)
    }

    /// Switches the cluster's mode (`PUT /cluster/mode`).
    pub async fn set_mode(&self, mode: &str) -> Result<ModeChange, ClientError> {
        let body = ModeChange {
            mode: mode.to_string(),
        };
        self.json(self.request(Method::PUT, &["cluster", "mode"])?.json(&body))
            .await
    }

    /// Every registered subscriber with its subscriptions
    /// (`GET /subscriptions`, page after page).
    pub async fn subscribers(&self) -> Result<Vec<SubscriberInfo>, ClientError> {
        self.every_page("subscriptions", |s: &SubscriberInfo| s.id.as_str())
            .await
    }

    /// Follows `topic`'s messages from `from` on, taking them from nobody
    /// (`GET /topics/{name}/stream`, Server-Sent Events).
    pub async fn tail(&self, topic: &str, from: StartFrom) -> Result<EventStream, ClientError> {
        let from = match from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let request = self
            .request(Method::GET, &["topics", topic, "stream"])?
            .query(&[("from", from)]);
        self.events(request).await
    }

    /// A subscriber's messages as Server-Sent Events
    /// (`GET /subscribers/{sid}/stream`): of `topic`, or of all its
    /// subscriptions; acknowledged as they go with `auto_ack`.
    pub async fn stream(
        &self,
        subscriber: &str,
        topic: Option<&str>,
        auto_ack: bool,
    ) -> Result<EventStream, ClientError> {
        let mut request = self
            .request(Method::GET, &["subscribers", subscriber, "stream"])?
            .query(&[("auto_ack", auto_ack)]);
        if let Some(topic) = topic {
            request = request.query(&[("topic", topic)]);
        }
        self.events(request).await
    }

    /// Opens a stream of Server-Sent Events.
    async fn events(&self, request: RequestBuilder) -> Result<EventStream, ClientError> {
        let request = request
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(STREAM_TIMEOUT)
            .build()
            .map_err(|e| self.protocol(e))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
            return Err(self.error_answer(status, &body));
        }
        Ok(EventStream {
            base: self.base.clone(),
            response,
            buffer: Vec::new(),
        })
    }

    /// Broker to broker: sends events and a heartbeat, returns the peer's state.
    pub async fn sync(
        &self,
        body: &SyncRequest<EncodedEvent>,
        timeout: Duration,
    ) -> Result<SyncResponse, ClientError> {
        let body = body.to_json().map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            reason: format!("cannot encode a sync: {e}"),
        })?;
        let request = self
            .request(Method::POST, &["peer", "sync"])?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.json(request.timeout(timeout)).await
    }

    /// Broker to broker: sends a client's request on to this broker as it
    /// came (`path` with its query, the client's `Authorization` header),
    /// and returns the status, content type and body of the answer.
    pub async fn forward(&self, request: ForwardedRequest<'_>) -> Result<Forwarded, ClientError> {
        let method =
            Method::from_bytes(request.method.as_bytes()).map_err(|e| ClientError::Protocol {
                url: self.base.clone(),
                reason: format!("method {}: {e}", request.method),
            })?;
        let url = format!("{}{}", self.base, request.path);
        let mut builder = self
            .http
            .request(method, url)
            .header(
                FORWARDED_HEADER,
                if request.for_cluster {
                    FORWARDED_FOR_CLUSTER
                } else {
                    FORWARDED_FOR_CLIENT
                },
            )
            .timeout(request.timeout.unwrap_or(REQUEST_TIMEOUT));
        if let Some(content_type) = request.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = request.authorization {
            builder = builder.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let reply = self.exchange(builder.body(request.body)).await?;
        Ok(Forwarded {
            status: reply.status.as_u16(),
            content_type: reply.content_type,
            body: reply.body.to_vec(),
        })
    }

    /// Broker to broker: delivers one bully election message.
    pub async fn election(
        &self,
        body: &ElectionMessage,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = self.request(Method::POST, &["peer", "election"])?;
        self.send(request.json(body).timeout(timeout))
            .await
            .map(drop)
    }

    /// A request for the API path made of `segments` under the base URL, each
    /// percent-encoded as one segment (`a/b` is sent as `a%2Fb`, `a b` as `a%20b`).
    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        let mut url = self
            .url
            .clone()
            .map_err(|reason| ClientError::Unreachable {
                url: self.base.clone(),
                reason,
            })?;
        url.path_segments_mut()
            .expect("checked in `with`: a base URL")
            .pop_if_empty()
            .extend(segments);
        let request = self.http.request(method, url).timeout(REQUEST_TIMEOUT);
        Ok(match self.connect.shown_token() {
            Some(token) => request.bearer_auth(token.as_str()),
            None => request,
        })
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let reply = self.send(request).await?;
        serde_json::from_slice(&reply.body).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            reason: format!("invalid JSON: {e}"),
        })
    }

    /// Sends a request and turns transport failures and error statuses into `ClientError`.
    async fn send(&self, request: RequestBuilder) -> Result<Reply, ClientError> {
        let reply = self.exchange(request).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        Err(self.error_answer(reply.status, &reply.body))
    }

    /// The error an answer with a failure `status` and `body` reports.
    fn error_answer(&self, status: StatusCode, body: &[u8]) -> ClientError {
        let status = status.as_u16();
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError::Protocol {
                url: self.base.clone(),
                reason: format!(
                    "status {status} with body {:?}",
                    String::from_utf8_lossy(body)
                ),
            },
        }
    }

    /// Sends a request and reads the whole answer; with a cluster key the
    /// request is signed and an answer that is not is refused.
    async fn exchange(&self, request: RequestBuilder) -> Result<Reply, ClientError> {
        let mut request = request.build().map_err(|e| self.protocol(e))?;
        let nonce = self
            .connect
            .signing_key()
            .map(|key| sign(key, &self.target, &mut request));
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let signature = response
            .headers()
            .get(peer_auth::SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if let (Some(key), Some(nonce)) = (self.connect.signing_key(), nonce) {
            let signed =
                signature.is_some_and(|s| key.verifies_answer(&nonce, status.as_u16(), &body, &s));
            if !signed {
                return Err(ClientError::Protocol {
                    url: self.base.clone(),
                    reason: format!("answer ({status}) not signed with the cluster key"),
                });
            }
        }
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    fn unreachable(&self, error: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: describe(&error),
        }
    }

    fn protocol(&self, error: reqwest::Error) -> ClientError {
        ClientError::Protocol {
            url: self.base.clone(),
            reason: describe(&error),
        }
    }
}

/// How long a stream may stay open.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a stream may stay silent before its broker counts as gone:
/// six of the brokers' keep-alive intervals (5 s).
const STREAM_SILENCE: Duration = Duration::from_secs(30);

/// Messages as Server-Sent Events (see `Client::tail`, `Client::stream`).
pub struct EventStream {
    base: String,
    response: reqwest::Response,
    /// Bytes received and not yet parsed into whole events.
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next message; `None` when the stream ends (the topic was
    /// deleted, the subscription ended, the broker stopped).
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(message) = self.message(&event)? {
                    return Ok(Some(message));
                }
                continue;
            }
            let silent = ClientError::Unreachable {
                url: self.base.clone(),
                reason: format!(
                    "nothing came for {STREAM_SILENCE:?} (brokers send a keep-alive every 5 s)"
                ),
            };
            let chunk = tokio::time::timeout(STREAM_SILENCE, self.response.chunk())
                .await
                .map_err(|_| silent)?
                .map_err(|e| ClientError::Unreachable {
                    url: self.base.clone(),
                    reason: describe(&e),
                })?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The message in one event's `data:` line, if it has one (comments
    /// and the end event have none).
    fn message(&self, event: &[u8]) -> Result<Option<Message>, ClientError> {
        let text = String::from_utf8_lossy(event);
        if text.lines().any(|line| line == "event: end") {
            return Ok(None);
        }
        let Some(data) = text.lines().find_map(|line| line.strip_prefix("data: ")) else {
            return Ok(None);
        };
        serde_json::from_str(data)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                url: self.base.clone(),
                reason: format!("invalid event: {e}"),
            })
    }
}

/// A request as a follower forwards it to the leader (no `Debug`: it
/// holds the client's credentials).
#[derive(Clone)]
pub struct ForwardedRequest<'a> {
    /// Made by another broker of the cluster, not a client (see
    /// `FORWARDED_HEADER`).
    pub for_cluster: bool,
    pub method: &'a str,
    /// The path with its query.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a [u8]>,
    pub body: Vec<u8>,
    /// How long the answer may take (a long poll's wait and more); the
    /// default for any other call without it.
    pub timeout: Option<Duration>,
}

/// Signs a built request for broker `target` with the cluster key;
/// returns its nonce.
fn sign(key: &ClusterKey, target: &str, request: &mut reqwest::Request) -> String {
    let nonce = peer_auth::new_nonce();
    let time_ms = peer_auth::now_ms();
    let path = match request.url().query() {
        Some(query) => format!("{}?{query}", request.url().path()),
        None => request.url().path().to_string(),
    };
    let body_sha256 = peer_auth::body_digest(
        request
            .body()
            .and_then(|body| body.as_bytes())
            .unwrap_or_default(),
    );
    let headers = request.headers();
    let signed = SignedRequest {
        method: request.method().as_str(),
        path: &path,
        target,
        time_ms,
        nonce: &nonce,
        forwarded: headers
            .get(FORWARDED_HEADER)
            .map_or(&[][..], |value| value.as_bytes()),
        authorization: headers
            .get(reqwest::header::AUTHORIZATION)
            .map_or(&[][..], |value| value.as_bytes()),
        body_sha256: &body_sha256,
    };
    let signature = key.sign_request(&signed);
    let headers = request.headers_mut();
    for (name, value) in [
        (peer_auth::TIME_HEADER, time_ms.to_string()),
        (peer_auth::NONCE_HEADER, nonce.clone()),
        (peer_auth::SIGNATURE_HEADER, signature),
        (peer_auth::BODY_HEADER, body_sha256),
    ] {
        headers.insert(
            name,
            HeaderValue::from_str(&value).expect("digits and hex are header values"),
        );
    }
    nonce
}

fn created(status: StatusCode) -> Created {
    if status == StatusCode::CREATED {
        Created::New
    } else {
        Created::Existing
    }
}

/// The innermost cause of a transport error, e.g. "Connection refused (os error 111)".
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_string()
    } else {
        innermost(error)
    }
}
