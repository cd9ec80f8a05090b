//! Every kind of invalid document is refused with a message naming file, line, field and cause.

use crate::support::load;

/// A document, and the first error expected: line, field, and a piece of the message.
struct Case {
    name: &'static str,
    text: &'static str,
    line: u32,
    field: &'static str,
    message: &'static str,
}

const HEAD: &str = "version: 1\nname: t\ndefault_action: allow\n";

fn yaml(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn check(case: &Case, text: &str) {
    let invalid = match load(case.name, text) {
        Ok(_) => panic!("{}: should be invalid:\n{text}", case.name),
        Err(invalid) => invalid,
    };
    let first = &invalid.errors[0];
    let shown = first.to_string();
    assert_eq!(first.file, case.name, "{shown}");
    assert_eq!(first.pos.line, case.line, "{shown}");
    assert_eq!(first.field, case.field, "{shown}");
    assert!(
        first.message.contains(case.message),
        "{shown}\nexpected to contain: {}",
        case.message
    );
    assert!(
        shown.starts_with(&format!("{}:{}:", case.name, case.line)),
        "{shown}"
    );
}

#[test]
fn yaml_documents() {
    let cases = [
        Case {
            name: "unknown-top.yaml",
            text: "rulez: []\n",
            line: 4,
            field: "rulez",
            message: "did you mean \"rules\"",
        },
        Case {
            name: "unknown-match.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      dst_prot: 80\n",
            line: 8,
            field: "rules[0].match.dst_prot",
            message: "did you mean \"dst_port\"",
        },
        Case {
            name: "fail-keyword.yaml",
            text: "fail: closd\n",
            line: 4,
            field: "fail",
            message: "closed",
        },
        Case {
            name: "port-string.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      dst_port: \"80\"\n",
            line: 8,
            field: "rules[0].match.dst_port",
            message: "write 80 without quotes",
        },
        Case {
            name: "port-range.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      dst_port: {from: 9000, to: 8000}\n",
            line: 8,
            field: "rules[0].match.dst_port",
            message: "inverted port range",
        },
        Case {
            name: "port-big.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      dst_port: [80, 70000]\n",
            line: 8,
            field: "rules[0].match.dst_port[1]",
            message: "out of range",
        },
        Case {
            name: "port-dash.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      dst_port: 8000-8100\n",
            line: 8,
            field: "rules[0].match.dst_port",
            message: "{from: N, to: M}",
        },
        Case {
            name: "cidr.yaml",
            text: "rules:\n  - id: a\n    action: block\n    match:\n      dst_ip: 10.0.0.0/33\n",
            line: 8,
            field: "rules[0].match.dst_ip",
            message: "prefix length",
        },
        Case {
            name: "cidr-host.yaml",
            text: "rules:\n  - id: a\n    action: block\n    match:\n      dst_ip: [10.0.0.0/8, 10.0.0.1/8]\n",
            line: 8,
            field: "rules[0].match.dst_ip[1]",
            message: "10.0.0.0/8",
        },
        Case {
            name: "regex.yaml",
            text: "rules:\n  - id: a\n    action: block\n    match:\n      cmdline_matches: \"--upload(\"\n",
            line: 8,
            field: "rules[0].match.cmdline_matches",
            message: "invalid regular expression",
        },
        Case {
            name: "dup.yaml",
            text: "rules:\n  - id: a\n    action: block\n  - id: a\n    action: allow\n",
            line: 7,
            field: "rules[1].id",
            message: "duplicate rule id \"a\" (first used at line 5)",
        },
        Case {
            name: "action.yaml",
            text: "rules:\n  - id: a\n    action: deny\n",
            line: 6,
            field: "rules[0].action",
            message: "one of allow, block, alert, log",
        },
        Case {
            name: "missing-action.yaml",
            text: "rules:\n  - id: a\n",
            line: 5,
            field: "rules[0].action",
            message: "missing required key",
        },
        Case {
            name: "enabled.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    enabled: \"yes\"\n",
            line: 7,
            field: "rules[0].enabled",
            message: "true or false",
        },
        Case {
            name: "domain.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      domain: a.*.example.com\n",
            line: 8,
            field: "rules[0].match.domain",
            message: "only allowed as `*.`",
        },
        Case {
            name: "list.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      list: nope\n",
            line: 8,
            field: "rules[0].match.list",
            message: "unknown list \"nope\"",
        },
        Case {
            name: "user.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      user: 1000\n",
            line: 8,
            field: "rules[0].match.user",
            message: "uid: 1000",
        },
        Case {
            name: "empty.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    match:\n      app_path: []\n",
            line: 8,
            field: "rules[0].match.app_path",
            message: "empty list never matches",
        },
        Case {
            name: "when-op.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    when: {field: dst_port, operator: contains, value: 8}\n",
            line: 7,
            field: "rules[0].when.operator",
            message: "does not apply to dst_port",
        },
        Case {
            name: "when-type.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    when:\n      any:\n        - {field: uid, operator: \"==\", value: \"0\"}\n",
            line: 9,
            field: "rules[0].when.any[0].value",
            message: "write 0 without quotes",
        },
        Case {
            name: "when-field.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    when: {field: dst_prot, operator: \"==\", value: 1}\n",
            line: 7,
            field: "rules[0].when.field",
            message: "did you mean \"dst_port\"",
        },
        Case {
            name: "schedule.yaml",
            text: "rules:\n  - id: a\n    action: allow\n    schedule: {hours: \"9-17\"}\n",
            line: 7,
            field: "rules[0].schedule.hours",
            message: "write it as HH:MM",
        },
        Case {
            name: "test-rule.yaml",
            text: "tests:\n  - conn: {dst_port: 1}\n    expect: allow\n    rule: ghost\n",
            line: 7,
            field: "tests[0].rule",
            message: "no rule has the id",
        },
        Case {
            name: "test-conn.yaml",
            text: "tests:\n  - conn: {dst_port: \"443\"}\n    expect: allow\n",
            line: 5,
            field: "tests[0].conn.dst_port",
            message: "without quotes",
        },
        Case {
            name: "list-file.yaml",
            text: "lists:\n  x: {file: does-not-exist.txt, kind: domains}\n",
            line: 5,
            field: "lists.x.file",
            message: "cannot read",
        },
        Case {
            name: "dup-key.yaml",
            text: "rules:\n  - id: a\n    id: b\n    action: allow\n",
            line: 6,
            field: "",
            message: "duplicate key \"id\"",
        },
    ];
    for case in &cases {
        check(case, &yaml(case.text));
    }
}

#[test]
fn top_level_problems() {
    let cases = [
        Case {
            name: "version.yaml",
            text: "version: 2\nname: t\ndefault_action: allow\n",
            line: 1,
            field: "version",
            message: "expected 1",
        },
        Case {
            name: "no-default.yaml",
            text: "version: 1\nname: t\n",
            line: 1,
            field: "default_action",
            message: "missing required key",
        },
        Case {
            name: "syntax.yaml",
            text: "version: 1\nname: [t\n",
            line: 3,
            field: "",
            message: "",
        },
        Case {
            name: "not-a-map.yaml",
            text: "- 1\n- 2\n",
            line: 1,
            field: "",
            message: "expected a mapping",
        },
    ];
    for case in &cases {
        check(case, case.text);
    }
}

#[test]
fn json_documents_report_lines_too() {
    let port = Case {
        name: "p.json",
        text: "{\n  \"version\": 1,\n  \"name\": \"t\",\n  \"default_action\": \"allow\",\n  \"rules\": [\n    {\"id\": \"a\", \"action\": \"allow\",\n     \"match\": {\"dst_port\": \"80\"}}\n  ]\n}\n",
        line: 7,
        field: "rules[0].match.dst_port",
        message: "without quotes",
    };
    check(&port, port.text);
    let syntax = Case {
        name: "s.json",
        text: "{\n  \"version\": 1,\n  name: \"t\"\n}\n",
        line: 3,
        field: "",
        message: "invalid JSON",
    };
    check(&syntax, syntax.text);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = yaml(
        "rules:\n  - id: a\n    action: nope\n    match:\n      dst_port: \"80\"\n      dst_ip: 1.2.3\n",
    );
    let invalid = load("many.yaml", &text).unwrap_err();
    let fields: Vec<&str> = invalid.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rules[0].action",
            "rules[0].match.dst_port",
            "rules[0].match.dst_ip"
        ]
    );
}

#[test]
fn a_broken_list_or_rule_is_reported_once_not_again_where_it_is_used() {
    let text = yaml(
        "lists:\n  nets: {cidrs: [10.0.0.0/33]}\nrules:\n  - id: a\n    action: block\n    match: {list: nets}\n  - id: b\n    action: nope\ntests:\n  - conn: {dst_port: 1}\n    expect: block\n    rule: b\n",
    );
    let invalid = load("once.yaml", &text).unwrap_err();
    let fields: Vec<&str> = invalid.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["lists.nets.cidrs[0]", "rules[1].action"],
        "{:?}",
        invalid.errors
    );
}
