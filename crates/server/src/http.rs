//! The HTTP interface: health, readiness, metrics and the REST API under `/api/v1`. Handlers
//! only extract, call a service and map the error; [`ApiError`] is the one place where errors
//! become statuses.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::agents::{self, Agent, Liveness};
use crate::distribution::Distribution;
use crate::enrollment;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::policies::{self, Format};
use crate::role::{Principal, Role};
use crate::store::{EnrollmentToken, Group, PolicySummary, PolicyVersion, Store};
use crate::{Clock, audit, auth};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<Store>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// The current time.
    pub clock: Clock,
    /// Policy updates for the agents' streams.
    pub hub: Distribution,
    /// When an agent counts as offline.
    pub liveness: Liveness,
}

/// The whole HTTP interface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/policies",
            get(list_policies).post(create_policy_version),
        )
        .route("/api/v1/policies/{id}/versions", get(policy_versions))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route("/api/v1/groups/{name}/policy", put(assign_policy))
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/{id}", get(get_agent))
        .route("/api/v1/agents/{id}/revoke", post(revoke_agent))
        .route("/api/v1/agents/{id}/group", post(move_agent))
        .route(
            "/api/v1/enrollment-tokens",
            get(list_enrollment_tokens).post(create_enrollment_token),
        )
        .route(
            "/api/v1/enrollment-tokens/{id}/revoke",
            post(revoke_enrollment_token),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A service error on its way to the client: the one mapping from errors to statuses.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Unauthenticated => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::AgentRefused(_) => StatusCode::FORBIDDEN,
            Error::InvalidPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Store(_) | Error::Credential(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match &self.0 {
            Error::InvalidPolicy(diagnostics) => {
                json!({ "error": self.0.to_string(), "diagnostics": diagnostics })
            }
            Error::Store(_) | Error::Credential(_) => {
                // The cause goes to the log, not to the client.
                tracing::error!(cause = %self.0, "request failed");
                json!({ "error": "internal error; the server log has the cause" })
            }
            other => json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(Error::Unauthenticated)?;
        Ok(auth::authenticate(&state.store, token).await?)
    }
}

/// The body of `POST /api/v1/policies`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicyVersion {
    /// The policy's name; a new name creates the policy.
    pub name: String,
    /// `yaml` or `json`.
    pub format: Format,
    /// The document.
    pub source: String,
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people (shown in the audit log).
    pub name: String,
    /// `admin`, `editor`, `analyst`, `viewer`, `auditor` or `decision`.
    pub role: String,
}

/// The body of `POST /api/v1/groups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// The group's name.
    pub name: String,
}

/// The body of `PUT /api/v1/groups/{name}/policy`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyAssignment {
    /// The policy whose newest version the group's agents enforce.
    pub policy_id: i64,
}

/// The body of `POST /api/v1/agents/{id}/group`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    /// The group to move the agent to.
    pub group: String,
}

/// The body of `POST /api/v1/enrollment-tokens`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// The group enrolled agents join (`default` when absent).
    #[serde(default = "default_group")]
    pub group: String,
    /// How many agents it may enroll (1, single use, when absent).
    #[serde(default = "one")]
    pub max_uses: i64,
    /// How long it works, in seconds (at most 365 days).
    pub expires_in_seconds: i64,
}

fn default_group() -> String {
    "default".to_owned()
}

fn one() -> i64 {
    1
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(cause = %e, "not ready: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let versions = state
        .store
        .count_policy_versions()
        .await
        .map_err(Error::from)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(versions),
    )
        .into_response())
}

async fn list_policies(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<PolicySummary>>, ApiError> {
    Ok(Json(policies::list(&state.store, &who).await?))
}

async fn create_policy_version(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewPolicyVersion>, JsonRejection>,
) -> Result<(StatusCode, Json<PolicyVersion>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let version = policies::create_version(
        &state.store,
        &state.hub,
        &who,
        &body.name,
        body.format,
        &body.source,
        (state.clock)(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

async fn policy_versions(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<PolicyVersion>>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("policy {id:?}")))?;
    Ok(Json(policies::versions(&state.store, &who, id).await?))
}

async fn create_token(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let role = body
        .role
        .parse::<Role>()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let token = auth::create_token(&state.store, &who, &body.name, role, (state.clock)()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": body.name, "role": role.as_str(), "token": token.expose() })),
    ))
}

async fn audit_log(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = audit::entries(&state.store, &who).await?;
    let broken = audit::verify(&entries).err().map(|b| b.id);
    Ok(Json(
        json!({ "verified": broken.is_none(), "broken_at": broken, "entries": entries }),
    ))
}

async fn list_groups(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(agents::list_groups(&state.store, &who).await?))
}

async fn create_group(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    agents::create_group(&state.store, &who, &body.name, (state.clock)()).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": body.name }))))
}

async fn assign_policy(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    body: Result<Json<PolicyAssignment>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    agents::assign_policy(
        &state.store,
        &state.hub,
        &who,
        &name,
        body.policy_id,
        (state.clock)(),
    )
    .await?;
    Ok(Json(json!({ "group": name, "policy_id": body.policy_id })))
}

async fn list_agents(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<Agent>>, ApiError> {
    Ok(Json(
        agents::list(&state.store, &who, state.liveness, (state.clock)()).await?,
    ))
}

async fn get_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(
        agents::get(&state.store, &who, &id, state.liveness, (state.clock)()).await?,
    ))
}

async fn revoke_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    agents::revoke(&state.store, &state.hub, &who, &id, (state.clock)()).await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
}

async fn move_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<AgentGroup>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    agents::move_to_group(
        &state.store,
        &state.hub,
        &who,
        &id,
        &body.group,
        (state.clock)(),
    )
    .await?;
    Ok(Json(json!({ "id": id, "group": body.group })))
}

async fn list_enrollment_tokens(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<EnrollmentToken>>, ApiError> {
    Ok(Json(enrollment::list_tokens(&state.store, &who).await?))
}

async fn create_enrollment_token(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewEnrollmentToken>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let created = enrollment::create_token(
        &state.store,
        &who,
        &enrollment::NewToken {
            group: body.group,
            max_uses: body.max_uses,
            lifetime: jiff::SignedDuration::from_secs(body.expires_in_seconds),
        },
        (state.clock)(),
    )
    .await?;
    let t = created.token;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": t.id,
            "token": created.secret.expose(),
            "group": t.group,
            "max_uses": t.max_uses,
            "expires_at": t.expires_at,
        })),
    ))
}

async fn revoke_enrollment_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("enrollment token {id:?}")))?;
    enrollment::revoke_token(&state.store, &who, id, (state.clock)()).await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .count_request(&route, response.status().as_u16());
    response
}
