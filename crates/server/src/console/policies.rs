//! The console's policy pages: the list, one policy (its versions, rules, groups, export and
//! assignment), the diff between two versions, and the editor, which validates, dry-runs and
//! saves a document with the same policy service the REST API calls.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;

use super::{Frame, SignedIn, csrf_refusal, error_page, render};
use crate::agents;
use crate::error::Error;
use crate::http::AppState;
use crate::policies::{self, Format, MAX_SOURCE_LEN, RuleSummary, Validation};
use crate::role::Permission;
use crate::signin::Session;
use crate::simulate::{self, SimulationReport};
use crate::store::{Group, PolicySummary, PolicyVersion};

#[derive(Template)]
#[template(path = "policies.html")]
struct List {
    frame: Frame,
    policies: Vec<PolicySummary>,
    may_write: bool,
}

#[derive(Template)]
#[template(path = "policy.html")]
struct Detail {
    frame: Frame,
    /// The version shown.
    shown: PolicyVersion,
    /// Whether it is the newest.
    newest: bool,
    versions: Vec<PolicyVersion>,
    rules: Vec<RuleRow>,
    /// Groups this policy is assigned to.
    assigned: Vec<String>,
    /// Groups it could be assigned to (empty when the role may not assign).
    others: Vec<String>,
    may_write: bool,
}

/// A rule with how often it decided a connection, and when last.
struct RuleRow {
    rule: RuleSummary,
    hits: i64,
    last_hit: Option<String>,
}

#[derive(Template)]
#[template(path = "policy_diff.html")]
struct Diff {
    frame: Frame,
    diff: policies::PolicyDiff,
    versions: Vec<i64>,
    /// The diff's lines with their class (`add`, `del`, `hunk` or empty).
    lines: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "policy_editor.html")]
struct Editor {
    frame: Frame,
    /// The policy's name; fixed once the policy exists.
    name: String,
    existing: Option<i64>,
    format: Format,
    source: String,
    /// The version the editor started from, if any.
    base_version: Option<i64>,
    validation: Option<Validation>,
    report: Option<SimulationReport>,
    /// Applications the dry-run would block at least one connection of.
    blocked_apps: usize,
    error: Option<String>,
}

impl Editor {
    fn new(session: &Session) -> Editor {
        Editor {
            frame: Frame::new(session, "policies"),
            name: String::new(),
            existing: None,
            format: Format::Yaml,
            source: String::new(),
            base_version: None,
            validation: None,
            report: None,
            blocked_apps: 0,
            error: None,
        }
    }
}

pub async fn list(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let session = &signed_in.session;
    match policies::list(&state.store, &session.principal()).await {
        Ok(policies) => render(&List {
            frame: Frame::new(session, "policies"),
            policies,
            may_write: session.role.may(Permission::WritePolicies),
        }),
        Err(e) => error_page(&e),
    }
}

/// Which version a page shows.
#[derive(Debug, serde::Deserialize)]
pub struct VersionQuery {
    version: Option<i64>,
}

pub async fn detail(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Query(query): Query<VersionQuery>,
) -> Response {
    let session = &signed_in.session;
    match detail_page(&state, session, id, query.version).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&e),
    }
}

async fn detail_page(
    state: &AppState,
    session: &Session,
    id: i64,
    version: Option<i64>,
) -> Result<Detail, Error> {
    let who = session.principal();
    let versions = policies::versions(&state.store, &who, id).await?;
    let shown = pick(&versions, id, version)?.clone();
    let hits = policies::rule_hits(&state.store, &who, id).await?;
    let rules = policies::rules(&shown)?
        .into_iter()
        .map(|rule| {
            let hit = hits.iter().find(|h| h.rule == rule.id);
            RuleRow {
                hits: hit.map_or(0, |h| h.hits),
                last_hit: hit
                    .and_then(|h| Timestamp::from_millisecond(h.last_hit_ms).ok())
                    .map(|t| t.to_string()),
                rule,
            }
        })
        .collect();
    let groups: Vec<Group> = if session.role.may(Permission::ReadAgents) {
        agents::list_groups(&state.store, &who).await?
    } else {
        Vec::new()
    };
    let (assigned, others): (Vec<Group>, Vec<Group>) =
        groups.into_iter().partition(|g| g.policy_id == Some(id));
    let may_assign = session.role.may(Permission::ManageAgents);
    Ok(Detail {
        frame: Frame::new(session, "policies"),
        newest: versions.last().map(|v| v.version) == Some(shown.version),
        shown,
        versions,
        rules,
        assigned: assigned.into_iter().map(|g| g.name).collect(),
        others: if may_assign {
            others.into_iter().map(|g| g.name).collect()
        } else {
            Vec::new()
        },
        may_write: session.role.may(Permission::WritePolicies),
    })
}

/// Version `version` of policy `id` among its `versions`; the newest without one.
fn pick(
    versions: &[PolicyVersion],
    id: i64,
    version: Option<i64>,
) -> Result<&PolicyVersion, Error> {
    match version {
        Some(n) => versions.iter().find(|v| v.version == n),
        None => versions.last(),
    }
    .ok_or_else(|| Error::NotFound(format!("version {} of policy {id}", version.unwrap_or(0))))
}

/// The two versions a diff compares.
#[derive(Debug, serde::Deserialize)]
pub struct DiffQuery {
    from: Option<i64>,
    to: Option<i64>,
}

pub async fn diff(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Query(query): Query<DiffQuery>,
) -> Response {
    let session = &signed_in.session;
    let who = session.principal();
    let compared = async {
        let versions = policies::versions(&state.store, &who, id).await?;
        let diff = policies::diff(&state.store, &who, id, query.from, query.to).await?;
        Ok::<_, Error>((versions, diff))
    };
    match compared.await {
        Ok((versions, diff)) => {
            let lines = diff
                .diff
                .lines()
                .map(|line| {
                    let class = if line.starts_with("@@") {
                        "hunk"
                    } else if line.starts_with('+') && !line.starts_with("+++") {
                        "add"
                    } else if line.starts_with('-') && !line.starts_with("---") {
                        "del"
                    } else {
                        ""
                    };
                    (class, line.to_owned())
                })
                .collect();
            render(&Diff {
                frame: Frame::new(session, "policies"),
                versions: versions.iter().map(|v| v.version).collect(),
                diff,
                lines,
            })
        }
        Err(e) => error_page(&e),
    }
}

/// A version's document as a download, named `NAME-vN.yaml` or `.json`, exactly as stored.
pub async fn export(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Query(query): Query<VersionQuery>,
) -> Response {
    let who = signed_in.session.principal();
    let versions = match policies::versions(&state.store, &who, id).await {
        Ok(versions) => versions,
        Err(e) => return error_page(&e),
    };
    match pick(&versions, id, query.version) {
        Ok(version) => {
            let content_type = if version.format == "json" {
                "application/json"
            } else {
                "application/yaml"
            };
            let disposition = format!(
                "attachment; filename=\"{}-v{}.{}\"",
                version.name, version.version, version.format
            );
            (
                [
                    (header::CONTENT_TYPE, content_type.to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                version.source.clone(),
            )
                .into_response()
        }
        Err(e) => error_page(&e),
    }
}

/// The assignment form.
#[derive(Debug, serde::Deserialize)]
pub struct Assignment {
    csrf: String,
    group: String,
}

pub async fn assign(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<Assignment>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let assigned = agents::assign_policy(
        &state.store,
        &state.hub,
        &session.principal(),
        &form.group,
        id,
        (state.clock)(),
    )
    .await;
    match assigned {
        Ok(()) => Redirect::to(&format!("/console/policies/{id}")).into_response(),
        Err(e) => error_page(&e),
    }
}

/// The editor for a new policy.
pub async fn new(signed_in: SignedIn) -> Response {
    let session = &signed_in.session;
    if let Err(e) = session.principal().require(Permission::WritePolicies) {
        return error_page(&e);
    }
    let mut editor = Editor::new(session);
    editor.source = "version: 1\nname: NAME\ndefault_action: allow\nrules: []\n".to_owned();
    render(&editor)
}

/// The editor on the newest version of policy `id`.
pub async fn edit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let session = &signed_in.session;
    let who = session.principal();
    if let Err(e) = who.require(Permission::WritePolicies) {
        return error_page(&e);
    }
    let versions = match policies::versions(&state.store, &who, id).await {
        Ok(versions) => versions,
        Err(e) => return error_page(&e),
    };
    match pick(&versions, id, None) {
        Ok(newest) => {
            let mut editor = Editor::new(session);
            editor.name.clone_from(&newest.name);
            editor.existing = Some(id);
            editor.format = newest.format.parse().unwrap_or(Format::Yaml);
            editor.source.clone_from(&newest.source);
            editor.base_version = Some(newest.version);
            render(&editor)
        }
        Err(e) => error_page(&e),
    }
}

/// The editor's form; `intent` is the button pressed.
#[derive(Debug, serde::Deserialize)]
pub struct Edited {
    csrf: String,
    name: String,
    existing: Option<i64>,
    base_version: Option<i64>,
    format: Format,
    source: String,
    intent: Intent,
}

/// What the editor's buttons ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Check the document and show the findings.
    Validate,
    /// Replay it over the last 24 hours of connections.
    DryRun,
    /// Store it as the next version.
    Save,
}

pub async fn submit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Form(form): Form<Edited>,
) -> Response {
    let session = &signed_in.session;
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    let mut editor = Editor::new(session);
    editor.name.clone_from(&form.name);
    editor.existing = form.existing;
    editor.base_version = form.base_version;
    editor.format = form.format;
    editor.source.clone_from(&form.source);
    editor_action(&state, session, editor, form.intent).await
}

/// Carries out `intent` on the editor's document and answers with the editor (findings, the
/// dry-run's report, or why saving failed) or, once saved, the policy's page.
async fn editor_action(
    state: &AppState,
    session: &Session,
    mut editor: Editor,
    intent: Intent,
) -> Response {
    let who = session.principal();
    if let Err(e) = who.require(Permission::WritePolicies) {
        return error_page(&e);
    }
    let name = (!editor.name.is_empty()).then_some(editor.name.as_str());
    let validation = match policies::validate(&who, name, editor.format, &editor.source) {
        Ok(validation) => validation,
        Err(e @ Error::BadRequest(_)) => {
            editor.error = Some(e.to_string());
            return (StatusCode::UNPROCESSABLE_ENTITY, render(&editor)).into_response();
        }
        Err(e) => return error_page(&e),
    };
    let valid = validation.valid;
    editor.validation = Some(validation);
    if !valid {
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&editor)).into_response();
    }
    match intent {
        Intent::Validate => render(&editor),
        Intent::DryRun => {
            let report = simulate::simulate(
                &state.store,
                &who,
                editor.format,
                &editor.source,
                None,
                None,
                (state.clock)(),
            )
            .await;
            match report {
                Ok(report) => {
                    editor.blocked_apps = report.apps.iter().filter(|a| a.would_block > 0).count();
                    editor.report = Some(report);
                    render(&editor)
                }
                Err(e) => error_page(&e),
            }
        }
        Intent::Save => {
            let saved = policies::create_version(
                &state.store,
                &state.hub,
                &who,
                &editor.name,
                editor.format,
                &editor.source,
                (state.clock)(),
            )
            .await;
            match saved {
                Ok(version) => Redirect::to(&format!("/console/policies/{}", version.policy_id))
                    .into_response(),
                Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
                    editor.error = Some(e.to_string());
                    (StatusCode::UNPROCESSABLE_ENTITY, render(&editor)).into_response()
                }
                Err(e) => error_page(&e),
            }
        }
    }
}

/// Imports a document from a file upload (`csrf`, `name`, `file`; the format from the file's
/// extension): it opens in the editor, validated, to be reviewed and saved.
pub async fn import(
    State(state): State<AppState>,
    signed_in: SignedIn,
    multipart: Multipart,
) -> Response {
    let session = &signed_in.session;
    let upload = match read_upload(multipart).await {
        Ok(upload) => upload,
        Err(e) => return error_page(&e),
    };
    if let Some(refused) = csrf_refusal(session, &upload.csrf) {
        return refused;
    }
    let mut editor = Editor::new(session);
    editor.name = upload.name;
    editor.format = upload.format;
    editor.source = upload.source;
    editor_action(&state, session, editor, Intent::Validate).await
}

/// What an import form carried.
struct Upload {
    csrf: String,
    name: String,
    format: Format,
    source: String,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, Error> {
    let bad = |e: axum::extract::multipart::MultipartError| Error::BadRequest(e.body_text());
    let (mut csrf, mut name, mut file) = (String::new(), String::new(), None);
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "csrf" => csrf = field.text().await.map_err(bad)?,
            "name" => name = field.text().await.map_err(bad)?,
            "file" => {
                let file_name = field.file_name().unwrap_or_default().to_owned();
                let format = Format::of_file(&file_name).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "file {file_name:?}: name a .yaml, .yml or .json file"
                    ))
                })?;
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > MAX_SOURCE_LEN {
                    return Err(Error::BadRequest(format!(
                        "the file is {} bytes; at most {MAX_SOURCE_LEN} are accepted",
                        bytes.len()
                    )));
                }
                let source = String::from_utf8(bytes.to_vec())
                    .map_err(|_| Error::BadRequest("the file is not UTF-8 text".to_owned()))?;
                file = Some((format, source));
            }
            _ => {}
        }
    }
    let (format, source) =
        file.ok_or_else(|| Error::BadRequest("choose a policy file to import".to_owned()))?;
    Ok(Upload {
        csrf,
        name,
        format,
        source,
    })
}
