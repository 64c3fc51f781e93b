//! Where configuration comes from: the environment prefix, the default file's path and the
//! default file compiled in.

/// The prefix of overriding environment variables, followed by `__`.
pub const ENV_PREFIX: &str = "SILENTAUTH";

/// Where [`Config::load`] looks for a config file when none is given, relative to the working
/// directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// The documented default configuration, compiled in; used when [`DEFAULT_CONFIG_PATH`] is absent.
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../../config/default.toml");
