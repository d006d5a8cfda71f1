//! `/peer/*`: the brokers' own protocol (see `cluster`).

use actix_web::{web, HttpResponse};
use client::peer::{ElectionMessage, SyncRequest, SyncResponse};

use super::body::Body;
use crate::cluster::received_election;
use crate::error::ApiError;
use crate::store::queries;
use crate::AppState;

/// Applies the events a peer sent and answers with what this broker holds.
pub async fn sync(
    app: web::Data<AppState>,
    body: Body<SyncRequest>,
) -> Result<HttpResponse, ApiError> {
    let SyncRequest {
        from,
        term,
        leader,
        events,
    } = body.into_inner();
    check_peer(&app, &from)?;
    app.cluster.heard_from(&from, term, leader);
    let have = if events.is_empty() {
        app.store.read(|conn| Ok(queries::have(conn)?)).await?
    } else {
        app.store.write(move |tx| tx.receive(events)).await?
    };
    let leadership = app.cluster.leadership();
    Ok(HttpResponse::Ok().json(SyncResponse {
        from: app.cluster.me().to_string(),
        term: leadership.term,
        leader: leadership.leader,
        have,
    }))
}

/// Hands a bully election message to the election.
pub async fn election(
    app: web::Data<AppState>,
    body: Body<ElectionMessage>,
) -> Result<HttpResponse, ApiError> {
    let message = body.into_inner();
    check_peer(&app, &message.from)?;
    app.cluster.feed(received_election(message));
    Ok(HttpResponse::NoContent().finish())
}

fn check_peer(app: &AppState, id: &str) -> Result<(), ApiError> {
    if app.cluster.knows(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{id:?} is not a peer of this broker"
        )))
    }
}
