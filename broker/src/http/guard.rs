//! Middleware: who is asking (API.md §5.1, §5.2). Peer requests
//! (`/peer/*`, forwarded writes) must be signed with the cluster key (or,
//! without one, come from loopback) and their answers are signed back; with
//! `--auth-file` every other request but `GET /health` needs a known bearer
//! token (the dashboard's page comes with its `401`, so that it can ask
//! for one). The `Caller` found is left in the request for the handlers'
//! permission checks (see [`Caller`]'s extractor).

use std::future::{ready, Ready};

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use client::http::{FORWARDED_FOR_CLUSTER, FORWARDED_HEADER};
use client::peer_auth::{
    body_digest, ClusterKey, SignedRequest, BODY_HEADER, NONCE_HEADER, SIGNATURE_HEADER,
    TIME_HEADER,
};

use super::body::read_body;
use crate::error::ApiError;
use crate::trust::{Caller, Refusal};
use crate::AppState;

/// Checks the request's credentials, then signs the answer to a request
/// whose signature holds (also when it is refused after that, so that the
/// broker that sent it reads the refusal).
pub async fn authenticate(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(app) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let (signed_by_peer, checked) = match check_peer(&app, &mut request).await {
        Ok(nonce) => (nonce, Ok(())),
        Err(Refused { nonce, error }) => (nonce, Err(error)),
    };
    let checked = checked.and_then(|()| identify_client(&app, &request, signed_by_peer.is_some()));
    let response = match checked {
        Ok(()) => next.call(request).await?.map_into_boxed_body(),
        Err(ApiError::Unauthenticated(_)) if routed_path(&request) == "/ui" => {
            request.into_response(super::ui::refused())
        }
        Err(error) => refuse(request, error),
    };
    match (signed_by_peer, app.trust.cluster_key()) {
        // Boxed, as is reading a signed body: their state would otherwise
        // take room in every connection's, a waiting poll's for its whole
        // wait.
        (Some(nonce), Some(key)) => Box::pin(sign_answer(key, &nonce, response)).await,
        _ => Ok(response),
    }
}

/// The path as the router matches it (percent-encoded characters decoded),
/// so that no spelling of a path escapes the rules below.
pub fn routed_path(request: &ServiceRequest) -> &str {
    request.match_info().as_str()
}

/// A request only brokers make: the peer protocol and forwarded writes.
fn is_peer_request(request: &ServiceRequest) -> bool {
    routed_path(request).starts_with("/peer/") || request.headers().contains_key(FORWARDED_HEADER)
}

/// A refused peer request, with its nonce if its signature held.
struct Refused {
    nonce: Option<String>,
    error: ApiError,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused { nonce: None, error }
    }
}

/// With a cluster key, verifies a peer request or any signed request and
/// returns its nonce; without one, takes peer requests from loopback only.
async fn check_peer(
    app: &AppState,
    request: &mut ServiceRequest,
) -> Result<Option<String>, Refused> {
    let signed = request.headers().contains_key(SIGNATURE_HEADER);
    match app.trust.cluster_key() {
        Some(key) if signed || is_peer_request(request) => {
            let nonce = verify_signature(app, key, request)?;
            Box::pin(take_body(request, &nonce))
                .await
                .map_err(|error| Refused {
                    nonce: Some(nonce.clone()),
                    error,
                })?;
            Ok(Some(nonce))
        }
        None if is_peer_request(request) && !from_loopback(request) => {
            Err(ApiError::Unauthenticated(
                "this broker takes peer requests from loopback only (it has no --cluster-key-file)"
                    .to_string(),
            )
            .into())
        }
        _ => Ok(None),
    }
}

fn from_loopback(request: &ServiceRequest) -> bool {
    request
        .peer_addr()
        .is_some_and(|address| address.ip().to_canonical().is_loopback())
}

/// Checks a peer request's signature (over the body's digest, before a
/// byte of the body is read), its timestamp and its nonce; returns the
/// nonce.
fn verify_signature(
    app: &AppState,
    key: &ClusterKey,
    request: &ServiceRequest,
) -> Result<String, Refused> {
    let unsigned =
        || ApiError::Unauthenticated("the request is not signed with the cluster key".to_string());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let (Some(time), Some(nonce), Some(signature), Some(body_sha256)) = (
        header(TIME_HEADER),
        header(NONCE_HEADER),
        header(SIGNATURE_HEADER),
        header(BODY_HEADER),
    ) else {
        return Err(unsigned().into());
    };
    let time_ms = time.parse::<u64>().map_err(|_| unsigned())?;
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |p| p.as_str());
    let signed = SignedRequest {
        method: request.method().as_str(),
        path,
        target: &app.config.id,
        time_ms,
        nonce,
        forwarded: request
            .headers()
            .get(FORWARDED_HEADER)
            .map_or(&[][..], HeaderValue::as_bytes),
        authorization: request
            .headers()
            .get(header::AUTHORIZATION)
            .map_or(&[][..], HeaderValue::as_bytes),
        body_sha256,
    };
    if !key.verifies_request(&signed, signature) {
        return Err(unsigned().into());
    }
    let nonce = nonce.to_string();
    // Only after the signature holds: a forger cannot fill the guard.
    app.trust.admit(&nonce, time_ms).map_err(|refusal| {
        let why = match refusal {
            Refusal::Stale => "its timestamp is more than 30 s from this broker's clock",
            Refusal::Replayed => "it was received before (a replay)",
            Refusal::BadNonce => "its nonce is malformed",
        };
        tracing::warn!("refused a signed peer request to {}: {why}", request.path());
        Refused {
            nonce: Some(nonce.clone()),
            error: ApiError::Unauthenticated(format!("peer request refused: {why}")),
        }
    })?;
    Ok(nonce)
}

/// Reads the body of a request whose signature holds, checks it against
/// the digest it was signed with, and puts it back for the handler.
async fn take_body(request: &mut ServiceRequest, nonce: &str) -> Result<(), ApiError> {
    let (head, payload) = request.parts_mut();
    let body = read_body(head, payload).await?;
    let signed_digest = request
        .headers()
        .get(BODY_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if body_digest(&body.bytes).as_bytes() != signed_digest {
        tracing::warn!("refused peer request {nonce}: its body is not the one signed");
        return Err(ApiError::Unauthenticated(
            "the request body is not the one signed".to_string(),
        ));
    }
    request.set_payload(Payload::from(body.bytes));
    Ok(())
}

/// With `--auth-file`, finds the caller (another broker, or the principal
/// of the bearer token) and leaves it in the request; `GET /health` and the
/// peer protocol need no token.
fn identify_client(
    app: &AppState,
    request: &ServiceRequest,
    verified_peer: bool,
) -> Result<(), ApiError> {
    let path = routed_path(request);
    if !app.trust.authenticates_clients() || path == "/health" || path.starts_with("/peer/") {
        return Ok(());
    }
    // A broker's own request, made here or forwarded by one: only what a
    // signature covers counts.
    let for_cluster = request
        .headers()
        .get(FORWARDED_HEADER)
        .is_none_or(|value| value == FORWARDED_FOR_CLUSTER);
    let caller = if verified_peer && for_cluster {
        Caller::Cluster
    } else {
        bearer(request)
            .and_then(|token| app.trust.caller(token))
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "a valid token is required: Authorization: Bearer <token>".to_string(),
                )
            })?
    };
    request.extensions_mut().insert(caller);
    Ok(())
}

fn bearer(request: &ServiceRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Signs the answer (status and whole body) to the peer request that
/// carried `nonce`.
async fn sign_answer(
    key: &ClusterKey,
    nonce: &str,
    response: ServiceResponse<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (request, response) = response.into_parts();
    let status = response.status();
    let (mut head, content) = response.into_parts();
    let bytes = body::to_bytes(content)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read an answer to sign: {e}")))?;
    let signature = key.sign_answer(nonce, status.as_u16(), &bytes);
    head.headers_mut().insert(
        header::HeaderName::from_static(SIGNATURE_HEADER),
        HeaderValue::from_str(&signature).expect("hex is a header value"),
    );
    Ok(ServiceResponse::new(
        request,
        head.set_body(BoxBody::new(bytes)),
    ))
}

fn refuse(request: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    request.error_response(error).map_into_boxed_body()
}

/// The caller `authenticate` found: `Caller::Open` without `--auth-file`.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = request.extensions().get::<Caller>().cloned();
        let authenticating = request
            .app_data::<web::Data<AppState>>()
            .is_none_or(|app| app.trust.authenticates_clients());
        ready(match found {
            Some(caller) => Ok(caller),
            None if !authenticating => Ok(Caller::Open),
            // The middleware found no caller for a path that needs one.
            None => Err(ApiError::Unauthenticated(
                "a valid token is required".to_string(),
            )),
        })
    }
}
