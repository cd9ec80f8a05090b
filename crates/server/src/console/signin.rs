//! The sign-in pages: name and password, then the TOTP code (or, the first time, enrolling an
//! authenticator app); and signing out.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::{clear_cookie, csrf_refusal, error_page, render, session_cookie, set_cookie};
use crate::credentials::Secret;
use crate::http::AppState;
use crate::signin::{self, SignInError, Stage};

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    error: Option<String>,
    name: String,
    /// Whether to offer "Sign in with SSO".
    sso: bool,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactor {
    error: Option<String>,
    enrolling: bool,
    secret: String,
    uri: String,
    csrf: String,
}

/// The name and password form.
#[derive(Debug, serde::Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

/// The code form.
#[derive(Debug, serde::Deserialize)]
pub struct Code {
    code: String,
    csrf: String,
}

/// A form that only carries the CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn form(State(state): State<AppState>) -> Response {
    render(&Login {
        error: None,
        name: String::new(),
        sso: state.oidc.is_some(),
    })
}

pub async fn password(State(state): State<AppState>, Form(form): Form<Credentials>) -> Response {
    let secret = Secret::new(form.password);
    match signin::password(&state.store, &form.name, &secret, (state.clock)()).await {
        Ok((cookie, _)) => (
            [set_cookie(cookie.expose())],
            Redirect::to("/login/second-factor"),
        )
            .into_response(),
        Err(SignInError::Failed(e)) => error_page(&e),
        Err(refusal) => {
            let status = refusal_status(&refusal);
            let page = Login {
                error: Some(refusal.to_string()),
                name: form.name,
                sso: state.oidc.is_some(),
            };
            (status, render(&page)).into_response()
        }
    }
}

/// A session between the password and the second factor.
pub struct Pending {
    cookie: String,
    session: signin::Session,
}

impl FromRequestParts<AppState> for Pending {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(cookie) = session_cookie(parts) else {
            return Err(Redirect::to("/login").into_response());
        };
        match signin::current(&state.store, &cookie, (state.clock)()).await {
            Ok(Some(session)) if session.stage != Stage::SignedIn => {
                Ok(Pending { cookie, session })
            }
            Ok(Some(_)) => Err(Redirect::to("/console").into_response()),
            Ok(None) => Err(Redirect::to("/login").into_response()),
            Err(e) => Err(error_page(&e)),
        }
    }
}

pub async fn second_factor_form(pending: Pending) -> Response {
    render(&second_factor_page(&pending.session, None))
}

pub async fn second_factor(
    State(state): State<AppState>,
    pending: Pending,
    Form(form): Form<Code>,
) -> Response {
    if let Some(refused) = csrf_refusal(&pending.session, &form.csrf) {
        return refused;
    }
    match signin::second_factor(&state.store, &pending.cookie, &form.code, (state.clock)()).await {
        Ok((cookie, _)) => {
            ([set_cookie(cookie.expose())], Redirect::to("/console")).into_response()
        }
        Err(SignInError::Failed(e)) => error_page(&e),
        Err(SignInError::Expired) => Redirect::to("/login").into_response(),
        Err(refusal) => {
            let status = refusal_status(&refusal);
            let page = second_factor_page(&pending.session, Some(refusal.to_string()));
            (status, render(&page)).into_response()
        }
    }
}

pub async fn sign_out(
    State(state): State<AppState>,
    signed_in: super::SignedIn,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Some(refused) = csrf_refusal(&signed_in.session, &form.csrf) {
        return refused;
    }
    if let Err(e) = signin::sign_out(&state.store, &signed_in.cookie).await {
        return error_page(&e);
    }
    ([clear_cookie()], Redirect::to("/login")).into_response()
}

fn second_factor_page(session: &signin::Session, error: Option<String>) -> SecondFactor {
    SecondFactor {
        error,
        enrolling: session.stage == Stage::Enrol,
        secret: session.pending_secret.clone().unwrap_or_default(),
        uri: session.enrolment_uri().unwrap_or_default(),
        csrf: session.csrf.clone(),
    }
}

fn refusal_status(refusal: &SignInError) -> StatusCode {
    match refusal {
        SignInError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    }
}
