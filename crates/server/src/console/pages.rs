//! The console's pages. Each calls the service the REST API calls, as the signed-in user, and
//! renders what it returns; a refusal of the service (the role) is the page's refusal.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::{Frame, SignedIn, error_page, render};
use crate::audit::{self, Entry};
use crate::dashboard::{self, Summary};
use crate::error::Error;
use crate::events::{self, EventQuery, SearchedPage};
use crate::http::AppState;
use crate::store::{StoredEvent, rfc3339};

/// A refusal or failure, as a page.
#[derive(Template)]
#[template(path = "problem.html")]
pub struct Problem {
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    frame: Frame,
    summary: Summary,
    chart: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct Events {
    frame: Frame,
    filters: Vec<(String, String)>,
    events: Vec<StoredEvent>,
    next: Option<String>,
    /// When the search stopped early: the oldest time it searched, RFC 3339.
    searched_back_to: Option<String>,
    export: String,
}

/// How long the connection log searches for a page of matches before it shows what it found
/// and offers to search older events (docs/console.md, "Connections").
const SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(40);

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    frame: Frame,
    /// The newest [`AUDIT_SHOWN`] of the entries selected, newest first.
    entries: Vec<Entry>,
    /// How many entries the filter selects.
    matching: usize,
    chain: String,
    filter: audit::Filter,
}

/// The most audit entries one page shows (the newest of those selected).
const AUDIT_SHOWN: usize = 1_000;

/// The most events one CSV export of the console holds.
const EXPORT_LIMIT: i64 = 100_000;

/// The filters the connection log offers, in the order of its form.
const FILTERS: [&str; 11] = [
    "agent", "app", "user", "domain", "ip", "port", "protocol", "action", "rule", "from", "to",
];

pub async fn dashboard(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let who = signed_in.session.principal();
    match dashboard::summary(&state.store, &who, state.liveness, (state.clock)()).await {
        Ok(summary) => {
            let chart = dashboard::traffic_chart(&summary.minutes, 600, 120);
            render(&Dashboard {
                frame: Frame::new(&signed_in.session, "dashboard"),
                summary,
                chart,
            })
        }
        Err(e) => error_page(&e),
    }
}

/// The connection log: the URL's query holds the filters (as the API takes them) and the
/// cursor, so a filtered view can be bookmarked and shared.
pub async fn events(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let who = signed_in.session.principal();
    let pairs = filled_pairs(query.as_deref());
    let listed = match EventQuery::from_pairs(&pairs) {
        Ok(query) => {
            events::list_within(&state.store, &who, &query, SEARCH_BUDGET, &*state.clock).await
        }
        Err(e) => Err(e),
    };
    match listed {
        Ok(SearchedPage {
            page,
            searched_back_to,
        }) => {
            let filters: Vec<(String, String)> = FILTERS
                .iter()
                .map(|name| {
                    let value = pairs
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    ((*name).to_owned(), value)
                })
                .collect();
            let kept: Vec<(String, String)> = pairs
                .iter()
                .filter(|(n, _)| n != "cursor")
                .cloned()
                .collect();
            let next = page.next_cursor.map(|cursor| {
                let mut with_cursor = kept.clone();
                with_cursor.push(("cursor".to_owned(), cursor));
                format!("/console/events?{}", encode_pairs(&with_cursor))
            });
            let mut csv = kept;
            csv.push(("format".to_owned(), "csv".to_owned()));
            csv.push(("limit".to_owned(), EXPORT_LIMIT.to_string()));
            render(&Events {
                frame: Frame::new(&signed_in.session, "events"),
                filters,
                events: page.events,
                next,
                searched_back_to: searched_back_to.map(rfc3339),
                export: format!("/console/events.csv?{}", encode_pairs(&csv)),
            })
        }
        Err(e) => error_page(&e),
    }
}

/// The audit log, newest first, as its filters (kept in the URL) select; the hash chain is
/// verified over the whole log whatever is shown.
pub async fn audit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    filter: Result<Query<audit::Filter>, QueryRejection>,
) -> Response {
    let who = signed_in.session.principal();
    let Ok(Query(filter)) = filter else {
        return error_page(&Error::BadRequest(
            "the audit log's filters are actor, action, subject, from and to".to_owned(),
        ));
    };
    let entries = match audit::entries(&state.store, &who).await {
        Ok(entries) => entries,
        Err(e) => return error_page(&e),
    };
    let chain = match audit::verify(&entries) {
        Ok(()) => format!("The hash chain of all {} entries verifies.", entries.len()),
        Err(broken) => format!("The hash chain is BROKEN: {broken}."),
    };
    match filter.select(&entries) {
        Ok(selected) => {
            let matching = selected.len();
            render(&Audit {
                frame: Frame::new(&signed_in.session, "audit"),
                entries: selected
                    .into_iter()
                    .rev()
                    .take(AUDIT_SHOWN)
                    .cloned()
                    .collect(),
                matching,
                chain,
                filter,
            })
        }
        Err(e) => error_page(&e),
    }
}

/// The query's pairs, in order, without the empty ones (a form's untouched fields).
fn filled_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

pub(super) fn encode_pairs(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The connection log as CSV: every event its filters select, up to [`EXPORT_LIMIT`].
pub async fn events_csv(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let who = signed_in.session.principal();
    let exported = EventQuery::from_pairs(&filled_pairs(query.as_deref()))
        .and_then(|query| events::export(state.store.clone(), &who, query));
    match exported {
        Ok(stream) => {
            let body = axum::body::Body::from_stream(
                stream.map(|chunk| chunk.map_err(std::io::Error::other)),
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"connections.csv\"",
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => error_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_the_url_and_empty_fields_are_dropped() {
        let pairs = vec![
            ("domain".to_owned(), "!*.example.com".to_owned()),
            ("app".to_owned(), "/usr/bin/curl a+b".to_owned()),
        ];
        assert_eq!(filled_pairs(Some(&encode_pairs(&pairs))), pairs);
        assert_eq!(
            filled_pairs(Some("app=a+b&port=&x")),
            [("app".to_owned(), "a b".to_owned())]
        );
    }
}
