//! Live dashboard figures over Server-Sent Events: at once and then every few seconds, the
//! session's dashboard figures (agents online and offline, connections and blocks of the last
//! hour) as one `figures` event of JSON; the dashboard's script puts them in place. The role is
//! checked before the stream starts, and the session at every event: a session that has ended
//! ends its stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::{SignedIn, error_page};
use crate::dashboard;
use crate::http::AppState;
use crate::signin::Stage;

/// How often the figures are sent.
const EVERY: Duration = Duration::from_secs(3);

/// What one `figures` event carries.
#[derive(Debug, serde::Serialize)]
struct Figures {
    online: usize,
    offline: usize,
    connections: i64,
    blocks: i64,
}

pub async fn dashboard_stream(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let who = signed_in.session.principal();
    if let Err(e) = dashboard::summary(&state.store, &who, state.liveness, (state.clock)()).await {
        return error_page(&e);
    }
    let cookie = signed_in.cookie;
    let events = futures_util::stream::unfold(true, move |first| {
        let (state, cookie) = (state.clone(), cookie.clone());
        async move {
            if !first {
                tokio::time::sleep(EVERY).await;
            }
            let now = (state.clock)();
            let session = crate::signin::current(&state.store, &cookie, now).await;
            let session = session
                .ok()
                .flatten()
                .filter(|s| s.stage == Stage::SignedIn)?;
            let summary =
                dashboard::summary(&state.store, &session.principal(), state.liveness, now).await;
            let figures = match summary {
                Ok(s) => Figures {
                    online: s.online,
                    offline: s.offline,
                    connections: s.connections,
                    blocks: s.blocks,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "live dashboard figures failed; the stream ends");
                    return None;
                }
            };
            let event = Event::default().event("figures").json_data(figures).ok()?;
            Some((Ok::<_, Infallible>(event), false))
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
