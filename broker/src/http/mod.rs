//! The HTTP API of `API.md` §3: routes, request parsing rules, and the
//! handlers (a few lines each; the work happens in `store` and `delivery`).

mod body;
mod conn;
mod forward;
mod guard;
mod openapi;
mod peer;
mod publish;
mod registrations;
mod server;
mod status;
mod stream;
mod subscriptions;
mod topics;
mod ui;

use actix_web::dev::HttpServiceFactory;
use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Route};
use client::http::Created;
use client::wire::{TopicsQuery, MAX_TOPICS_PAGE};
use serde::Serialize;

use crate::error::ApiError;

/// Registers every endpoint and the query and path error rules (bodies:
/// see `body`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .service(resource("/health", "GET", [web::get().to(status::health)]))
        .service(resource(
            "/cluster",
            "GET",
            [web::get().to(status::cluster)],
        ))
        .service(resource(
            "/cluster/mode",
            "PUT",
            [web::put().to(status::set_mode)],
        ))
        .service(resource(
            "/cluster/members",
            "POST",
            [web::post().to(status::add_member)],
        ))
        .service(resource(
            "/cluster/members/{id}",
            "DELETE",
            [web::delete().to(status::remove_member)],
        ))
        .service(resource(
            "/metrics",
            "GET",
            [web::get().to(status::metrics)],
        ))
        .service(resource(
            "/openapi.json",
            "GET",
            [web::get().to(openapi::openapi_json)],
        ))
        .service(resource("/ui", "GET", [web::get().to(ui::index)]))
        .service(resource(
            "/publishers",
            "POST",
            [web::post().to(registrations::publisher)],
        ))
        .service(resource(
            "/subscribers",
            "POST",
            [web::post().to(registrations::subscriber)],
        ))
        .service(resource(
            "/subscriptions",
            "GET",
            [web::get().to(registrations::subscriptions)],
        ))
        .service(resource(
            "/topics",
            "GET, POST",
            [web::get().to(topics::list), web::post().to(topics::create)],
        ))
        .service(resource(
            "/topics/{name}",
            "GET, DELETE",
            [web::get().to(topics::get), web::delete().to(topics::delete)],
        ))
        .service(resource(
            "/topics/{name}/stream",
            "GET",
            [web::get().to(stream::topic)],
        ))
        .service(resource(
            "/topics/{name}/limits",
            "PUT",
            [web::put().to(topics::set_limits)],
        ))
        .service(resource(
            "/topics/{name}/messages",
            "POST",
            [web::post().to(publish::publish)],
        ))
        .service(resource(
            "/subscribers/{sid}/subscriptions",
            "POST",
            [web::post().to(subscriptions::subscribe)],
        ))
        .service(resource(
            "/subscribers/{sid}/subscriptions/{topic}",
            "DELETE",
            [web::delete().to(subscriptions::unsubscribe)],
        ))
        .service(resource(
            "/subscribers/{sid}/subscriptions/{topic}/seek",
            "POST",
            [web::post().to(subscriptions::seek)],
        ))
        .service(resource(
            "/subscribers/{sid}/stream",
            "GET",
            [web::get().to(stream::subscriber)],
        ))
        .service(resource(
            "/subscribers/{sid}/messages",
            "GET",
            [web::get().to(subscriptions::pull)],
        ))
        .service(resource(
            "/subscribers/{sid}/ack",
            "POST",
            [web::post().to(subscriptions::ack)],
        ))
        .service(resource(
            "/subscribers/{sid}/nack",
            "POST",
            [web::post().to(subscriptions::nack)],
        ))
        .service(resource(
            "/subscribers/{sid}/extend",
            "POST",
            [web::post().to(subscriptions::extend)],
        ))
        .service(resource("/peer/sync", "POST", [web::post().to(peer::sync)]))
        .service(resource(
            "/peer/election",
            "POST",
            [web::post().to(peer::election)],
        ));
}

/// A resource whose other methods get 405 with the JSON error body and
/// `Allow: <allow>`.
fn resource<const N: usize>(
    path: &str,
    allow: &'static str,
    routes: [Route; N],
) -> impl HttpServiceFactory {
    routes
        .into_iter()
        .fold(web::resource(path), |resource, route| resource.route(route))
        .default_service(web::to(move |request: HttpRequest| async move {
            let refused = ApiError::MethodNotAllowed(describe(&request));
            let mut answer = actix_web::ResponseError::error_response(&refused);
            answer.headers_mut().insert(
                actix_web::http::header::ALLOW,
                actix_web::http::header::HeaderValue::from_static(allow),
            );
            answer
        }))
}

pub use body::BodyBudget;
pub use forward::to_leader;
pub use guard::authenticate;
pub use server::server;

/// For paths that match no endpoint.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(describe(&request)))
}

fn describe(request: &HttpRequest) -> String {
    format!("{} {}", request.method(), request.path())
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query: {error}")).into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {error}")).into()
}

/// A page of a listing: at most `limit` (default and cap
/// `MAX_TOPICS_PAGE`) names after `after`.
fn page(query: TopicsQuery) -> Result<(u32, String), ApiError> {
    let TopicsQuery { limit, after } = query;
    let limit = match limit.unwrap_or(MAX_TOPICS_PAGE) {
        0 => return Err(ApiError::BadRequest("limit must be at least 1".to_string())),
        limit => limit.min(MAX_TOPICS_PAGE),
    };
    Ok((limit, after.unwrap_or_default()))
}

/// 201 for something new, 200 for something that already existed.
fn created_response(created: Created, body: impl Serialize) -> HttpResponse {
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Existing => StatusCode::OK,
    };
    HttpResponse::build(status).json(body)
}
