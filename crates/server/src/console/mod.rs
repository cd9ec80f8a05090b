//! The web console: server-rendered pages (askama templates under `templates/`) over the same
//! services as the REST API, our own small stylesheet and script under `static/`.
//!
//! Rules every route here follows:
//! - a page needs a signed-in session ([`SignedIn`]); without one it sends the browser to the
//!   sign-in page, and the role is checked by the service the page calls;
//! - every form that changes something carries the session's CSRF token, checked before the
//!   service is called ([`csrf_refusal`]);
//! - every response carries the security headers ([`security_headers`]): a
//!   Content-Security-Policy without inline script, no framing, no sniffing, no caching;
//! - the session cookie is `HttpOnly` and `SameSite=Lax`, and `Secure` under HTTPS
//!   ([`crate::https::secure_cookies`]).

mod alerts;
mod endpoints;
mod live;
mod pages;
mod policies;
mod settings;
mod signin;
mod sso;
mod tokens;
mod users;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::credentials::constant_time_eq;
use crate::error::Error;
use crate::http::{AppState, status_of};
use crate::role::Permission;
use crate::signin::{Session, Stage};

/// The cookie that carries the session.
const COOKIE: &str = "palisade_session";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/login", get(signin::form).post(signin::password))
        .route(
            "/login/second-factor",
            get(signin::second_factor_form).post(signin::second_factor),
        )
        .route("/login/sso", get(sso::start))
        .route("/login/sso/callback", get(sso::callback))
        .route("/logout", post(signin::sign_out))
        .route("/console", get(pages::dashboard))
        .route("/console/dashboard/stream", get(live::dashboard_stream))
        .route("/console/endpoints", get(endpoints::list))
        .route("/console/endpoints/{id}", get(endpoints::detail))
        .route("/console/endpoints/{id}/action", post(endpoints::act))
        .route("/console/events", get(pages::events))
        .route("/console/events.csv", get(pages::events_csv))
        .route("/console/policies", get(policies::list))
        .route("/console/policies/new", get(policies::new))
        .route("/console/policies/import", post(policies::import))
        .route("/console/policies/editor", post(policies::submit))
        .route("/console/policies/{id}", get(policies::detail))
        .route("/console/policies/{id}/edit", get(policies::edit))
        .route("/console/policies/{id}/diff", get(policies::diff))
        .route("/console/policies/{id}/export", get(policies::export))
        .route("/console/policies/{id}/assign", post(policies::assign))
        .route("/console/alerts", get(alerts::list))
        .route("/console/alerts/{id}", get(alerts::detail))
        .route("/console/alerts/{id}/action", post(alerts::act))
        .route("/console/audit", get(pages::audit))
        .route("/console/users", get(users::list).post(users::create))
        .route("/console/users/{id}", get(users::detail))
        .route("/console/users/{id}/action", post(users::act))
        .route(
            "/console/tokens",
            get(tokens::api_tokens).post(tokens::create_api_token),
        )
        .route(
            "/console/tokens/{id}/revoke",
            post(tokens::revoke_api_token),
        )
        .route(
            "/console/enrollment",
            get(tokens::enrollment_tokens).post(tokens::create_enrollment_token),
        )
        .route(
            "/console/enrollment/{id}/revoke",
            post(tokens::revoke_enrollment_token),
        )
        .route(
            "/console/settings",
            get(settings::page).post(settings::change),
        )
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .layer(middleware::from_fn(security_headers))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/console.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/console.js"),
    )
}

/// Adds the console's security headers to every response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The session cookie's value in the request, if any.
fn session_cookie(parts: &Parts) -> Option<String> {
    cookie(&parts.headers, COOKIE)
}

/// The value of the cookie `name` in the request, if any.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session value.
fn set_cookie(value: &str) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax"),
    )
}

/// `Set-Cookie` that removes the session cookie.
fn clear_cookie() -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    )
}

/// What every page's frame needs: who is signed in, what the navigation may offer, the CSRF
/// token for the sign-out form.
pub struct Frame {
    user: String,
    role: String,
    csrf: String,
    may_read_audit: bool,
    may_read_users: bool,
    may_manage_tokens: bool,
    may_read_agents: bool,
    may_read_settings: bool,
    /// The navigation entry to highlight.
    current: &'static str,
}

impl Frame {
    fn new(session: &Session, current: &'static str) -> Frame {
        Frame {
            user: session.user.clone(),
            role: session.role.as_str().to_owned(),
            csrf: session.csrf.clone(),
            may_read_audit: session.role.may(Permission::ReadAudit),
            may_read_users: session.role.may(Permission::ReadUsers),
            may_manage_tokens: session.role.may(Permission::ManageTokens),
            may_read_agents: session.role.may(Permission::ReadAgents),
            may_read_settings: session.role.may(Permission::ReadSettings),
            current,
        }
    }
}

/// A request from a signed-in session; anything else is sent to the sign-in page.
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// The session cookie's value.
    cookie: String,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(cookie) = session_cookie(parts) else {
            return Err(Redirect::to("/login").into_response());
        };
        match crate::signin::current(&state.store, &cookie, (state.clock)()).await {
            Ok(Some(session)) if session.stage == Stage::SignedIn => {
                Ok(SignedIn { session, cookie })
            }
            Ok(_) => Err(Redirect::to("/login").into_response()),
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// The refusal of a state-changing request whose form token is not the session's; `None` when
/// it is.
fn csrf_refusal(session: &Session, token: &str) -> Option<Response> {
    if constant_time_eq(&session.csrf, token) {
        None
    } else {
        Some(
            (
                StatusCode::FORBIDDEN,
                Html(
                    "<!doctype html><title>Refused</title><p>The form was stale or forged (CSRF \
                  token mismatch). Go back, reload the page and try again.</p>",
                ),
            )
                .into_response(),
        )
    }
}

/// A page for a service error, with the status the API would answer.
fn error_page(error: &Error) -> Response {
    if matches!(error, Error::Unauthenticated) {
        return Redirect::to("/login").into_response();
    }
    let status = status_of(error);
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(cause = %error, "console request failed");
        "internal error; the server log has the cause".to_owned()
    } else {
        error.to_string()
    };
    let page = pages::Problem {
        status: status.as_u16(),
        message,
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a template that fails to render is an internal error.
fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed").into_response()
        }
    }
}
