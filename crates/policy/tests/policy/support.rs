//! Loading helpers shared by the test modules.

use std::path::{Path, PathBuf};

use palisade_policy::Loaded;

/// The repository's shipped example policies.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// Loads a policy from text with list files read from the examples directory.
pub fn load(name: &str, text: &str) -> Result<Loaded, palisade_policy::Invalid> {
    let dir = examples_dir();
    let files =
        move |path: &str| std::fs::read_to_string(dir.join(path)).map_err(|e| e.to_string());
    palisade_policy::load(name, text, &files)
}

/// Loads a policy that must be valid.
pub fn load_ok(name: &str, text: &str) -> Loaded {
    match load(name, text) {
        Ok(loaded) => loaded,
        Err(invalid) => {
            let errors: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
            panic!(
                "{name} should be valid:\n{}\n---\n{text}",
                errors.join("\n")
            )
        }
    }
}
