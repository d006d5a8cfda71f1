//! Leader mode: a follower sends every client write on to the leader and
//! answers with the leader's answer, so that the leader sequences them all.
//! A change of the cluster (mode, members) goes to the leader in either mode.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use client::http::{ForwardedRequest, FORWARDED_HEADER};

use super::body::read_body;
use super::guard::routed_path;
use crate::error::ApiError;
use crate::trust::Caller;
use crate::AppState;

/// Middleware: forwards client writes to the leader when this broker
/// follows in leader mode; lets everything else through.
pub async fn to_leader(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let app = request.app_data::<web::Data<AppState>>().cloned();
    match app {
        // Boxed: every request's future would otherwise hold room for a
        // forward's state (with 10,000 connections open, bench fanout: a
        // broker's RSS 166 -> 128 MB idle, 263 -> 224 MB with every poll
        // waiting).
        Some(app) if must_forward(&app, &request) => Ok(Box::pin(forward(&app, request)).await),
        _ => Ok(next.call(request).await?.map_into_boxed_body()),
    }
}

/// Client writes of a follower in leader mode, and in any mode a change of
/// the cluster (mode, members: the leader coordinates it); never a request
/// forwarded already.
fn must_forward(app: &AppState, request: &ServiceRequest) -> bool {
    // Two brokers that briefly name each other leader must not bounce a
    // request back and forth: a forwarded request is handled where it lands.
    if request.headers().contains_key(FORWARDED_HEADER) {
        return false;
    }
    let coordinated = routed_path(request).starts_with("/cluster/");
    let leader_only = coordinated && is_client_write(request) && !app.cluster.is_leader();
    (app.follows_leader() && is_client_write(request)) || leader_only
}

/// POST, PUT and DELETE of the public API (not `/peer/*`).
fn is_client_write(request: &ServiceRequest) -> bool {
    let writes = [Method::POST, Method::PUT, Method::DELETE];
    writes.contains(request.method()) && !routed_path(request).starts_with("/peer/")
}

/// Sends the request to the leader; answers with its status and body, or
/// `no_quorum` when no leader can be reached or it falls silent meanwhile.
async fn forward(app: &AppState, mut request: ServiceRequest) -> ServiceResponse<BoxBody> {
    let (head, payload) = request.parts_mut();
    let body = match read_body(head, payload).await {
        Ok(body) => body,
        Err(error) => return refuse(request, error),
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_string(), |p| p.as_str().to_string());
    let header = |name| request.headers().get(name).map(|value| value.as_bytes());
    let content_type =
        header(header::CONTENT_TYPE).and_then(|value| std::str::from_utf8(value).ok());
    let for_cluster = matches!(request.extensions().get::<Caller>(), Some(Caller::Cluster));
    let sent = send_to_leader(
        app,
        ForwardedRequest {
            for_cluster,
            method: request.method().as_str(),
            path: &path,
            content_type,
            authorization: header(header::AUTHORIZATION),
            body: body.bytes.to_vec(),
            timeout: None,
        },
    )
    .await;
    match sent {
        Ok(response) => request.into_response(response),
        Err(error) => refuse(request, error),
    }
}

/// Sends a request on to the leader and answers with its answer, or
/// `no_quorum` when no leader can be reached or it falls silent meanwhile.
pub async fn send_to_leader(
    app: &AppState,
    request: ForwardedRequest<'_>,
) -> Result<HttpResponse, ApiError> {
    let (_, answer) = app
        .cluster
        .forward_to_leader(request)
        .await
        .ok_or(ApiError::NoQuorum)?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = answer.content_type {
        response.content_type(content_type);
    }
    Ok(response.body(answer.body))
}

fn refuse(request: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    request.error_response(error).map_into_boxed_body()
}
