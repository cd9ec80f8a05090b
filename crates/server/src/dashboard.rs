//! The fleet at a glance, for the console's dashboard: agents online and offline, connections
//! and blocks per minute over the last hour (with the chart drawn here as SVG), the busiest
//! applications, the most blocked destinations and the open alerts by severity.

use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};

use crate::agents::{self, Liveness, Status};
use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{Minute, Ranked, Store};

/// The period the dashboard covers.
pub const PERIOD: SignedDuration = SignedDuration::from_hours(1);
/// Rows in each top list.
const TOP: i64 = 5;
const MINUTE_MS: i64 = 60_000;

/// What the dashboard shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Agents heard from recently.
    pub online: usize,
    /// Agents not heard from (revoked ones are left out).
    pub offline: usize,
    /// Every minute of the period, oldest first, empty minutes included.
    pub minutes: Vec<Minute>,
    /// Connections in the period.
    pub connections: i64,
    /// Blocked connections in the period.
    pub blocks: i64,
    /// The busiest applications.
    pub top_applications: Vec<Ranked>,
    /// The most blocked destinations.
    pub top_blocked: Vec<Ranked>,
    /// Alerts not resolved, by severity, most severe first (every severity listed).
    pub open_alerts: Vec<Ranked>,
}

/// The dashboard at `now`; every reading role may see it.
pub async fn summary(
    store: &Store,
    who: &Principal,
    liveness: Liveness,
    now: Timestamp,
) -> Result<Summary, Error> {
    who.require(Permission::ReadEvents)?;
    let agents = agents::list(store, who, liveness, now).await?;
    let count = |status| agents.iter().filter(|a| a.status == status).count();
    let now_ms = now.as_millisecond();
    let first_minute =
        (now_ms - PERIOD.as_secs() * 1000).div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
    let stored = store.connections_per_minute(first_minute).await?;
    let minutes = every_minute(first_minute, now_ms, &stored);
    let open = store.open_alerts_by_severity().await?;
    let open_alerts = ["critical", "high", "medium", "low"]
        .into_iter()
        .map(|severity| Ranked {
            name: severity.to_owned(),
            count: open
                .iter()
                .find(|r| r.name == severity)
                .map_or(0, |r| r.count),
        })
        .collect();
    Ok(Summary {
        online: count(Status::Online),
        offline: count(Status::Offline),
        connections: minutes.iter().map(|m| m.connections).sum(),
        blocks: minutes.iter().map(|m| m.blocks).sum(),
        minutes,
        top_applications: store.top_applications(first_minute, TOP).await?,
        top_blocked: store.top_blocked_destinations(first_minute, TOP).await?,
        open_alerts,
    })
}

/// The minutes from `first` to the one holding `now_ms`, filled from `stored`.
fn every_minute(first: i64, now_ms: i64, stored: &[Minute]) -> Vec<Minute> {
    let mut minutes = Vec::new();
    let mut start_ms = first;
    while start_ms <= now_ms {
        minutes.push(
            stored
                .iter()
                .find(|m| m.start_ms == start_ms)
                .copied()
                .unwrap_or(Minute {
                    start_ms,
                    connections: 0,
                    blocks: 0,
                }),
        );
        start_ms += MINUTE_MS;
    }
    minutes
}

/// Connections (and, over them, blocks) per minute as an SVG bar chart, `width` × `height`
/// user units, with a title per bar for the exact figures. Only numbers go into it.
pub fn traffic_chart(minutes: &[Minute], width: u32, height: u32) -> String {
    let peak = minutes
        .iter()
        .map(|m| m.connections)
        .max()
        .unwrap_or(0)
        .max(1);
    let n = u32::try_from(minutes.len().max(1)).unwrap_or(u32::MAX);
    let bar = f64::from(width) / f64::from(n);
    let scale = |count: i64| {
        // Counts fit comfortably in an f64's 53 bits.
        #[expect(clippy::cast_precision_loss, reason = "counts well below 2^53")]
        let count = count as f64;
        #[expect(clippy::cast_precision_loss, reason = "counts well below 2^53")]
        let peak = peak as f64;
        count / peak * f64::from(height)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         preserveAspectRatio=\"none\" class=\"chart\" role=\"img\" aria-label=\"connections and blocks per minute\">"
    );
    for (i, m) in minutes.iter().enumerate() {
        let x = f64::from(u32::try_from(i).unwrap_or(u32::MAX)) * bar;
        let (all, blocked) = (scale(m.connections), scale(m.blocks));
        let at = Timestamp::from_millisecond(m.start_ms)
            .map(|t| t.strftime("%H:%M").to_string())
            .unwrap_or_default();
        let _ = write!(
            svg,
            "<g><title>{at} UTC: {} connections, {} blocked</title>\
             <rect class=\"allowed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{all:.1}\"/>\
             <rect class=\"blocked\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{blocked:.1}\"/></g>",
            m.connections,
            m.blocks,
            f64::from(height) - all,
            (bar - 1.0).max(0.5),
            f64::from(height) - blocked,
            (bar - 1.0).max(0.5),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_minutes_are_filled_in() {
        let stored = [Minute {
            start_ms: 120_000,
            connections: 4,
            blocks: 1,
        }];
        let minutes = every_minute(60_000, 190_000, &stored);
        let counts: Vec<i64> = minutes.iter().map(|m| m.connections).collect();
        assert_eq!(counts, [0, 4, 0]);
    }

    #[test]
    fn the_chart_has_one_bar_per_minute_scaled_to_the_peak() {
        let minutes = [
            Minute {
                start_ms: 0,
                connections: 10,
                blocks: 5,
            },
            Minute {
                start_ms: 60_000,
                connections: 5,
                blocks: 0,
            },
        ];
        let svg = traffic_chart(&minutes, 100, 50);
        assert_eq!(svg.matches("class=\"allowed\"").count(), 2);
        assert!(
            svg.contains("y=\"0.0\" width=\"49.0\" height=\"50.0\""),
            "{svg}"
        );
        assert!(svg.contains("height=\"25.0\""), "{svg}");
        assert!(
            svg.contains("<title>00:01 UTC: 5 connections, 0 blocked</title>"),
            "{svg}"
        );
    }
}
