//! DNS tunnelling in the stream: each DNS query (a connection to port 53 naming what it asked
//! for) goes to [`crate::dns_tunnel::Tracker`], keyed by agent and registrable domain; its
//! findings become the pipeline's, with the score's terms as the explanation.

use serde_json::{Map, Value, json};

use super::{Context, Finding, Severity};
use crate::dns_tunnel::{self, Tracker};

#[derive(Debug)]
pub struct Detector {
    tracker: Tracker,
}

impl Detector {
    pub fn new(config: dns_tunnel::Config) -> Detector {
        Detector {
            tracker: Tracker::new(config),
        }
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let o = context.observation;
        let Some(name) = o.domain.filter(|_| o.is_dns_query() && !o.inbound) else {
            return;
        };
        let agent = context.names.name(context.agent);
        let Some(found) = self
            .tracker
            .observe(o.time_ms, agent, name, o.query_type, &o.evidence())
        else {
            return;
        };
        let app = context.app_name();
        // The query that completed the finding is cited last, as every detector does.
        let mut evidence = found.evidence;
        let trigger = o.evidence();
        if evidence.last() != Some(&trigger) {
            evidence.truncate(super::MAX_EVIDENCE - 1);
            evidence.push(trigger);
        }
        let e = &found.explanation;
        let mut explanation = Map::new();
        explanation.insert("why".to_owned(), json!(e.summary));
        explanation.insert("domain".to_owned(), json!(found.domain));
        explanation.insert("queries".to_owned(), json!(e.features.queries));
        explanation.insert(
            "distinct_subdomains".to_owned(),
            json!(e.features.distinct_subdomains),
        );
        for term in &e.terms {
            explanation.insert(
                term.feature.to_owned(),
                json!(format!(
                    "{:.2} (benign {:.2}; contributes {:+.2})",
                    term.value, term.baseline, term.contribution
                )),
            );
        }
        explanation.insert("threshold".to_owned(), json!(e.threshold));
        out.push(Finding {
            kind: "dns_tunnel".to_owned(),
            severity: Severity::of_score(found.score).max(Severity::Medium),
            score: found.score,
            title: format!(
                "{} on {agent} carries data in DNS names under {} ({} distinct names in {} queries)",
                app.as_deref().unwrap_or("an application"),
                found.domain,
                e.features.distinct_subdomains,
                e.features.queries
            ),
            agent: agent.to_owned(),
            app,
            key: format!("dns_tunnel:{agent}:{}", found.domain),
            explanation: Value::Object(explanation),
            evidence,
            time_ms: o.time_ms,
        });
    }
}
