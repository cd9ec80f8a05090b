//! The classifier end to end: training converges, the file round-trips, damage is refused,
//! and the held-out-family figures on the corpus.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

/// Pseudo-random lowercase labels, a stand-in for a DGA in tests that do not read the corpus.
fn random_names(n: usize, seed: u64) -> Vec<String> {
    let mut rng = training::SplitMix(seed);
    (0..n)
        .map(|_| {
            let len = 8 + (rng.next() % 10) as usize;
            let label: String = (0..len)
                .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
                .collect();
            format!("{label}.com")
        })
        .collect()
}

/// Word-like benign names: syllables of common English.
fn wordy_names(n: usize, seed: u64) -> Vec<String> {
    const SYLLABLES: [&str; 20] = [
        "on", "line", "shop", "news", "the", "best", "mail", "cloud", "home", "net", "work",
        "city", "bank", "travel", "book", "store", "tech", "blog", "sport", "radio",
    ];
    let mut rng = training::SplitMix(seed);
    (0..n)
        .map(|_| {
            let parts = 2 + (rng.next() % 2) as usize;
            let label: String = (0..parts)
                .map(|_| SYLLABLES[(rng.next() % 20) as usize])
                .collect();
            let tld = ["com", "org", "co.uk", "de"][(rng.next() % 4) as usize];
            format!("{label}.{tld}")
        })
        .collect()
}

fn small_model() -> (Model, TrainReport) {
    let options = TrainOptions {
        hash_bits: 12,
        epochs: 4,
        ..TrainOptions::default()
    };
    train_with_report(&wordy_names(600, 1), &random_names(600, 2), &options)
}

#[test]
fn training_converges_and_separates() {
    let (model, report) = small_model();
    assert_eq!((report.benign, report.dga, report.skipped), (600, 600, 0));
    let loss = &report.epoch_log_loss;
    assert!(loss[0] < 0.69, "first epoch already learns: {loss:?}");
    assert!(
        loss.windows(2).all(|w| w[1] <= w[0]),
        "log loss falls: {loss:?}"
    );
    assert!(report.train_auc > 0.99, "{report:?}");
    let benign = model.score("www.mailbook.co.uk");
    let generated = model.score("xkqjzvtrwpl.com");
    assert!(benign < 0.5 && generated > 0.5, "{benign} vs {generated}");
}

#[test]
fn training_is_deterministic() {
    let (a, _) = small_model();
    let (b, _) = small_model();
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn names_that_are_not_scorable_score_zero() {
    let (model, _) = small_model();
    for name in [
        "",
        "   ",
        "co.uk",
        "com",
        "a..com",
        "]`abc.bazaar",
        "exa mple.com",
    ] {
        assert_eq!(model.score(name), 0.0, "{name:?}");
    }
    let explanation = model.explain("co.uk");
    assert_eq!(explanation.registrable_label, None);
    assert!(explanation.unscored.is_some());
}

#[test]
fn reverse_lookups_are_not_scored_as_generated() {
    let model = Model::shipped();
    for name in [
        "67.13.217.172.in-addr.arpa",
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa",
    ] {
        assert_eq!(model.score(name), 0.0, "{name}");
        assert_eq!(scorable(name), Err(Invalid::ReverseLookup), "{name}");
        assert_eq!(
            model.explain(name).unscored,
            Some(Invalid::ReverseLookup.reason())
        );
    }
}

#[test]
fn explanations_name_the_label_figures_and_ngrams() {
    let (model, _) = small_model();
    let e = model.explain("Mail.XKQJZVTRWPL.co.uk.");
    assert_eq!(e.registrable_label.as_deref(), Some("xkqjzvtrwpl"));
    assert_eq!(e.suffix.as_deref(), Some("co.uk"));
    assert_eq!(e.score, model.score("mail.xkqjzvtrwpl.co.uk"));
    let length = e.features.iter().find(|f| f.name == "length").unwrap();
    assert_eq!(length.value, 11.0);
    assert!(
        length.benign_mean > 4.0 && length.benign_mean < 20.0,
        "{length:?}"
    );
    assert_eq!(e.features.len(), LEXICAL_NAMES.len());
    assert!(!e.top_ngrams.is_empty() && e.top_ngrams.len() <= 10);
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["registrable_label"], "xkqjzvtrwpl");
}

#[test]
fn model_bytes_round_trip() {
    let (model, _) = small_model();
    let bytes = model.to_bytes();
    let back = Model::from_bytes(&bytes).unwrap();
    assert_eq!(back, model);
    assert_eq!(back.to_bytes(), bytes);
    for name in ["example.com", "xkqjzvtrwpl.net", "a.b.c.github.io"] {
        assert_eq!(back.score(name), model.score(name));
    }
}

#[test]
fn damaged_model_files_are_errors() {
    let (model, _) = small_model();
    let bytes = model.to_bytes();
    assert_eq!(Model::from_bytes(b""), Err(ModelError::Truncated("magic")));
    assert_eq!(
        Model::from_bytes(b"PDGX\x01\0\0\0"),
        Err(ModelError::Magic("DGA"))
    );
    let mut version = bytes.clone();
    version[4] = 9;
    assert_eq!(
        Model::from_bytes(&version),
        Err(ModelError::Version {
            found: 9,
            supported: 2
        })
    );
    version[4] = 1;
    assert_eq!(
        Model::from_bytes(&version),
        Err(ModelError::Version {
            found: 1,
            supported: 2
        }),
        "version 1 files (15 figures) are refused"
    );
    assert_eq!(
        Model::from_bytes(&bytes[..bytes.len() - 1]),
        Err(ModelError::Truncated("body"))
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Model::from_bytes(&longer),
        Err(ModelError::TrailingBytes(1))
    );
    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    assert!(matches!(
        Model::from_bytes(&flipped),
        Err(ModelError::Checksum { .. })
    ));
    let mut bits = bytes.clone();
    bits[8] = 40;
    assert_eq!(
        Model::from_bytes(&bits),
        Err(ModelError::Field("hash_bits"))
    );
    // Every truncation is an error, never a panic.
    for len in (0..bytes.len()).step_by(97) {
        assert!(Model::from_bytes(&bytes[..len]).is_err(), "{len}");
    }
}

#[test]
fn a_nan_weight_is_refused_even_with_a_good_checksum() {
    let (mut model, _) = small_model();
    model.ngrams[3] = f32::NAN;
    assert_eq!(
        Model::from_bytes(&model.to_bytes()),
        Err(ModelError::NotFinite("ngrams"))
    );
}

#[test]
fn the_shipped_model_parses_and_separates() {
    let model = Model::from_bytes(include_bytes!("../../models/dga.model")).unwrap();
    let shipped = Model::shipped();
    assert_eq!(&model, shipped);
    for benign in [
        "google.com",
        "www.wikipedia.org",
        "mail.yahoo.co.jp",
        "bbc.co.uk",
    ] {
        assert!(
            shipped.score(benign) < 0.2,
            "{benign}: {}",
            shipped.score(benign)
        );
    }
    for generated in ["xjkqpwzvtyr.com", "q8h3zk0v2m9xw.net", "vhzdkqlprswtx.info"] {
        assert!(
            shipped.score(generated) > 0.8,
            "{generated}: {}",
            shipped.score(generated)
        );
    }
}

#[test]
fn corpus_readers_skip_bad_lines_with_a_reason() {
    let (names, skipped) =
        read_names("example.com\n\n# comment\nbad name.com\nco.uk\nwww.bbc.co.uk\n");
    assert_eq!(names, ["example.com", "www.bbc.co.uk"]);
    assert_eq!(skipped.len(), 2);
    assert_eq!((skipped[0].line, skipped[1].line), (4, 5));
    let (generated, skipped) =
        read_generated("zloader\tabcdefgh.com\nx\ti4nlc..com.bn\nbazar\t]`dehl.bazaar\nnotab\n");
    assert_eq!(generated.len(), 1);
    assert_eq!(generated[0].family, "zloader");
    assert_eq!(
        skipped.iter().map(|s| s.reason).collect::<Vec<_>>(),
        [
            "empty label",
            "character not allowed in a DNS name",
            "no tab between family and domain"
        ]
    );
}

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/domains"
);

/// Held-out families of the corpus, scored by models that never saw them (5 folds of
/// families; the figures in docs/detection.md), against the plain n-gram regression.
#[test]
fn corpus_held_out_families() {
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to evaluate on {CORPUS}");
        return;
    }
    let benign = std::fs::read_to_string(format!("{CORPUS}/benign.txt")).unwrap();
    let dga = std::fs::read_to_string(format!("{CORPUS}/dga.tsv")).unwrap();
    let (benign, skipped_benign) = read_names(&benign);
    let (generated, skipped_dga) = read_generated(&dga);
    println!(
        "benign {} ({} skipped), generated {} ({} skipped)",
        benign.len(),
        skipped_benign.len(),
        generated.len(),
        skipped_dga.len()
    );
    assert!(skipped_dga.len() < 3000, "{}", skipped_dga.len());
    let options = EvalOptions::default();
    let eval = evaluate(&benign, &generated, &options);
    let mut plain_options = options.clone();
    plain_options.train.lexical = false;
    let plain = evaluate(&benign, &generated, &plain_options);
    for (i, fold) in eval.folds.iter().enumerate() {
        println!(
            "fold {i}: AUC {:.4} TPR {:.3} at threshold {:.4} ({} dga, {} benign); train loss {:?}, train AUC {:.4}; {:?}",
            fold.auc,
            fold.tpr,
            fold.threshold,
            fold.dga,
            fold.benign,
            fold.training.epoch_log_loss,
            fold.training.train_auc,
            fold.families
        );
    }
    for family in &eval.families {
        println!(
            "{:24} {:5} {:.3} {:.4}",
            family.family, family.names, family.recall, family.auc
        );
    }
    println!(
        "pooled: AUC {:.4}, TPR {:.3} at FPR {:.4} (threshold {:.4}; {} dga, {} benign)",
        eval.auc, eval.tpr, eval.fpr, eval.threshold, eval.dga, eval.benign
    );
    println!(
        "plain n-gram logistic regression, same folds: AUC {:.4}, TPR {:.3} (threshold {:.4})",
        plain.auc, plain.tpr, plain.threshold
    );
    for fold in &eval.folds {
        let loss = &fold.training.epoch_log_loss;
        assert!(loss.last() < loss.first(), "training converges: {loss:?}");
        assert!(fold.training.train_auc > 0.99);
    }
    // Measured: AUC 0.9610, TPR 0.639; the plain regression 0.9389, 0.326.
    assert!(eval.auc >= 0.958, "AUC {}", eval.auc);
    assert!(eval.tpr >= 0.62, "TPR {}", eval.tpr);
    assert!(eval.auc > plain.auc + 0.01 && eval.tpr > plain.tpr + 0.2);
    let recall = |family: &str| {
        eval.families
            .iter()
            .find(|f| f.family == family)
            .map(|f| f.recall)
            .unwrap()
    };
    // Random-letter families are found; see docs/detection.md for those that are not.
    for family in ["murofet", "zloader", "newgoz", "chinad", "tufik"] {
        assert!(recall(family) >= 0.9, "{family}: {}", recall(family));
    }
}
