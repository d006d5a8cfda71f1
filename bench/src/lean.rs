//! A lean HTTP/1.1 publisher for `bench publish` and `bench latency`: one
//! keep-alive connection driven by hyper directly, each request body
//! serialized once. (reqwest costs about as much CPU per request as the
//! broker's handling of it, on the cores the load generator shares with the
//! broker, and opens a connection whenever none is idle.)

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use client::wire::{PublishRequest, Published, PublishedBatch};

use crate::{BrokerArgs, Error};

/// The body of one publish request: `size` messages, serialized once.
pub struct Body {
    json: Bytes,
    size: u64,
}

impl Body {
    /// `size` copies of `payload` published by `publisher`: a single
    /// publish when `size` is 1, else a batch.
    pub fn new(publisher: &str, payload: &str, size: u64) -> Result<Body, Error> {
        let (payload, payloads) = match size {
            1 => (Some(payload.to_string()), None),
            _ => (None, Some(vec![payload.to_string(); size as usize])),
        };
        let request = PublishRequest {
            publisher: publisher.to_string(),
            payload,
            payloads,
            ..PublishRequest::default()
        };
        let json = serde_json::to_vec(&request).map_err(failed)?;
        Ok(Body {
            json: Bytes::from(json),
            size,
        })
    }

    /// How many messages the body publishes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One connection publishing to one topic.
pub struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    path: String,
    /// `Bearer <token>`, with `--token-file` or `RUMOR_TOKEN`.
    authorization: Option<String>,
}

impl Publisher {
    /// Connects to the broker to publish to `topic` (plain HTTP only).
    pub async fn connect(broker: &BrokerArgs, topic: &str) -> Result<Publisher, Error> {
        let (host, port) = (broker.host.as_str(), broker.port);
        let stream = TcpStream::connect((host, port)).await.map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        Ok(Publisher {
            sender,
            host: format!("{host}:{port}"),
            path: format!("/topics/{topic}/messages"),
            authorization: broker
                .token
                .as_ref()
                .map(|token| format!("Bearer {}", token.as_str())),
        })
    }

    /// Publishes `body`; returns the last message acknowledged.
    pub async fn publish(&mut self, body: &Body) -> Result<Option<Published>, Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.host.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(body.json.clone())).map_err(failed)?;
        self.sender.ready().await.map_err(failed)?;
        let response = self.sender.send_request(request).await.map_err(failed)?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        if status != StatusCode::CREATED {
            return Err(Error::Failed(format!(
                "publish answered {status}: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        if body.size > 1 {
            let batch: PublishedBatch = serde_json::from_slice(&answer).map_err(failed)?;
            Ok(batch.messages.into_iter().last())
        } else {
            Ok(Some(serde_json::from_slice(&answer).map_err(failed)?))
        }
    }
}

fn failed(error: impl std::fmt::Display) -> Error {
    Error::Failed(format!("publish connection: {error}"))
}
