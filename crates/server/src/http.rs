//! The HTTP interface: health, readiness, metrics and the REST API under `/api/v1`. Handlers
//! only extract, call a service and map the error; [`ApiError`] is the one place where errors
//! become statuses. Every REST route is registered together with its OpenAPI description
//! (`utoipa_axum::routes!`), so the document at `/api/v1/openapi.json` lists exactly the routes
//! that are served.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::{self, Agent, Liveness};
use crate::credentials::Secret;
use crate::distribution::Distribution;
use crate::enrollment;
use crate::error::Error;
use crate::events::{self, EventPage, EventQuery, OutputFormat};
use crate::metrics::Metrics;
use crate::oidc::Oidc;
use crate::policies::{self, Format};
use crate::role::{Principal, Role};
use crate::signin::UserAction;
use crate::simulate::{self, SimulationReport};
use crate::store::DetectionModel;
use crate::store::alerts::{Alert, Change};
use crate::store::{ApiToken, EnrollmentToken, Group, PolicySummary, PolicyVersion, Store, User};
use crate::stored_settings::{self, Setting};
use crate::{Clock, alerts, audit, auth, signin};

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
    /// Single sign-on to the console, when configured.
    pub oidc: Option<Arc<Oidc>>,
}

/// The REST API's description; the paths are added by [`router`] as the routes are registered.
#[derive(OpenApi)]
#[openapi(
    info(title = "Palisade", description = "The REST API of the Palisade central server."),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Declares the bearer-token scheme every REST route uses.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole HTTP interface.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_policies, create_policy_version))
        .routes(routes!(policy_versions))
        .routes(routes!(policy_diff))
        .routes(routes!(validate_policy))
        .routes(routes!(simulate_policy))
        .routes(routes!(list_events))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(list_users, create_user))
        .routes(routes!(remove_user))
        .routes(routes!(set_user_role))
        .routes(routes!(set_user_password))
        .routes(routes!(reset_user_second_factor))
        .routes(routes!(unlock_user))
        .routes(routes!(revoke_token))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(audit_log))
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(acknowledge_alert))
        .routes(routes!(resolve_alert))
        .routes(routes!(assign_alert))
        .routes(routes!(list_models))
        .routes(routes!(train_model))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(assign_policy))
        .routes(routes!(list_agents))
        .routes(routes!(get_agent))
        .routes(routes!(revoke_agent))
        .routes(routes!(isolate_agent))
        .routes(routes!(release_agent))
        .routes(routes!(move_agent))
        .routes(routes!(list_enrollment_tokens, create_enrollment_token))
        .routes(routes!(revoke_enrollment_token))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || std::future::ready(Json(openapi.clone()))),
        )
        .merge(api)
        .merge(crate::console::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// What every refused or failed request answers.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// For an invalid policy: one line per problem, `FILE:LINE:COLUMN: error: FIELD: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<String>>,
}

/// The HTTP status a service error answers with (the API's and the console's).
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Unauthenticated => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::AgentRefused(_) => StatusCode::FORBIDDEN,
        Error::InvalidPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Busy | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Store(_) | Error::Credential(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
        let status = status_of(&self.0);
        let body = match &self.0 {
            Error::InvalidPolicy(diagnostics) => ErrorBody {
                error: self.0.to_string(),
                diagnostics: Some(diagnostics.clone()),
            },
            Error::Store(_) | Error::Credential(_) => {
                // The cause goes to the log, not to the client.
                tracing::error!(cause = %self.0, "request failed");
                ErrorBody {
                    error: "internal error; the server log has the cause".to_owned(),
                    diagnostics: None,
                }
            }
            other => ErrorBody {
                error: other.to_string(),
                diagnostics: None,
            },
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
        Ok(auth::authenticate(&state.store, token, (state.clock)()).await?)
    }
}

/// The body of `POST /api/v1/policies`.
#[derive(Debug, serde::Deserialize, ToSchema)]
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
#[derive(Debug, serde::Deserialize, ToSchema)]
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
#[derive(Debug, serde::Deserialize, ToSchema)]
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
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version; default the one before `to`.
    pub from: Option<i64>,
    /// The newer version; default the newest.
    pub to: Option<i64>,
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for people (shown in the audit log).
    pub name: String,
    /// `admin`, `editor`, `analyst`, `viewer`, `auditor` or `decision`.
    pub role: String,
    /// How long it works, in seconds (at most 3650 days); absent: until it is revoked.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
}

/// A group's assignment after `PUT /api/v1/groups/{name}/policy`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct GroupPolicy {
    /// The group.
    pub group: String,
    /// The policy its agents now enforce.
    pub policy_id: i64,
}

/// An agent's group after `POST /api/v1/agents/{id}/group`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AgentMoved {
    /// The agent.
    pub id: String,
    /// Its group now.
    pub group: String,
}

/// The answer to revoking an agent.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AgentRevoked {
    /// The agent.
    pub id: String,
    /// Always true.
    pub revoked: bool,
}

/// The answer to revoking an enrollment token or an API token.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TokenRevoked {
    /// The token.
    pub id: i64,
    /// Always true.
    pub revoked: bool,
}

/// An enrollment token just created: the only time its secret is shown.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct CreatedEnrollmentToken {
    /// Identifier in the API.
    pub id: i64,
    /// The secret an agent presents to enroll.
    pub token: String,
    /// The group enrolled agents join.
    pub group: String,
    /// How many agents it may enroll.
    pub max_uses: i64,
    /// When it stops working, RFC 3339 UTC.
    pub expires_at: String,
}

/// The body of `POST /api/v1/groups`.
#[derive(Debug, serde::Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// The group's name.
    pub name: String,
}

/// The body of `PUT /api/v1/groups/{name}/policy`.
#[derive(Debug, serde::Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyAssignment {
    /// The policy whose newest version the group's agents enforce.
    pub policy_id: i64,
}

/// The body of `POST /api/v1/agents/{id}/group`.
#[derive(Debug, serde::Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    /// The group to move the agent to.
    pub group: String,
}

/// The body of `POST /api/v1/enrollment-tokens`.
#[derive(Debug, serde::Deserialize, ToSchema)]
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

/// A token just created: the only time its value is shown.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct CreatedToken {
    /// Identifier in the API (to list or revoke it).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The secret to send as `Authorization: Bearer TOKEN`.
    pub token: String,
    /// When it stops working, RFC 3339 UTC; none: until it is revoked.
    pub expires_at: Option<String>,
}

/// The audit log and whether its hash chain holds.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AuditLog {
    /// Whether every entry matches the hash chain.
    pub verified: bool,
    /// The first entry that does not, if any.
    pub broken_at: Option<i64>,
    /// The entries the filter selects (every entry without one), oldest first; the chain is
    /// verified over the whole log either way.
    pub entries: Vec<audit::Entry>,
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

/// Every policy with its newest version.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies",
    responses((status = 200, body = Vec<PolicySummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_policies(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<PolicySummary>>, ApiError> {
    Ok(Json(policies::list(&state.store, &who).await?))
}

/// Validate a policy document and store it as the policy's next version.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", request_body = NewPolicyVersion,
    responses((status = 201, body = PolicyVersion), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, description = "the policy is invalid", body = ErrorBody)))]
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

/// Every version of a policy, oldest first.
#[utoipa::path(get, path = "/api/v1/policies/{id}/versions", tag = "policies",
    params(("id" = i64, Path, description = "the policy's identifier")),
    responses((status = 200, body = Vec<PolicyVersion>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
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

/// A unified line diff of two versions of a policy.
#[utoipa::path(get, path = "/api/v1/policies/{id}/diff", tag = "policies",
    params(("id" = i64, Path, description = "the policy's identifier"), DiffQuery),
    responses((status = 200, body = policies::PolicyDiff), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn policy_diff(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<policies::PolicyDiff>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("policy {id:?}")))?;
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(
        policies::diff(&state.store, &who, id, q.from, q.to).await?,
    ))
}

/// Validate a policy document with the engine; nothing is stored.
#[utoipa::path(post, path = "/api/v1/policies/validate", tag = "policies", request_body = ValidateBody,
    responses((status = 200, description = "the findings; `valid` says whether the document would be accepted",
        body = policies::Validation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
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

/// Replay a candidate policy over the stored events of a time range; nothing is stored.
#[utoipa::path(post, path = "/api/v1/policies/simulate", tag = "policies", request_body = SimulateBody,
    responses((status = 200, body = SimulationReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, description = "the candidate is invalid", body = ErrorBody)))]
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

/// Connection events, newest first: a page of JSON, or every matching event as JSON lines or
/// CSV. A filter value starting with `!` negates the filter; filters may be repeated.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(
        ("agent" = Option<String>, Query, description = "the agent id"),
        ("app" = Option<String>, Query, description = "with a `/` the application path, else the process name"),
        ("user" = Option<String>, Query, description = "the user name"),
        ("domain" = Option<String>, Query, description = "the domain, or `*.example.com` for every name under it"),
        ("ip" = Option<String>, Query, description = "an address or CIDR block; the source or the destination"),
        ("port" = Option<u16>, Query, description = "the destination port"),
        ("protocol" = Option<String>, Query, description = "tcp, udp or icmp"),
        ("action" = Option<String>, Query, description = "allow, block, alert or log"),
        ("rule" = Option<String>, Query, description = "the deciding rule's id"),
        ("from" = Option<String>, Query, description = "event time at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "event time before (RFC 3339)"),
        ("cursor" = Option<String>, Query, description = "a previous page's `next_cursor`"),
        ("limit" = Option<i64>, Query, description = "JSON: 1 to 1000 per page, default 100; exports: most events written, default all"),
        ("format" = Option<String>, Query, description = "json (default), jsonl or csv"),
    ),
    responses((status = 200, description = "`format=json`: a page (shown); `jsonl`: application/x-ndjson; `csv`: text/csv",
        body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    who: Principal,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
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

/// The body of `POST /api/v1/users`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Sign-in name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    pub name: String,
    /// `admin`, `editor`, `analyst`, `viewer` or `auditor`.
    pub role: String,
    /// The initial password, at least 12 characters. The user enrols a second factor (TOTP)
    /// at the first sign-in.
    pub password: String,
}

/// Every user, by name (never a secret).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(signin::list_users(&state.store, &who).await?))
}

/// Create a user who signs in to the console.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let role = body
        .role
        .parse::<Role>()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let password = Secret::new(body.password);
    let user = signin::create_user(
        &state.store,
        &who,
        &body.name,
        role,
        &password,
        (state.clock)(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// The body of `POST /api/v1/users/{id}/role`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// `admin`, `editor`, `analyst`, `viewer` or `auditor`.
    pub role: String,
}

/// The body of `POST /api/v1/users/{id}/password`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password, at least 12 characters.
    pub password: String,
}

/// Remove a user; their sessions end at once. The last admin cannot be removed.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "the user's identifier")),
    responses((status = 204, description = "removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the last admin", body = ErrorBody)))]
async fn remove_user(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    edit_user(&state, &who, &id, UserAction::Remove).await
}

/// Give a user another role; it applies from their next request. The last admin keeps the role.
#[utoipa::path(post, path = "/api/v1/users/{id}/role", tag = "users", request_body = NewRole,
    params(("id" = i64, Path, description = "the user's identifier")),
    responses((status = 204, description = "changed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the last admin", body = ErrorBody)))]
async fn set_user_role(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<NewRole>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let role = body
        .role
        .parse::<Role>()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    edit_user(&state, &who, &id, UserAction::Role(role)).await
}

/// Set a user's password; it clears their lockout and ends their sessions.
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users", request_body = NewPassword,
    params(("id" = i64, Path, description = "the user's identifier")),
    responses((status = 204, description = "changed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_user_password(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let password = Secret::new(body.password);
    edit_user(&state, &who, &id, UserAction::Password(password)).await
}

/// Forget a user's authenticator: they enrol a new one at their next sign-in. Their sessions end.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-second-factor", tag = "users",
    params(("id" = i64, Path, description = "the user's identifier")),
    responses((status = 204, description = "reset"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn reset_user_second_factor(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    edit_user(&state, &who, &id, UserAction::ResetSecondFactor).await
}

/// Clear a user's failed sign-ins and lockout.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "users",
    params(("id" = i64, Path, description = "the user's identifier")),
    responses((status = 204, description = "unlocked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn unlock_user(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    edit_user(&state, &who, &id, UserAction::Unlock).await
}

async fn edit_user(
    state: &AppState,
    who: &Principal,
    id: &str,
    action: UserAction,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("user {id:?}")))?;
    signin::edit_user(&state.store, who, id, action, (state.clock)()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every API token, oldest first (never a secret).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<ApiToken>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(auth::list_tokens(&state.store, &who).await?))
}

/// Create an API token; its value is in this reply only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    let role = body
        .role
        .parse::<Role>()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let lifetime = body.expires_in_seconds.map(jiff::SignedDuration::from_secs);
    let (created, secret) = auth::create_token(
        &state.store,
        &who,
        &body.name,
        role,
        lifetime,
        (state.clock)(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: created.id,
            name: created.name,
            role: created.role,
            token: secret.expose().to_owned(),
            expires_at: created.expires_at,
        }),
    ))
}

/// Revoke an API token: it is refused from the next request on, on every node.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "tokens", params(("id" = i64, Path, description = "the token's identifier")),
    responses((status = 200, body = TokenRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the last admin token that works", body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("API token {id:?}")))?;
    auth::revoke_token(&state.store, &who, id, (state.clock)()).await?;
    Ok(Json(TokenRevoked { id, revoked: true }))
}

/// Every setting stored in the database, with its value in force and its default.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = Vec<Setting>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<Setting>>, ApiError> {
    Ok(Json(stored_settings::list(&state.store, &who).await?))
}

/// Change settings: a JSON object of key to new value, e.g. `{"events.retention_days": 7}`.
/// All are checked before any is stored.
#[utoipa::path(put, path = "/api/v1/settings", tag = "settings",
    request_body(content = Object, description = "key to new value, e.g. `{\"events.retention_days\": 7}`"),
    responses((status = 200, body = Vec<Setting>), (status = 400, description = "an unknown key or a value the key does not take (named)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_settings(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> Result<Json<Vec<Setting>>, ApiError> {
    let Json(changes) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(
        stored_settings::update(&state.store, &who, &changes, (state.clock)()).await?,
    ))
}

/// The audit log, and whether its hash chain verifies.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(audit::Filter),
    responses((status = 200, body = AuditLog), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn audit_log(
    State(state): State<AppState>,
    who: Principal,
    filter: Result<Query<audit::Filter>, QueryRejection>,
) -> Result<Json<AuditLog>, ApiError> {
    let Query(filter) = filter.map_err(|e| Error::BadRequest(e.body_text()))?;
    let entries = audit::entries(&state.store, &who).await?;
    let broken_at = audit::verify(&entries).err().map(|b| b.id);
    let entries = filter.select(&entries)?.into_iter().cloned().collect();
    Ok(Json(AuditLog {
        verified: broken_at.is_none(),
        broken_at,
        entries,
    }))
}

/// Alerts newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(alerts::Filter),
    responses((status = 200, body = alerts::Page), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_alerts(
    State(state): State<AppState>,
    who: Principal,
    filter: Result<Query<alerts::Filter>, QueryRejection>,
) -> Result<Json<alerts::Page>, ApiError> {
    let Query(filter) = filter.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(alerts::list(&state.store, &who, &filter).await?))
}

/// One alert with its explanation and evidence.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "the alert's identifier")),
    responses((status = 200, body = Alert), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_alert(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Alert>, ApiError> {
    let id = alert_id(&id)?;
    Ok(Json(alerts::get(&state.store, &who, id).await?))
}

/// Acknowledge an alert: someone is on it.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = i64, Path, description = "the alert's identifier")),
    responses((status = 200, body = Alert), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the alert is resolved", body = ErrorBody)))]
async fn acknowledge_alert(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Alert>, ApiError> {
    change_alert(&state, &who, &id, Change::Acknowledge).await
}

/// Resolve an alert; the same behaviour raised later opens a new one.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = i64, Path, description = "the alert's identifier")),
    responses((status = 200, body = Alert), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the alert is resolved", body = ErrorBody)))]
async fn resolve_alert(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Alert>, ApiError> {
    change_alert(&state, &who, &id, Change::Resolve).await
}

/// The behaviour models the trainer stored.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct Models {
    /// Newest first, promoted or not; the newest promoted one is the one detection uses.
    models: Vec<DetectionModel>,
}

/// The behaviour models trained so far (newest first, at most 50), with their evaluations.
#[utoipa::path(get, path = "/api/v1/detection/models", tag = "alerts",
    responses((status = 200, body = Models), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_models(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Models>, ApiError> {
    Ok(Json(Models {
        models: crate::training::list(&state.store, &who).await?,
    }))
}

/// Train the behaviour model now on the stored events; it is promoted only when it evaluates
/// at least as well as the current one.
#[utoipa::path(post, path = "/api/v1/detection/models/train", tag = "alerts",
    responses((status = 200, body = DetectionModel), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "too little history to train on", body = ErrorBody)))]
async fn train_model(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<DetectionModel>, ApiError> {
    Ok(Json(
        crate::training::train_now(&state.store, &who, (state.clock)()).await?,
    ))
}

/// The body of `POST /api/v1/alerts/{id}/assign`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Who works on the alert.
    pub assignee: String,
}

/// Assign an alert to someone.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/assign", tag = "alerts", request_body = Assignment,
    params(("id" = i64, Path, description = "the alert's identifier")),
    responses((status = 200, body = Alert), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the alert is resolved", body = ErrorBody)))]
async fn assign_alert(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<Alert>, ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    change_alert(&state, &who, &id, Change::Assign(&body.assignee)).await
}

async fn change_alert(
    state: &AppState,
    who: &Principal,
    id: &str,
    change: Change<'_>,
) -> Result<Json<Alert>, ApiError> {
    let id = alert_id(id)?;
    Ok(Json(
        alerts::change(&state.store, who, id, change, (state.clock)()).await?,
    ))
}

/// Every group with its assigned policy.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, body = Vec<Group>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_groups(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(agents::list_groups(&state.store, &who).await?))
}

/// Create a group.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, body = NewGroup), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "the group exists", body = ErrorBody)))]
async fn create_group(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<NewGroup>), ApiError> {
    let Json(body) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    agents::create_group(&state.store, &who, &body.name, (state.clock)()).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Assign a policy to a group; its agents receive the policy's newest version at once.
#[utoipa::path(put, path = "/api/v1/groups/{name}/policy", tag = "groups", request_body = PolicyAssignment,
    params(("name" = String, Path, description = "the group")),
    responses((status = 200, body = GroupPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn assign_policy(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    body: Result<Json<PolicyAssignment>, JsonRejection>,
) -> Result<Json<GroupPolicy>, ApiError> {
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
    Ok(Json(GroupPolicy {
        group: name,
        policy_id: body.policy_id,
    }))
}

/// Every agent with its status (online, offline, revoked) at the time of the request.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", responses((status = 200, body = Vec<Agent>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_agents(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<Agent>>, ApiError> {
    Ok(Json(
        agents::list(&state.store, &who, state.liveness, (state.clock)()).await?,
    ))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "the agent id")),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    Ok(Json(
        agents::get(&state.store, &who, &id, state.liveness, (state.clock)()).await?,
    ))
}

/// Revoke an agent: its certificate is refused from now on and its open streams end.
#[utoipa::path(post, path = "/api/v1/agents/{id}/revoke", tag = "agents", params(("id" = String, Path, description = "the agent id")),
    responses((status = 200, body = AgentRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<AgentRevoked>, ApiError> {
    agents::revoke(&state.store, &state.hub, &who, &id, (state.clock)()).await?;
    Ok(Json(AgentRevoked { id, revoked: true }))
}

/// Isolate an agent: it enforces the server's isolation policy (everything blocked but its
/// gateway) instead of its group's, within a second on whichever node it is connected to, and
/// again after every reconnect, until it is released. Isolating an isolated agent changes
/// nothing (200).
#[utoipa::path(post, path = "/api/v1/agents/{id}/isolate", tag = "agents", params(("id" = String, Path, description = "the agent id")),
    responses((status = 200, description = "the agent, isolated", body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn isolate_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    agents::isolate(&state.store, &state.hub, &who, &id, (state.clock)()).await?;
    Ok(Json(
        agents::get(&state.store, &who, &id, state.liveness, (state.clock)()).await?,
    ))
}

/// Release an isolated agent: it receives its group's current policy again. Releasing an agent
/// that is not isolated changes nothing (200).
#[utoipa::path(post, path = "/api/v1/agents/{id}/release", tag = "agents", params(("id" = String, Path, description = "the agent id")),
    responses((status = 200, description = "the agent, released", body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn release_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    agents::release(&state.store, &state.hub, &who, &id, (state.clock)()).await?;
    Ok(Json(
        agents::get(&state.store, &who, &id, state.liveness, (state.clock)()).await?,
    ))
}

/// Move an agent to another group; it receives that group's policy at once.
#[utoipa::path(post, path = "/api/v1/agents/{id}/group", tag = "agents", request_body = AgentGroup,
    params(("id" = String, Path, description = "the agent id")),
    responses((status = 200, body = AgentMoved), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn move_agent(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<AgentGroup>, JsonRejection>,
) -> Result<Json<AgentMoved>, ApiError> {
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
    Ok(Json(AgentMoved {
        id,
        group: body.group,
    }))
}

/// Every enrollment token (never their secrets).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "enrollment", responses((status = 200, body = Vec<EnrollmentToken>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_enrollment_tokens(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<EnrollmentToken>>, ApiError> {
    Ok(Json(enrollment::list_tokens(&state.store, &who).await?))
}

/// Create an enrollment token; its secret is in this reply only.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "enrollment", request_body = NewEnrollmentToken,
    responses((status = 201, body = CreatedEnrollmentToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_enrollment_token(
    State(state): State<AppState>,
    who: Principal,
    body: Result<Json<NewEnrollmentToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedEnrollmentToken>), ApiError> {
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
        Json(CreatedEnrollmentToken {
            id: t.id,
            token: created.secret.expose().to_owned(),
            group: t.group,
            max_uses: t.max_uses,
            expires_at: t.expires_at,
        }),
    ))
}

/// Revoke an enrollment token: no agent enrolls with it any more.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens/{id}/revoke", tag = "enrollment", params(("id" = i64, Path, description = "the token's identifier")),
    responses((status = 200, body = TokenRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_enrollment_token(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::NotFound(format!("enrollment token {id:?}")))?;
    enrollment::revoke_token(&state.store, &who, id, (state.clock)()).await?;
    Ok(Json(TokenRevoked { id, revoked: true }))
}

fn alert_id(id: &str) -> Result<i64, Error> {
    id.parse::<i64>()
        .map_err(|_| Error::NotFound(format!("alert {id:?}")))
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
