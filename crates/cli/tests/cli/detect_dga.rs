//! `palisade detect dga FILE` and `palisade detect train dga`: one `score<TAB>domain` line per
//! name, bad lines counted on standard error, and a model trained here scoring as the shipped
//! one does.

use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("detect")
        .args(args)
        .output()
        .expect("palisade runs")
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `score<TAB>domain` lines, checked for the exact format.
fn scores(out: &Output) -> Vec<(f64, String)> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            let (score, domain) = line.split_once('\t').expect("score<TAB>domain");
            assert_eq!(score.len(), 8, "six decimals: {line:?}");
            let score: f64 = score.parse().unwrap();
            assert!((0.0..=1.0).contains(&score), "{line}");
            (score, domain.to_owned())
        })
        .collect()
}

const NAMES: &str = "google.com\nwww.wikipedia.org\n\nbbc.co.uk\nnot a domain\n\
xjkqpwzvtyrb.com\n# a comment\nco.uk\nq8h3zk0v2m9xwt.net\nvhzdkqlprswtxb.info\n";

#[test]
fn generated_names_rank_above_benign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.txt");
    std::fs::write(&file, NAMES).unwrap();
    let out = palisade(&["dga", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let scores = scores(&out);
    let domains: Vec<&str> = scores.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        domains,
        [
            "google.com",
            "www.wikipedia.org",
            "bbc.co.uk",
            "xjkqpwzvtyrb.com",
            "q8h3zk0v2m9xwt.net",
            "vhzdkqlprswtxb.info"
        ],
        "input order, bad lines left out"
    );
    let benign = scores[..3].iter().map(|s| s.0).fold(0.0, f64::max);
    let generated = scores[3..].iter().map(|s| s.0).fold(1.0, f64::min);
    assert!(generated > benign, "{scores:?}");
    assert!(benign < 0.2 && generated > 0.8, "{scores:?}");
    let err = stderr(&out);
    assert!(err.contains("6 names scored, 2 lines skipped"), "{err}");
    assert!(
        err.contains("1 character not allowed in a DNS name"),
        "{err}"
    );
    assert!(
        err.contains("1 a public suffix, no registrable label"),
        "{err}"
    );
    assert!(err.contains("line 5:"), "{err}");
}

#[test]
fn unreadable_inputs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let out = palisade(&["dga", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.txt"), "{}", stderr(&out));

    let names = dir.path().join("names.txt");
    std::fs::write(&names, "example.com\n").unwrap();
    let model = dir.path().join("bad.model");
    std::fs::write(&model, b"PDGA\x01\x00\x00\x00garbage").unwrap();
    let out = palisade(&[
        "dga",
        names.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("model file"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

/// Word-like benign names and random generated ones, written as the corpus files are.
fn write_training_files(dir: &Path) {
    let words = [
        "on", "line", "shop", "news", "the", "best", "mail", "cloud", "home", "net", "work",
        "city", "bank", "travel", "book", "store", "tech", "blog", "sport", "radio",
    ];
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut benign = String::new();
    let mut dga = String::from("bazar\t]`bad.bazaar\n");
    for _ in 0..400 {
        let label: String = (0..2 + next() % 2)
            .map(|_| words[next() % words.len()])
            .collect();
        benign.push_str(&format!("{label}.com\n"));
        let random: String = (0..10 + next() % 6)
            .map(|_| char::from(b'a' + u8::try_from(next() % 26).unwrap()))
            .collect();
        dga.push_str(&format!("fam{}\t{random}.net\n", next() % 4));
    }
    std::fs::write(dir.join("benign.txt"), benign).unwrap();
    std::fs::write(dir.join("dga.tsv"), dga).unwrap();
}

#[test]
fn a_trained_model_is_deterministic_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    write_training_files(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let train = |out: &str| {
        let out = palisade(&[
            "train",
            "dga",
            "--benign",
            &path("benign.txt"),
            "--dga",
            &path("dga.tsv"),
            "--out",
            &path(out),
            "--seed",
            "3",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };
    let err = train("a.model");
    assert!(
        err.contains("trained on 400 benign and 400 generated names"),
        "{err}"
    );
    assert!(
        err.contains("1 character not allowed in a DNS name"),
        "{err}"
    );
    train("b.model");
    let a = std::fs::read(path("a.model")).unwrap();
    assert_eq!(
        a,
        std::fs::read(path("b.model")).unwrap(),
        "same seed, same file"
    );

    std::fs::write(path("names.txt"), "mailbook.com\nqwkzjxvbtrplm.net\n").unwrap();
    let out = palisade(&["dga", &path("names.txt"), "--model", &path("a.model")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let scores = scores(&out);
    assert!(scores[0].0 < 0.5 && scores[1].0 > 0.5, "{scores:?}");
}
