//! A lean HTTP/1.1 publisher for the throughput subcommands: one keep-alive
//! connection driven by hyper directly, the request body serialized once.
//! (reqwest costs about as much CPU per request as the broker's handling of
//! it, on the cores the load generator shares with the broker.)

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use client::wire::{PublishRequest, Published, PublishedBatch};

use crate::Error;

/// One connection publishing one body to one topic, again and again.
pub struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    path: String,
    body: Bytes,
    batch: bool,
}

impl Publisher {
    /// Connects to `host:port` to publish `size` copies of `payload` per
    /// request to `topic`, as the publisher of the same name.
    pub async fn connect(
        host: &str,
        port: u16,
        topic: &str,
        payload: &str,
        size: u64,
    ) -> Result<Publisher, Error> {
        let stream = TcpStream::connect((host, port)).await.map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        let (payload, payloads) = match size {
            1 => (Some(payload.to_string()), None),
            _ => (None, Some(vec![payload.to_string(); size as usize])),
        };
        let request = PublishRequest {
            publisher: topic.to_string(),
            payload,
            payloads,
        };
        let body = serde_json::to_vec(&request).map_err(failed)?;
        Ok(Publisher {
            sender,
            host: format!("{host}:{port}"),
            path: format!("/topics/{topic}/messages"),
            body: Bytes::from(body),
            batch: size > 1,
        })
    }

    /// Publishes once; returns the last message acknowledged.
    pub async fn publish(&mut self) -> Result<Option<Published>, Error> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::HOST, self.host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .map_err(failed)?;
        self.sender.ready().await.map_err(failed)?;
        let response = self.sender.send_request(request).await.map_err(failed)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        if status != StatusCode::CREATED {
            return Err(Error::Failed(format!(
                "publish answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        if self.batch {
            let batch: PublishedBatch = serde_json::from_slice(&body).map_err(failed)?;
            Ok(batch.messages.into_iter().last())
        } else {
            Ok(Some(serde_json::from_slice(&body).map_err(failed)?))
        }
    }
}

fn failed(error: impl std::fmt::Display) -> Error {
    Error::Failed(format!("publish connection: {error}"))
}
