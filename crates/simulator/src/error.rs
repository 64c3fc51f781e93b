//! Why a scenario could not be loaded: the one error type of scenario parsing and validation,
//! shared by the scenario and the rules it is made of.

use std::path::PathBuf;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not valid TOML for a scenario (unknown keys are refused).
    #[error("invalid scenario TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent; the message names the key.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}
