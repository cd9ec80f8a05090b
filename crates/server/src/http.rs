//! The HTTP interface: health, readiness, metrics and the REST API under `/api/v1`. Handlers
//! only extract, call a service and map the error; [`ApiError`] is the one place where errors
//! become statuses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;

use crate::error::Error;
use crate::events::{self, EventPage, EventQuery, OutputFormat};
use crate::metrics::Metrics;
use crate::policies::{self, Format};
use crate::role::{Principal, Role};
use crate::simulate::{self, SimulationReport};
use crate::store::{PolicySummary, PolicyVersion, Store};
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
        .route("/api/v1/policies/{id}/diff", get(policy_diff))
        .route("/api/v1/policies/validate", post(validate_policy))
        .route("/api/v1/policies/simulate", post(simulate_policy))
        .route("/api/v1/events", get(list_events))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/audit", get(audit_log))
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

/// The body of `POST /api/v1/policies/validate`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// Names the document in the findings (`NAME.yaml`); default `candidate`.
    #[serde(default)]
    pub name: Option<String>,
    /// `yaml` or `json`.
    pub format: Format,
    /// The document.
    pub source: String,
}

/// The body of `POST /api/v1/policies/simulate`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateBody {
    /// `yaml` or `json`.
    pub format: Format,
    /// The candidate document.
    pub source: String,
    /// Start of the events replayed (RFC 3339, inclusive); default 24 hours before `to`.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the events replayed (RFC 3339, exclusive); default now.
    #[serde(default)]
    pub to: Option<String>,
}

/// The query of `GET /api/v1/policies/{id}/diff`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version; default the one before `to`.
    pub from: Option<i64>,
    /// The newer version; default the newest.
    pub to: Option<i64>,
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
    let mut text = state.metrics.render(versions);
    state.store.ingest_counters().render(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
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

async fn policy_diff(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<policies::PolicyDiff>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("policy {id:?}")))?;
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(
        policies::diff(&state.store, &who, id, q.from, q.to).await?,
    ))
}

async fn validate_policy(
    who: Principal,
    body: Result<Json<ValidateBody>, JsonRejection>,
) -> Result<Json<policies::Validation>, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(policies::validate(
        &who,
        body.name.as_deref(),
        body.format,
        &body.source,
    )?))
}

async fn simulate_policy(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<SimulateBody>, JsonRejection>,
) -> Result<Json<SimulationReport>, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(
        simulate::simulate(
            &state.store,
            &who,
            body.format,
            &body.source,
            body.from.as_deref(),
            body.to.as_deref(),
            (state.clock)(),
        )
        .await?,
    ))
}

async fn list_events(
    State(state): State<AppState>,
    who: Principal,
    pairs: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|e| Error::BadRequest(e.body_text()))?;
    let query = EventQuery::from_pairs(&pairs)?;
    let content_type = match query.format {
        OutputFormat::Json => {
            let page: EventPage = events::list(&state.store, &who, &query).await?;
            return Ok(Json(page).into_response());
        }
        OutputFormat::Jsonl => "application/x-ndjson",
        OutputFormat::Csv => "text/csv; charset=utf-8",
    };
    let stream = events::export(state.store.clone(), &who, query)?;
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
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
