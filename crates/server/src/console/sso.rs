//! Single sign-on pages: `/login/sso` sends the browser to the OpenID provider with a new
//! pending sign-in, kept in a short-lived cookie of this browser (`HttpOnly`, `SameSite=Lax`,
//! only sent to `/login/sso`); `/login/sso/callback` takes it back, checks that the `state`
//! is this browser's, lets [`crate::oidc`] finish and starts a signed-in session as the
//! password and TOTP do. Every refusal is a page that says why, and no session.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};

use super::{cookie, error_page, pages, render, set_cookie};
use crate::credentials::{Secret, constant_time_eq};
use crate::http::AppState;
use crate::oidc::{OidcError, Pending};
use crate::signin::{self, SignInError};

/// The cookie that carries the pending sign-in.
const PENDING: &str = "palisade_sso";
/// How long a sign-in at the provider may take, in seconds.
const PENDING_SECONDS: u32 = 600;

/// What the provider sends back (any of it may be missing or hostile).
#[derive(Debug, serde::Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn start(State(state): State<AppState>) -> Response {
    let Some(oidc) = state.oidc.clone() else {
        return failure(&OidcError::Off);
    };
    match oidc.begin().await {
        Ok((url, pending)) => (
            [(
                header::SET_COOKIE,
                format!(
                    "{PENDING}={}; Path=/login/sso; HttpOnly; SameSite=Lax; Max-Age={PENDING_SECONDS}",
                    pending.to_cookie()
                ),
            )],
            Redirect::to(&url),
        )
            .into_response(),
        Err(e) => failure(&e),
    }
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    // The pending sign-in is used once, whatever happens.
    let forget = (
        header::SET_COOKIE,
        format!("{PENDING}=; Path=/login/sso; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    match finish(&state, &headers, answer).await {
        Ok(session) => (
            AppendHeaders([forget, set_cookie(session.expose())]),
            Redirect::to("/console"),
        )
            .into_response(),
        Err(e) => (AppendHeaders([forget]), failure(&e)).into_response(),
    }
}

/// The cookie value of the new session.
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    answer: Callback,
) -> Result<Secret, OidcError> {
    let oidc = state.oidc.as_ref().ok_or(OidcError::Off)?;
    let pending = cookie(headers, PENDING)
        .and_then(|value| Pending::from_cookie(&value))
        .ok_or(OidcError::State)?;
    if !answer
        .state
        .as_deref()
        .is_some_and(|s| constant_time_eq(s, &pending.state))
    {
        return Err(OidcError::State);
    }
    if let Some(error) = answer.error {
        return Err(OidcError::Refused(match answer.error_description {
            Some(description) => format!("{error}: {description}"),
            None => error,
        }));
    }
    let code = answer
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OidcError::Provider("it sent neither a code nor an error".to_owned()))?;
    let now = (state.clock)();
    let who = oidc.finish(&pending, &code, now).await?;
    let actor = format!("sso:{}", oidc.issuer());
    match signin::single_sign_on(&state.store, &who.name, &who.subject, who.role, &actor, now).await
    {
        Ok(Some((session, _))) => {
            tracing::info!(user = %who.name, role = %who.role, "signed in through single sign-on");
            Ok(session)
        }
        Ok(None) => Err(OidcError::Taken(who.name)),
        Err(SignInError::Failed(e)) => Err(OidcError::Failed(e)),
        Err(other) => Err(OidcError::Provider(other.to_string())),
    }
}

fn failure(error: &OidcError) -> Response {
    if let OidcError::Failed(e) = error {
        return error_page(e);
    }
    let status = error.status();
    tracing::info!(%status, reason = %error, "single sign-on refused");
    let page = pages::Problem {
        status: status.as_u16(),
        message: error.to_string(),
    };
    (status, render(&page)).into_response()
}
