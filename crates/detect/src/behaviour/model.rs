//! The fitted behaviour model, its judgements and explanations, and its file format.
//!
//! One profile per application with enough history, and one over the whole fleet for the
//! applications without: an isolation forest over the window features, the score above which
//! a window is anomalous, and the median and MAD of each feature (the baseline an explanation
//! compares with).
//!
//! File format (little endian), version 1:
//!
//! ```text
//! magic "PBEH" | version u32 | profile count u32 (the fleet profile first)
//! per profile: application (u16 length, UTF-8; "" for the fleet) | windows u32 |
//!              threshold f64 | 8 medians f64 | 8 MADs f64 (of the features) |
//!              isolation forest
//! isolation forest: features u16 | normaliser f64 | least box width f64 (negative: no box
//!                   rule) | trees u32 | per tree: box (each
//!                   feature's lowest, then each one's highest value, f64) | nodes u32 | per
//!                   node 0 + leaf size u32, or 1 + feature u16 + threshold f64 + right u32
//! CRC-32 (IEEE) of everything before it, u32
//! ```
//!
//! Nothing may follow the checksum; every number must be finite.

use serde::Serialize;

use super::window::{FEATURES, Features};
use crate::iforest::IsolationForest;
use crate::model_file::{ModelError, Reader, put_text, seal, unseal};

const MAGIC: &[u8; 4] = b"PBEH";
const VERSION: u32 = 1;
/// The most profiles a file may hold.
const MAX_PROFILES: u32 = 100_000;
/// MAD times this estimates the standard deviation of normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The least spread a feature is given in an explanation (in log units), so that a feature that
/// never varied does not make every small change look infinite.
const MIN_SPREAD: f64 = 0.25;
/// How many features an explanation names.
const DRIVERS: usize = 3;

/// Per-application isolation forests over five-minute windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub(crate) fleet: Profile,
    /// Sorted by application.
    pub(crate) apps: Vec<Profile>,
}

/// What is known of one application (or of the fleet).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Profile {
    pub app: String,
    /// Windows it was fitted on.
    pub windows: u32,
    pub forest: IsolationForest,
    /// Scores above this are anomalous.
    pub threshold: f64,
    pub median: Features,
    pub mad: Features,
}

/// Which profile judged a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The application's own history.
    Application,
    /// The fleet's, for an application with too little history of its own.
    Fleet,
}

/// The model's view of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// Isolation forest score in [0, 1].
    pub score: f64,
    /// The profile's threshold; above it the window is anomalous.
    pub threshold: f64,
    /// Which profile.
    pub basis: Basis,
    /// Windows that profile was fitted on.
    pub trained_windows: u32,
    /// The features furthest from their baseline, furthest first; empty when the window is
    /// not anomalous (nobody reads why an ordinary window is ordinary, and every window is
    /// judged).
    pub drivers: Vec<Driver>,
}

impl Judgement {
    /// Whether the window is anomalous.
    pub fn anomalous(&self) -> bool {
        self.score > self.threshold
    }
}

/// One feature of a window beside its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Driver {
    /// The feature's name.
    pub feature: &'static str,
    /// Its value in the window (a count or bytes).
    pub value: f64,
    /// Its median in the windows the profile was fitted on.
    pub baseline: f64,
    /// How far from the baseline, in robust standard deviations of its logarithm (negative:
    /// below).
    pub deviations: f64,
}

impl Model {
    /// Judges one window of `app`: by its own profile when it has one, else by the fleet's.
    pub fn judge(&self, app: &str, features: &Features) -> Judgement {
        let (profile, basis) = match self.apps.binary_search_by(|p| p.app.as_str().cmp(app)) {
            Ok(i) => match self.apps.get(i) {
                Some(profile) => (profile, Basis::Application),
                None => (&self.fleet, Basis::Fleet),
            },
            Err(_) => (&self.fleet, Basis::Fleet),
        };
        let score = profile.forest.score(features);
        Judgement {
            score,
            threshold: profile.threshold,
            basis,
            trained_windows: profile.windows,
            drivers: if score > profile.threshold {
                profile.drivers(features)
            } else {
                Vec::new()
            },
        }
    }

    /// How many applications have a profile of their own.
    pub fn applications(&self) -> usize {
        self.apps.len()
    }

    /// Windows the fleet profile was fitted on (every training window).
    pub fn windows(&self) -> u32 {
        self.fleet.windows
    }

    /// The model as a file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let count = u32::try_from(self.apps.len() + 1).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for profile in std::iter::once(&self.fleet).chain(&self.apps) {
            put_text(&mut out, &profile.app);
            out.extend_from_slice(&profile.windows.to_le_bytes());
            out.extend_from_slice(&profile.threshold.to_le_bytes());
            for x in profile.median.iter().chain(&profile.mad) {
                out.extend_from_slice(&x.to_le_bytes());
            }
            profile.forest.encode(&mut out);
        }
        seal(&mut out);
        out
    }

    /// Reads a model file; a damaged, truncated or foreign file is an error.
    pub fn decode(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader::new(unseal(bytes)?);
        r.header(MAGIC, "behaviour", VERSION)?;
        let count = r.u32("profile count")?;
        if count == 0 || count > MAX_PROFILES {
            return Err(ModelError::Field("profile count"));
        }
        let mut profiles = Vec::new();
        for _ in 0..count {
            let app = r.text("profile application")?;
            let windows = r.u32("profile windows")?;
            let threshold = r.f64("profile threshold")?;
            let mut median = [0.0; FEATURES.len()];
            for x in &mut median {
                *x = r.f64("profile medians")?;
            }
            let mut mad = [0.0; FEATURES.len()];
            for x in &mut mad {
                *x = r.f64("profile MADs")?;
            }
            let forest = IsolationForest::decode(&mut r)?;
            if forest.features() != FEATURES.len() {
                return Err(ModelError::Field("forest features"));
            }
            profiles.push(Profile {
                app,
                windows,
                forest,
                threshold,
                median,
                mad,
            });
        }
        r.finish()?;
        let mut profiles = profiles.into_iter();
        let fleet = profiles.next().ok_or(ModelError::Field("profile count"))?;
        let apps: Vec<Profile> = profiles.collect();
        if !fleet.app.is_empty()
            || apps
                .windows(2)
                .any(|pair| matches!(pair, [a, b] if a.app >= b.app))
            || apps.first().is_some_and(|p| p.app.is_empty())
        {
            return Err(ModelError::Field("profile application"));
        }
        Ok(Model { fleet, apps })
    }
}

impl Profile {
    /// The features furthest from this profile's medians.
    fn drivers(&self, features: &Features) -> Vec<Driver> {
        let mut drivers: Vec<Driver> = FEATURES
            .iter()
            .zip(features)
            .zip(self.median.iter().zip(&self.mad))
            .map(|((&feature, &x), (&median, &mad))| {
                let spread = (mad * MAD_TO_SIGMA).max(MIN_SPREAD);
                Driver {
                    feature,
                    value: x.exp_m1().round(),
                    baseline: median.exp_m1().round(),
                    deviations: (x - median) / spread,
                }
            })
            .collect();
        drivers.sort_by(|a, b| b.deviations.abs().total_cmp(&a.deviations.abs()));
        drivers.truncate(DRIVERS);
        drivers
    }
}
