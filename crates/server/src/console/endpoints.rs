//! The console's endpoint pages: the fleet, and one agent with the applications it ran and
//! where they connected, its recent connections and its alerts, and the actions on it
//! (isolate, release, revoke, move to another group).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::SignedDuration;

use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::agents::{self, Agent, Application, Status};
use crate::alerts;
use crate::error::Error;
use crate::events::{self, EventQuery};
use crate::http::AppState;
use crate::role::Permission;
use crate::signin::Session;
use crate::store::StoredEvent;
use crate::store::alerts::Alert;

/// How far back the endpoint page looks for applications.
const APPLICATIONS_SINCE: SignedDuration = SignedDuration::from_hours(24);

/// Recent connections on the endpoint page.
const RECENT: &str = "20";

#[derive(Template)]
#[template(path = "endpoints.html")]
struct List {
    frame: Frame,
    agents: Vec<Agent>,
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct Detail {
    frame: Frame,
    agent: Agent,
    status: &'static str,
    applications: Vec<Application>,
    events: Vec<StoredEvent>,
    alerts: Vec<Alert>,
    /// Groups it could move to (empty when the role may not manage agents).
    groups: Vec<String>,
    may_manage: bool,
}

pub async fn list(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let who = signed_in.session.principal();
    match agents::list(&state.store, &who, state.liveness, (state.clock)()).await {
        Ok(agents) => render(&List {
            frame: Frame::new(&signed_in.session, "endpoints"),
            agents,
        }),
        Err(e) => error_page(&e),
    }
}

pub async fn detail(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    match detail_page(&state, &signed_in.session, &id).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&e),
    }
}

async fn detail_page(state: &AppState, session: &Session, id: &str) -> Result<Detail, Error> {
    let who = session.principal();
    let now = (state.clock)();
    let agent = agents::get(&state.store, &who, id, state.liveness, now).await?;
    let since = now
        .checked_sub(APPLICATIONS_SINCE)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let applications = agents::applications(&state.store, &who, id, since).await?;
    let query = EventQuery::from_pairs(&[
        ("agent".to_owned(), id.to_owned()),
        ("limit".to_owned(), RECENT.to_owned()),
    ])?;
    let events = events::list(&state.store, &who, &query).await?.events;
    let filter = alerts::Filter {
        agent: Some(id.to_owned()),
        ..alerts::Filter::default()
    };
    let alerts = alerts::list(&state.store, &who, &filter).await?.alerts;
    let may_manage = session.role.may(Permission::ManageAgents);
    let groups = if may_manage {
        agents::list_groups(&state.store, &who)
            .await?
            .into_iter()
            .map(|g| g.name)
            .filter(|name| *name != agent.group)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Detail {
        frame: Frame::new(session, "endpoints"),
        status: match agent.status {
            Status::Online => "online",
            Status::Offline => "offline",
            Status::Revoked => "revoked",
        },
        agent,
        applications,
        events,
        alerts,
        groups,
        may_manage,
    })
}

/// An action's form; `group` only for `move`.
#[derive(Debug, serde::Deserialize)]
pub struct Act {
    csrf: String,
    action: Action,
    group: Option<String>,
}

/// What can be done to an agent from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Enforce the isolation policy instead of its group's.
    Isolate,
    /// Enforce its group's policy again.
    Release,
    /// Refuse its certificate from now on.
    Revoke,
    /// Move it to another group.
    Move,
}

pub async fn act(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<Act>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let (store, hub, who, now) = (
        &state.store,
        &state.hub,
        session.principal(),
        (state.clock)(),
    );
    let done = match form.action {
        Action::Isolate => agents::isolate(store, hub, &who, &id, now).await,
        Action::Release => agents::release(store, hub, &who, &id, now).await,
        Action::Revoke => agents::revoke(store, hub, &who, &id, now).await,
        Action::Move => match form.group.as_deref().filter(|g| !g.is_empty()) {
            Some(group) => agents::move_to_group(store, hub, &who, &id, group, now).await,
            None => Err(Error::BadRequest("choose the group to move to".to_owned())),
        },
    };
    match done {
        Ok(()) => Redirect::to(&format!(
            "/console/endpoints/{}",
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ))
        .into_response(),
        Err(e) => error_page(&e),
    }
}
