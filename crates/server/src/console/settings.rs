//! The console's settings page: the settings stored in the database (event retention, ...),
//! with their defaults and descriptions; admins change them here, one at a time.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::error::Error;
use crate::http::AppState;
use crate::role::Permission;
use crate::signin::Session;
use crate::stored_settings::{self, Setting};

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    frame: Frame,
    settings: Vec<Setting>,
    may_manage: bool,
    error: Option<String>,
}

pub async fn page(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    settings_page(&state, &signed_in.session, None).await
}

async fn settings_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
    match stored_settings::list(&state.store, &session.principal()).await {
        Ok(settings) => render(&Settings {
            frame: Frame::new(session, "settings"),
            settings,
            may_manage: session.role.may(Permission::ManageSettings),
            error,
        }),
        Err(e) => error_page(&e),
    }
}

/// One setting's form. The value is read as JSON (so `30` is the integer 30).
#[derive(Debug, serde::Deserialize)]
pub struct Change {
    csrf: String,
    key: String,
    value: String,
}

pub async fn change(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<Change>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let value = serde_json::from_str(form.value.trim())
        .unwrap_or_else(|_| serde_json::Value::String(form.value.clone()));
    let changes = serde_json::Map::from_iter([(form.key.clone(), value)]);
    let who = session.principal();
    match stored_settings::update(&state.store, &who, &changes, (state.clock)()).await {
        Ok(_) => Redirect::to("/console/settings").into_response(),
        Err(e @ Error::BadRequest(_)) => {
            let page = settings_page(&state, session, Some(e.to_string())).await;
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => error_page(&e),
    }
}
