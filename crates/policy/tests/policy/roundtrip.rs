//! Canonical formatting reads back to the same policy, in YAML and in JSON.

use palisade_policy::{Format, emit};
use proptest::prelude::*;

use crate::generate;
use crate::support::load_ok;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn fmt_reads_back_the_same(doc in generate::policy()) {
        let policy = load_ok("generated.json", &doc.to_string()).policy;
        let canonical = emit::to_value(&policy);
        for (name, format) in [("again.yaml", Format::Yaml), ("again.json", Format::Json)] {
            let text = emit::to_text(&policy, format);
            let again = load_ok(name, &text).policy;
            prop_assert_eq!(&emit::to_value(&again), &canonical, "{}", text);
            prop_assert_eq!(emit::to_text(&again, format), text);
        }
    }
}

#[test]
fn fmt_keeps_every_example_unchanged_in_meaning() {
    for name in ["workstation.yaml", "rollout-monitor.yaml", "server.json"] {
        let text = std::fs::read_to_string(crate::support::examples_dir().join(name)).unwrap();
        let policy = load_ok(name, &text).policy;
        let format = Format::from_file_name(name);
        let again = load_ok(name, &emit::to_text(&policy, format)).policy;
        assert_eq!(emit::to_value(&again), emit::to_value(&policy), "{name}");
        let cases = |p: &palisade_policy::Policy| {
            p.tests
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.conn.clone(),
                        t.expect,
                        t.rule.clone(),
                        t.at,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(cases(&again), cases(&policy), "{name}");
    }
}
