//! The HTTP server: actix-web's application served by actix-http on every
//! connection of the listener, through TLS with `--tls-cert`. It is put
//! together here rather than by `actix_web::HttpServer` so that each
//! connection can be wrapped in `conn::JsonErrors` (actix-http's own error
//! answers get the JSON error body); the settings are `HttpServer`'s
//! defaults.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Request};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::{AppConfig, ServiceFactory, ServiceResponse};
use actix_web::{web, App};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::conn::JsonErrors;
use crate::AppState;

/// How long a request head may take to arrive (actix-web's default): `408`.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long a closing connection may take to go.
const DISCONNECT_DEADLINE: Duration = Duration::from_secs(1);

/// A server for `app` on `listener`, not yet started; in-flight requests
/// get `grace` to finish once it is stopped.
pub fn server(
    app: web::Data<AppState>,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    grace: Duration,
) -> std::io::Result<Server> {
    let builder = Server::build()
        .disable_signals()
        .shutdown_timeout(grace.as_secs());
    let shutdown = builder.graceful_shutdown_signal();
    let local = listener.local_addr()?;
    let builder = match tls {
        None => builder.listen("rumor", listener, move || {
            fn_service(|io: TcpStream| {
                let peer = io.peer_addr().ok();
                no_delay(&io);
                std::future::ready(Ok((JsonErrors::new(io), peer)))
            })
            .and_then(http(app.clone(), shutdown.clone(), local))
        })?,
        Some(tls) => builder.listen("rumor-tls", listener, move || {
            fn_service(|io: TcpStream| {
                no_delay(&io);
                std::future::ready(Ok::<_, ()>(io))
            })
            .and_then(Acceptor::new(tls.clone()).map_err(|error| {
                tracing::debug!("TLS handshake failed: {error:?}");
            }))
            .map_init_err(|_| ())
            .map(|io: TlsStream<TcpStream>| {
                let peer = io.get_ref().0.peer_addr().ok();
                (JsonErrors::new(io), peer)
            })
            .and_then(
                http(app.clone(), shutdown.clone(), local)
                    .map_err(|error| tracing::debug!("connection failed: {error}")),
            )
        })?,
    };
    Ok(builder.run())
}

/// Sends each write at once: a stream's events are small writes on a
/// connection kept open, which Nagle's algorithm would hold back until the
/// client's delayed acknowledgement (40 ms) of the previous one.
fn no_delay(io: &TcpStream) {
    if let Err(error) = io.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {error}");
    }
}

/// HTTP/1.1 on a connection of type `IO` (with its peer's address).
fn http<IO: AsyncRead + AsyncWrite + Unpin + 'static>(
    app: web::Data<AppState>,
    shutdown: GracefulShutdownSignal,
    local: SocketAddr,
) -> impl ServiceFactory<
    (IO, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = DispatchError,
    InitError = (),
> {
    HttpService::build()
        .keep_alive(KeepAlive::default())
        .client_request_timeout(HEAD_DEADLINE)
        .client_disconnect_timeout(DISCONNECT_DEADLINE)
        .h1_allow_half_closed(true)
        .local_addr(local)
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .h1(application(app))
}

/// One worker's application, as actix-http takes it.
fn application(
    app: web::Data<AppState>,
) -> impl ServiceFactory<
    Request,
    Config = (),
    Response = ServiceResponse,
    Error = actix_web::HttpResponse,
    InitError = (),
> {
    let counted = app.clone();
    // The last wrap is the outermost: requests are counted before they are
    // authenticated or forwarded to the leader, so every answer is.
    let routes = App::new()
        .app_data(app)
        .wrap(actix_web::middleware::from_fn(super::to_leader))
        .wrap(actix_web::middleware::from_fn(super::authenticate))
        .wrap_fn(move |request, service| {
            let app = counted.clone();
            app.metrics.count_request();
            let started = Instant::now();
            // A combinator, not an async block: the block held the inner
            // future twice (captured, then awaited) in every connection.
            actix_web::dev::Service::call(service, request).map(move |answered| {
                let response = answered?;
                // The route's pattern, not its path: a bounded label set.
                let route = response.request().match_pattern();
                let status = response.status().as_u16();
                let route = route.as_deref().unwrap_or("unmatched");
                app.metrics
                    .observe_request(route, status, started.elapsed());
                Ok(response)
            })
        })
        .configure(super::configure)
        .default_service(web::to(super::not_found));
    map_config(
        routes
            .into_factory()
            .map_err(|error: actix_web::Error| error.error_response()),
        |_| AppConfig::default(),
    )
}

#[cfg(test)]
mod tests {
    use actix_service::Service;

    use super::*;

    /// The size of the future of a request to the service that `make`
    /// builds, without building it.
    fn request_future_size<Make, Factory>(_make: Make) -> usize
    where
        Make: Fn(web::Data<AppState>) -> Factory,
        Factory: ServiceFactory<Request>,
    {
        std::mem::size_of::<<Factory::Service as Service<Request>>::Future>()
    }

    #[test]
    fn a_connection_keeps_no_room_for_a_peer_check() {
        // Each connection holds a request's future in its own state, a
        // waiting poll for the whole wait: with room for reading a signed
        // body and signing the answer it took 1.9 KB (a debug build), and
        // 10,000 waiting polls held 20-35 MB more RSS; with the counting
        // middleware's inner future held twice, 560 bytes and 10 MB more.
        let size = request_future_size(application);
        assert!(size < 512, "a request's future takes {size} bytes");
    }
}
