//! The console's user pages: every user, a new user, and one user's page where an admin
//! changes the role, sets a password, resets the second factor, unlocks or removes the user.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::credentials::Secret;
use crate::error::Error;
use crate::http::{AppState, status_of};
use crate::role::{Permission, Role};
use crate::signin::{self, Session, UserAction};
use crate::store::User;

/// The roles a person may have, in the order the forms offer them.
const ROLES: [&str; 5] = ["viewer", "analyst", "editor", "auditor", "admin"];

#[derive(Template)]
#[template(path = "users.html")]
struct List {
    frame: Frame,
    users: Vec<User>,
    may_manage: bool,
    roles: [&'static str; 5],
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "user.html")]
struct Detail {
    frame: Frame,
    user: User,
    may_manage: bool,
    roles: [&'static str; 5],
    error: Option<String>,
}

pub async fn list(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    list_page(&state, &signed_in.session, None).await
}

/// The new-user form.
#[derive(Debug, serde::Deserialize)]
pub struct NewUser {
    csrf: String,
    name: String,
    role: String,
    password: String,
}

pub async fn create(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<NewUser>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let who = session.principal();
    let created = match form.role.parse::<Role>() {
        Ok(role) => {
            let password = Secret::new(form.password);
            let now = (state.clock)();
            signin::create_user(&state.store, &who, &form.name, role, &password, now).await
        }
        Err(e) => Err(Error::BadRequest(e.to_string())),
    };
    match created {
        Ok(_) => Redirect::to("/console/users").into_response(),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => (
            status_of(&e),
            list_page(&state, session, Some(e.to_string())).await,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

pub async fn detail(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    detail_page(&state, &signed_in.session, &id, None).await
}

/// An action's form; `role` only for `role`, `password` only for `password`.
#[derive(Debug, serde::Deserialize)]
pub struct Act {
    csrf: String,
    action: Action,
    role: Option<String>,
    password: Option<String>,
}

/// What can be done to a user from their page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Give them another role.
    Role,
    /// Set a new password.
    Password,
    /// Forget their authenticator.
    ResetSecondFactor,
    /// Clear their lockout.
    Unlock,
    /// Remove them.
    Remove,
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
    let action = match form.action {
        Action::Role => form
            .role
            .unwrap_or_default()
            .parse::<Role>()
            .map(UserAction::Role)
            .map_err(|e| Error::BadRequest(e.to_string())),
        Action::Password => Ok(UserAction::Password(Secret::new(
            form.password.unwrap_or_default(),
        ))),
        Action::ResetSecondFactor => Ok(UserAction::ResetSecondFactor),
        Action::Unlock => Ok(UserAction::Unlock),
        Action::Remove => Ok(UserAction::Remove),
    };
    let done = match (action, user_id(&id)) {
        (Ok(action), Ok(user)) => {
            let now = (state.clock)();
            signin::edit_user(&state.store, &session.principal(), user, action, now).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match done {
        Ok(()) if form.action == Action::Remove => Redirect::to("/console/users").into_response(),
        Ok(()) => Redirect::to(&format!("/console/users/{id}")).into_response(),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => (
            status_of(&e),
            detail_page(&state, session, &id, Some(e.to_string())).await,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

async fn list_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
    match signin::list_users(&state.store, &session.principal()).await {
        Ok(users) => render(&List {
            frame: Frame::new(session, "users"),
            users,
            may_manage: session.role.may(Permission::ManageUsers),
            roles: ROLES,
            error,
        }),
        Err(e) => error_page(&e),
    }
}

async fn detail_page(
    state: &AppState,
    session: &Session,
    id: &str,
    error: Option<String>,
) -> Response {
    let found = match user_id(id) {
        Ok(id) => signin::list_users(&state.store, &session.principal())
            .await
            .and_then(|users| {
                users
                    .into_iter()
                    .find(|u| u.id == id)
                    .ok_or_else(|| Error::NotFound(format!("no user {id}")))
            }),
        Err(e) => Err(e),
    };
    match found {
        Ok(user) => render(&Detail {
            frame: Frame::new(session, "users"),
            user,
            may_manage: session.role.may(Permission::ManageUsers),
            roles: ROLES,
            error,
        }),
        Err(e) => error_page(&e),
    }
}

fn user_id(id: &str) -> Result<i64, Error> {
    id.parse::<i64>()
        .map_err(|_| Error::NotFound(format!("no user {id:?}")))
}
