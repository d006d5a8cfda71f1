//! The Redis target of `bench latency --redis`: each message is an `XADD`
//! of its payload to a fresh stream, over one connection that pipelines
//! them (so that a slow answer holds back no later send, as rumor's pool
//! of connections does); one consumer, on a second connection, loops
//! `XREAD BLOCK` from the last entry it saw. Pacing, stamps and
//! percentiles are `latency`'s, the same as for rumor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use client::PeerAddr;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadOptions;
use redis::{AsyncConnectionConfig, AsyncTypedCommands};

use crate::latency::{Publish, Receive, PULL_MAX, PULL_WAIT_MS};
use crate::Error;

/// The report's `transport` for Redis: entries read by a blocked `XREAD`.
pub(crate) const TRANSPORT: &str = "redis-xread";
/// The field of each entry that holds the payload.
const FIELD: &str = "payload";
/// How long a command may take to answer. The crate's default, 0.5 s, is
/// shorter than one blocked `XREAD` may wait.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Before the first entry's id: a fresh stream is read from its start.
const START: &str = "0-0";

/// Appends each payload to the stream as [`Publish`].
pub(crate) struct Appender {
    connection: MultiplexedConnection,
    key: Arc<str>,
}

/// Reads the stream just past the last entry it saw, as [`Receive`].
pub(crate) struct Consumer {
    connection: MultiplexedConnection,
    key: String,
    last_id: String,
    options: StreamReadOptions,
}

/// Opens the appending and the consuming connection to the Redis `server`
/// for the stream `key`.
pub(crate) async fn connect(server: &PeerAddr, key: &str) -> Result<(Appender, Consumer), Error> {
    let client = redis::Client::open((server.host.as_str(), server.port))?;
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    let appending = client.get_multiplexed_async_connection_with_config(&config);
    let consuming = client.get_multiplexed_async_connection_with_config(&config);
    let (appending, consuming) = tokio::try_join!(appending, consuming)?;
    let appender = Appender {
        connection: appending,
        key: key.into(),
    };
    let consumer = Consumer {
        connection: consuming,
        key: key.to_string(),
        last_id: START.to_string(),
        options: StreamReadOptions::default()
            .block(PULL_WAIT_MS as usize)
            .count(PULL_MAX as usize),
    };
    Ok((appender, consumer))
}

impl Publish for Appender {
    /// `XADD <key> * payload <payload>`.
    fn publish(&self, payload: String) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let (mut connection, key) = (self.connection.clone(), self.key.clone());
        async move {
            connection.xadd(&*key, "*", &[(FIELD, payload)]).await?;
            Ok(())
        }
    }
}

impl Receive for Consumer {
    /// `XREAD BLOCK <wait> COUNT <max> STREAMS <key> <last id>`.
    async fn arrivals(&mut self) -> Result<Option<Vec<String>>, Error> {
        let (keys, ids) = ([&self.key], [&self.last_id]);
        let reply = self
            .connection
            .xread_options(&keys, &ids, &self.options)
            .await?;
        let entries = reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids);
        let mut payloads = Vec::new();
        for entry in entries {
            payloads.extend(entry.get::<String>(FIELD));
            self.last_id = entry.id;
        }
        Ok(Some(payloads))
    }
}
