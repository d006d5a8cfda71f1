//! A typed async client for one broker.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::peer::{ElectionMessage, SyncRequest, SyncResponse};
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

/// Marks a request one broker forwards to another (never forwarded again).
pub const FORWARDED_HEADER: &str = "x-rumor-forwarded";

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
}

/// Extra time a long poll may take beyond its `wait_ms` before the client gives up.
const POLL_GRACE: Duration = Duration::from_secs(10);
/// Time to connect to a broker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for any call that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive connection is kept for the next call: well
/// below the broker's own keep-alive (actix-web's default, 5 s, counted from
/// a clock it updates every 500 ms, so shorter on a busy broker), so that a
/// call never goes out on a connection the broker is closing at that moment
/// (which fails it with "connection reset by peer" or "connection closed
/// before message completed").
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

impl Client {
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build()
            .expect("a client without TLS always builds");
        let base = base_url.into().trim_end_matches('/').to_string();
        let url = match Url::parse(&base) {
            Ok(url) if url.cannot_be_a_base() => Err("not a base URL".to_string()),
            Ok(url) => Ok(url),
            Err(error) => Err(error.to_string()),
        };
        Client { base, url, http }
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
        let response = self.send(self.request(Method::GET, &["metrics"])?).await?;
        response.text().await.map_err(|e| self.protocol(e))
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
        Ok(created(response.status()))
    }

    pub async fn create_topic(
        &self,
        name: &str,
        publisher: &str,
    ) -> Result<TopicCreated, ClientError> {
        let body = CreateTopic {
            name: name.to_string(),
            publisher: publisher.to_string(),
        };
        self.json(self.request(Method::POST, &["topics"])?.json(&body))
            .await
    }

    pub async fn topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        self.json(self.request(Method::GET, &["topics"])?).await
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
            payloads: None,
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
            payload: None,
            payloads: Some(payloads),
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
        };
        let path = ["subscribers", subscriber, "subscriptions"];
        let response = self
            .send(self.request(Method::POST, &path)?.json(&body))
            .await?;
        Ok(created(response.status()))
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
        let path = ["subscribers", subscriber, "ack"];
        let body = Ack {
            cursor: cursor.to_string(),
        };
        self.send(self.request(Method::POST, &path)?.json(&body))
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
        Ok(created(response.status()))
    }

    /// Broker to broker: sends events and a heartbeat, returns the peer's state.
    pub async fn sync(
        &self,
        body: &SyncRequest,
        timeout: Duration,
    ) -> Result<SyncResponse, ClientError> {
        let request = self.request(Method::POST, &["peer", "sync"])?;
        self.json(request.json(body).timeout(timeout)).await
    }

    /// Broker to broker: sends a client's request on to this broker as it
    /// came (`path` with its query), and returns the status, content type
    /// and body of the answer.
    pub async fn forward(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Forwarded, ClientError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            reason: format!("method {method}: {e}"),
        })?;
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, url)
            .header(FORWARDED_HEADER, "1")
            .timeout(REQUEST_TIMEOUT);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok(Forwarded {
            status,
            content_type,
            body: body.to_vec(),
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
            .expect("checked in `new`: a base URL")
            .pop_if_empty()
            .extend(segments);
        Ok(self.http.request(method, url).timeout(REQUEST_TIMEOUT))
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| self.protocol(e))
    }

    /// Sends a request and turns transport failures and error statuses into `ClientError`.
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Api {
                status,
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(ClientError::Protocol {
                url: self.base.clone(),
                reason: format!("status {status} with body {text:?}"),
            }),
        }
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

fn created(status: StatusCode) -> Created {
    if status == StatusCode::CREATED {
        Created::New
    } else {
        Created::Existing
    }
}

/// The innermost cause of a transport error, e.g. "Connection refused (os error 111)".
fn describe(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if error.is_timeout() {
        "timed out".to_string()
    } else {
        source.to_string()
    }
}
