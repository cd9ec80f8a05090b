//! The console's token pages: API tokens (for scripts and other tools) and enrollment tokens
//! (for agents). A new token's secret is shown once, on the page that answers its creation;
//! only its hash is stored.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::SignedDuration;

use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::error::Error;
use crate::http::AppState;
use crate::role::{Permission, Role};
use crate::signin::Session;
use crate::store::{ApiToken, EnrollmentToken};
use crate::{agents, auth, enrollment};

#[derive(Template)]
#[template(path = "api_tokens.html")]
struct ApiTokens {
    frame: Frame,
    tokens: Vec<ApiToken>,
    roles: [&'static str; 6],
    /// The secret of the token just created.
    created: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "enrollment_tokens.html")]
struct EnrollmentTokens {
    frame: Frame,
    tokens: Vec<EnrollmentToken>,
    groups: Vec<String>,
    may_manage: bool,
    created: Option<String>,
    error: Option<String>,
}

/// The roles an API token may have.
const TOKEN_ROLES: [&str; 6] = [
    "viewer", "analyst", "editor", "auditor", "decision", "admin",
];

pub async fn api_tokens(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    api_tokens_page(&state, &signed_in.session, None, None).await
}

async fn api_tokens_page(
    state: &AppState,
    session: &Session,
    created: Option<String>,
    error: Option<String>,
) -> Response {
    match auth::list_tokens(&state.store, &session.principal()).await {
        Ok(tokens) => render(&ApiTokens {
            frame: Frame::new(session, "api-tokens"),
            tokens,
            roles: TOKEN_ROLES,
            created,
            error,
        }),
        Err(e) => error_page(&e),
    }
}

/// The new-API-token form; `days` empty for a token that does not expire.
#[derive(Debug, serde::Deserialize)]
pub struct NewApiToken {
    csrf: String,
    name: String,
    role: String,
    #[serde(default)]
    days: String,
}

pub async fn create_api_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<NewApiToken>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let created = async {
        let role: Role = form
            .role
            .parse()
            .map_err(|e: crate::role::UnknownRole| Error::BadRequest(e.to_string()))?;
        let lifetime = match form.days.trim() {
            "" => None,
            days => Some(lifetime_in_days(days)?),
        };
        auth::create_token(
            &state.store,
            &session.principal(),
            &form.name,
            role,
            lifetime,
            (state.clock)(),
        )
        .await
    };
    match created.await {
        Ok((_, secret)) => {
            api_tokens_page(&state, session, Some(secret.expose().to_owned()), None).await
        }
        Err(e @ Error::BadRequest(_)) => {
            let page = api_tokens_page(&state, session, None, Some(e.to_string())).await;
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => error_page(&e),
    }
}

/// A revocation form.
#[derive(Debug, serde::Deserialize)]
pub struct Revocation {
    csrf: String,
}

pub async fn revoke_api_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Revocation>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    match auth::revoke_token(&state.store, &session.principal(), id, (state.clock)()).await {
        Ok(()) => Redirect::to("/console/tokens").into_response(),
        Err(e) => error_page(&e),
    }
}

pub async fn enrollment_tokens(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    enrollment_page(&state, &signed_in.session, None, None).await
}

async fn enrollment_page(
    state: &AppState,
    session: &Session,
    created: Option<String>,
    error: Option<String>,
) -> Response {
    let who = session.principal();
    let listed = async {
        let tokens = enrollment::list_tokens(&state.store, &who).await?;
        let groups = agents::list_groups(&state.store, &who).await?;
        Ok::<_, Error>((tokens, groups))
    };
    match listed.await {
        Ok((tokens, groups)) => render(&EnrollmentTokens {
            frame: Frame::new(session, "enrollment"),
            tokens,
            groups: groups.into_iter().map(|g| g.name).collect(),
            may_manage: session.role.may(Permission::ManageAgents),
            created,
            error,
        }),
        Err(e) => error_page(&e),
    }
}

/// The new-enrollment-token form.
#[derive(Debug, serde::Deserialize)]
pub struct NewEnrollmentToken {
    csrf: String,
    group: String,
    max_uses: i64,
    days: String,
}

pub async fn create_enrollment_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<NewEnrollmentToken>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let created = async {
        let new = enrollment::NewToken {
            group: form.group.clone(),
            max_uses: form.max_uses,
            lifetime: lifetime_in_days(form.days.trim())?,
        };
        enrollment::create_token(&state.store, &session.principal(), &new, (state.clock)()).await
    };
    match created.await {
        Ok(created) => {
            let secret = created.secret.expose().to_owned();
            enrollment_page(&state, session, Some(secret), None).await
        }
        Err(e @ Error::BadRequest(_)) => {
            let page = enrollment_page(&state, session, None, Some(e.to_string())).await;
            (StatusCode::BAD_REQUEST, page).into_response()
        }
        Err(e) => error_page(&e),
    }
}

pub async fn revoke_enrollment_token(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Revocation>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let who = session.principal();
    match enrollment::revoke_token(&state.store, &who, id, (state.clock)()).await {
        Ok(()) => Redirect::to("/console/enrollment").into_response(),
        Err(e) => error_page(&e),
    }
}

/// A form's number of days as a duration.
fn lifetime_in_days(days: &str) -> Result<SignedDuration, Error> {
    days.parse::<i64>()
        .ok()
        .filter(|d| (1..=3650).contains(d))
        .map(|d| SignedDuration::from_hours(d.saturating_mul(24)))
        .ok_or_else(|| Error::BadRequest(format!("days {days:?}: a whole number from 1 to 3650")))
}
