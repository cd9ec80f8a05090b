//! The console's alert pages: the list by status and severity, and one alert with its
//! explanation, its evidence, a link to the related connections, and the actions on it
//! (acknowledge, resolve, assign).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::{SignedDuration, Timestamp};

use super::pages::encode_pairs;
use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::alerts::{self, Filter};
use crate::http::AppState;
use crate::role::Permission;
use crate::store::alerts::{Alert, Change};

/// The margin around an alert's first and last sighting in which its connections are shown.
const RELATED_MARGIN: SignedDuration = SignedDuration::from_mins(5);

#[derive(Template)]
#[template(path = "alerts.html")]
struct List {
    frame: Frame,
    alerts: Vec<Alert>,
    status: String,
    severity: String,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct Detail {
    frame: Frame,
    alert: Alert,
    /// The explanation's fields with their values, when it is an object.
    explanation: Vec<(String, String)>,
    /// The explanation as JSON, when it is not an object.
    explanation_json: Option<String>,
    related: String,
    may_work: bool,
}

/// The list's filters, as the API takes them (empty fields are no filter).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let filter = Filter {
        status: some(&query.status),
        severity: some(&query.severity),
        cursor: query.cursor.clone(),
        ..Filter::default()
    };
    match alerts::list(&state.store, &signed_in.session.principal(), &filter).await {
        Ok(page) => {
            let next = page.next_cursor.map(|cursor| {
                let pairs = [
                    ("status".to_owned(), query.status.clone()),
                    ("severity".to_owned(), query.severity.clone()),
                    ("cursor".to_owned(), cursor),
                ];
                format!("/console/alerts?{}", encode_pairs(&pairs))
            });
            render(&List {
                frame: Frame::new(&signed_in.session, "alerts"),
                alerts: page.alerts,
                status: query.status,
                severity: query.severity,
                next,
            })
        }
        Err(e) => error_page(&e),
    }
}

pub async fn detail(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let session = &signed_in.session;
    match alerts::get(&state.store, &session.principal(), id).await {
        Ok(alert) => {
            let (explanation, explanation_json) = match &alert.explanation {
                serde_json::Value::Object(fields) => (
                    fields
                        .iter()
                        .map(|(name, value)| {
                            let text = match value {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (name.clone(), text)
                        })
                        .collect(),
                    None,
                ),
                other => (
                    Vec::new(),
                    Some(serde_json::to_string_pretty(other).unwrap_or_default()),
                ),
            };
            render(&Detail {
                frame: Frame::new(session, "alerts"),
                related: related_connections(&alert),
                explanation,
                explanation_json,
                may_work: session.role.may(Permission::WorkAlerts),
                alert,
            })
        }
        Err(e) => error_page(&e),
    }
}

/// The connection log filtered to the alert's agent and application, from a little before
/// its first sighting to a little after its last.
fn related_connections(alert: &Alert) -> String {
    let mut pairs = Vec::new();
    if let Some(agent) = &alert.agent_id {
        pairs.push(("agent".to_owned(), agent.clone()));
    }
    if let Some(app) = &alert.app {
        pairs.push(("app".to_owned(), app.clone()));
    }
    let around = |time: &str, shift: SignedDuration| {
        time.parse::<Timestamp>()
            .ok()
            .and_then(|t| t.checked_add(shift).ok())
    };
    if let Some(from) = around(&alert.first_seen, -RELATED_MARGIN) {
        pairs.push(("from".to_owned(), from.to_string()));
    }
    if let Some(to) = around(&alert.last_seen, RELATED_MARGIN) {
        pairs.push(("to".to_owned(), to.to_string()));
    }
    format!("/console/events?{}", encode_pairs(&pairs))
}

/// An action's form; `assignee` only for `assign`.
#[derive(Debug, serde::Deserialize)]
pub struct Act {
    csrf: String,
    action: Action,
    assignee: Option<String>,
}

/// What can be done to an alert from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Someone is looking at it.
    Acknowledge,
    /// Done with it.
    Resolve,
    /// Give it to someone.
    Assign,
}

pub async fn act(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Act>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let assignee = form.assignee.unwrap_or_default();
    let change = match form.action {
        Action::Acknowledge => Change::Acknowledge,
        Action::Resolve => Change::Resolve,
        Action::Assign => Change::Assign(assignee.trim()),
    };
    let who = session.principal();
    match alerts::change(&state.store, &who, id, change, (state.clock)()).await {
        Ok(_) => Redirect::to(&format!("/console/alerts/{id}")).into_response(),
        Err(e) => error_page(&e),
    }
}
