use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model_file::ModelError;
use crate::pipeline::Observation;

fn connection<'a>(
    agent: &'a str,
    app: &'a str,
    time_ms: i64,
    host: u8,
    bytes_out: u64,
) -> Observation<'a> {
    Observation {
        agent,
        seq: 0,
        time_ms,
        app,
        domain: None,
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host))),
        dst_port: 443,
        inbound: false,
        bytes_out,
        bytes_in: bytes_out * 4,
        update_of: None,
        query_type: None,
        reference: None,
    }
}

/// A mail client: a few connections to one of three servers every window, tens of kilobytes.
fn history(windows: usize, seed: u64) -> Vec<Window> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut built = Windows::default();
    for w in 0..windows {
        let start = w as i64 * WINDOW_MS;
        for c in 0..rng.random_range(2..6) {
            let host = rng.random_range(1..4);
            let bytes = rng.random_range(5_000..40_000);
            built.add(&connection(
                "a1",
                "/usr/bin/mail",
                start + c * 1_000,
                host,
                bytes,
            ));
        }
    }
    built.into_windows()
}

#[test]
fn counts_do_not_depend_on_order() {
    let a = connection("a1", "/usr/bin/curl", 0, 1, 100);
    let b = connection("a1", "/usr/bin/curl", 10, 2, 300);
    let (mut one, mut other) = (WindowCounts::default(), WindowCounts::default());
    one.add(&a);
    one.add(&b);
    other.add(&b);
    other.add(&a);
    assert_eq!(one, other);
    let f = one.features();
    // Two connections, two addresses, one port, 400 bytes out.
    assert_eq!(f[0], 2f64.ln_1p());
    assert_eq!(f[2], 2f64.ln_1p());
    assert_eq!(f[4], 1f64.ln_1p());
    assert_eq!(f[6], 400f64.ln_1p());
}

#[test]
fn an_upload_window_is_anomalous_and_explained_by_its_bytes() {
    let model = fit(&history(600, 1), &TrainSettings::default()).unwrap();
    assert_eq!(model.applications(), 1);
    let usual = history(5, 99);
    for w in &usual {
        let j = model.judge("/usr/bin/mail", &w.features);
        assert!(!j.anomalous(), "a usual window flagged: {j:?}");
    }
    let mut upload = WindowCounts::default();
    upload.add(&connection("a1", "/usr/bin/mail", 0, 2, 20_000));
    upload.add(&connection("a1", "/usr/bin/mail", 0, 2, 200_000_000));
    let j = model.judge("/usr/bin/mail", &upload.features());
    assert!(j.anomalous(), "{j:?}");
    assert_eq!(j.basis, Basis::Application);
    let first = j.drivers.first().unwrap();
    assert!(first.feature.starts_with("bytes_"), "{j:?}");
    assert_eq!(first.value, 200_020_000.0);
    // An application with no profile of its own is judged by the fleet's.
    assert_eq!(
        model.judge("/usr/bin/other", &upload.features()).basis,
        Basis::Fleet
    );
}

#[test]
fn a_model_file_reads_back_the_same_and_damage_is_an_error() {
    let model = fit(&history(200, 2), &TrainSettings::default()).unwrap();
    let bytes = model.encode();
    assert_eq!(Model::decode(&bytes).unwrap(), model);

    let mut flipped = bytes.clone();
    flipped[40] ^= 0x10;
    assert!(matches!(
        Model::decode(&flipped),
        Err(ModelError::Checksum { .. })
    ));
    assert_eq!(
        Model::decode(&bytes[..bytes.len() / 2]),
        Err(ModelError::Checksum {
            stored: u32::from_le_bytes(
                bytes[bytes.len() / 2 - 4..bytes.len() / 2]
                    .try_into()
                    .unwrap()
            ),
            computed: crc32fast::hash(&bytes[..bytes.len() / 2 - 4]),
        })
    );
    let mut foreign = b"PDGA".to_vec();
    foreign.extend_from_slice(&[0; 8]);
    crate::model_file::seal(&mut foreign);
    assert_eq!(Model::decode(&foreign), Err(ModelError::Magic("behaviour")));
}

#[test]
fn a_file_with_a_child_out_of_its_tree_is_refused() {
    let model = fit(&history(200, 3), &TrainSettings::default()).unwrap();
    let mut bytes = model.encode();
    bytes.truncate(bytes.len() - 4);
    // The fleet profile's first tree starts after its header; its root is a split whose right
    // child index is the 4 bytes after tag, feature and threshold.
    let forest_at = 4 + 4 + 4 + 2 + 4 + 8 + 2 * 8 * FEATURES.len();
    let root = forest_at + 2 + 8 + 8 + 4 + 2 * 8 * FEATURES.len() + 4;
    assert_eq!(bytes[root], 1, "the root splits");
    bytes[root + 11..root + 15].copy_from_slice(&u32::MAX.to_le_bytes());
    crate::model_file::seal(&mut bytes);
    assert_eq!(Model::decode(&bytes), Err(ModelError::Field("tree split")));
}

#[test]
fn a_candidate_worse_than_the_current_model_is_not_promoted() {
    let windows = history(1_000, 4);
    let first = train(&windows, None, &TrainSettings::default()).unwrap();
    assert!(first.promote, "{}", first.reason);
    let auc = first.evaluation.auc.unwrap();
    assert!(auc > 0.95, "{:?}", first.evaluation);
    assert!(first.evaluation.flagged <= 0.01, "{:?}", first.evaluation);

    let poor = TrainSettings {
        trees: 1,
        subsample: 4,
        ..TrainSettings::default()
    };
    let second = train(&windows, Some(&first.model), &poor).unwrap();
    assert!(
        !second.promote,
        "{:?} vs {:?}",
        second.evaluation, second.current
    );
    assert!(second.reason.contains("below"), "{}", second.reason);

    assert_eq!(
        train(&windows[..10], None, &TrainSettings::default()).unwrap_err(),
        TrainError::TooFew {
            found: 10,
            needed: 128
        }
    );
}
