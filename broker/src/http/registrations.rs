//! `POST /publishers`, `POST /subscribers`.

use actix_web::{web, HttpResponse};
use client::http::Created;
use client::wire::Registration;

use super::body::Body;
use super::created_response;
use crate::error::ApiError;
use crate::names::check_name;
use crate::store::{StoreError, WriteTx};
use crate::trust::Caller;
use crate::AppState;

type Register = fn(&mut WriteTx<'_>, &str) -> Result<Created, StoreError>;

pub async fn publisher(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<Registration>,
) -> Result<HttpResponse, ApiError> {
    register(&app, &caller, body.into_inner(), "publisher", |tx, id| {
        tx.register_publisher(id)
    })
    .await
}

pub async fn subscriber(
    app: web::Data<AppState>,
    caller: Caller,
    body: Body<Registration>,
) -> Result<HttpResponse, ApiError> {
    register(&app, &caller, body.into_inner(), "subscriber", |tx, id| {
        tx.register_subscriber(id)
    })
    .await
}

async fn register(
    app: &AppState,
    caller: &Caller,
    body: Registration,
    what: &str,
    register: Register,
) -> Result<HttpResponse, ApiError> {
    check_name(what, &body.id)?;
    caller.may_act_as(&body.id)?;
    let id = body.id.clone();
    let created = app.record(move |tx| register(tx, &id)).await?;
    Ok(created_response(created, body))
}
