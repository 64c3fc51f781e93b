//! What `replay-dlq` was asked to do: the command-line arguments as text ([`ReplayArgs`]), checked
//! and typed ([`ReplayOptions`]), and the errors a replay ends with ([`ReplayError`]).

use crate::contract::ErrorClass;
use crate::kafka::producer::ProduceFailure;
use chrono::{DateTime, Utc};
use rdkafka::error::KafkaError;

/// `--max-replays` when not given (docs/contract.md).
pub const DEFAULT_MAX_REPLAYS: u32 = 3;

/// The arguments of `silentauth-worker replay-dlq` as typed on the command line, before any check.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplayArgs {
    /// Only dead letters of this error class (repeatable, or comma separated).
    #[arg(long = "class", value_name = "CLASS", value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Only dead letters that failed at or after this time: RFC 3339, or a duration ago (2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only dead letters that failed before this time: RFC 3339, or a duration ago (30m).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Stop after this many selected dead letters (the rest stays for the next run).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Target topic (default topics.jobs).
    #[arg(long, value_name = "TOPIC")]
    pub to: Option<String>,
    /// Dead letters already replayed this many times are not re-published [default: 3].
    #[arg(long, value_name = "N")]
    pub max_replays: Option<u32>,
    /// Move dead letters that reached --max-replays, and those whose code is spent
    /// (dlq.code_spent: never re-published), to this topic, unchanged.
    #[arg(long, value_name = "TOPIC")]
    pub park: Option<String>,
    /// At most this many re-published records per second.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Read and count only: publish nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Ignore the replay group's position and start at the beginning of the topic.
    #[arg(long)]
    pub from_beginning: bool,
}

/// A checked replay request: what [`super::replay`] runs.
///
/// Build it with [`ReplayOptions::from_args`] (the command line) or by hand (tests); `replay`
/// checks it again, so a hand-built one with, say, `max_replays = 0` is refused the same way.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Only dead letters of these classes; empty means every class (and unreadable ones).
    pub classes: Vec<ErrorClass>,
    /// Only dead letters that failed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only dead letters that failed before this time.
    pub until: Option<DateTime<Utc>>,
    /// Stop after this many selected records.
    pub limit: Option<u64>,
    /// The target topic; `topics.jobs` when `None`.
    pub to: Option<String>,
    /// Records whose `dlq.replay_count` reached this are not re-published (at least 1).
    pub max_replays: u32,
    /// Where records that reached `max_replays`, or whose code is spent, are moved, unchanged.
    pub park: Option<String>,
    /// Re-published records per second, at most.
    pub rate: Option<f64>,
    /// Read and count only: publish nothing, commit nothing.
    pub dry_run: bool,
    /// Start at each partition's low watermark instead of the replay group's position.
    pub from_beginning: bool,
    /// Draw a progress bar on stderr (only ever drawn on a terminal).
    pub progress: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            classes: Vec::new(),
            since: None,
            until: None,
            limit: None,
            to: None,
            max_replays: DEFAULT_MAX_REPLAYS,
            park: None,
            rate: None,
            dry_run: false,
            from_beginning: false,
            progress: false,
        }
    }
}

/// Why a replay stopped: the caller's mistake (exit 2) or the broker's failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An argument is wrong; nothing was read or written.
    #[error("{argument}: {message}")]
    BadArgument {
        /// The argument or config key, e.g. `--class` or `topics.dead_letter`.
        argument: String,
        /// What is wrong with it.
        message: String,
    },
    /// The brokers failed after retries. What was acknowledged before is committed; a rerun
    /// re-publishes at most the unacknowledged tail.
    #[error("kafka: {what}: {source}")]
    Broker {
        /// What the replay was doing.
        what: String,
        /// The client's error.
        source: KafkaError,
    },
    /// A re-published record was not acknowledged at an offset after every attempt. Nothing
    /// past it is committed; a rerun sends it again.
    #[error("kafka: producing to {topic}: {source}")]
    Produce {
        /// The topic written to.
        topic: String,
        /// Why the last attempt is not known to be stored.
        source: ProduceFailure,
    },
}

impl ReplayError {
    /// The process exit code: 2 for a bad argument, 1 for a broker failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::BadArgument { .. } => 2,
            ReplayError::Broker { .. } | ReplayError::Produce { .. } => 1,
        }
    }

    pub(crate) fn bad(argument: &str, message: impl Into<String>) -> ReplayError {
        ReplayError::BadArgument {
            argument: argument.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn broker(what: impl Into<String>, source: KafkaError) -> ReplayError {
        ReplayError::Broker {
            what: what.into(),
            source,
        }
    }
}

impl ReplayOptions {
    /// Checks and types the command-line arguments; relative times are taken back from now.
    /// The progress bar is on; it only draws on a terminal.
    pub fn from_args(args: ReplayArgs) -> Result<ReplayOptions, ReplayError> {
        let now = Utc::now();
        let mut classes = Vec::new();
        for name in &args.classes {
            let class = ErrorClass::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
                ReplayError::bad(
                    "--class",
                    format!(
                        "unknown class {name:?}; expected one of {}",
                        known.join(", ")
                    ),
                )
            })?;
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        let opts = ReplayOptions {
            classes,
            since: parse_time("--since", args.since.as_deref(), now)?,
            until: parse_time("--until", args.until.as_deref(), now)?,
            limit: args.limit,
            to: args.to,
            max_replays: args.max_replays.unwrap_or(DEFAULT_MAX_REPLAYS),
            park: args.park,
            rate: args.rate,
            dry_run: args.dry_run,
            from_beginning: args.from_beginning,
            progress: true,
        };
        opts.validate()?;
        Ok(opts)
    }

    /// The checks that need no broker; [`super::replay`] runs them first.
    pub fn validate(&self) -> Result<(), ReplayError> {
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(ReplayError::bad(
                    "--since",
                    format!(
                        "{} is not before --until {}",
                        since.to_rfc3339(),
                        until.to_rfc3339()
                    ),
                ));
            }
        }
        if self.max_replays == 0 {
            return Err(ReplayError::bad(
                "--max-replays",
                "must be at least 1 (0 would never re-publish anything)",
            ));
        }
        if self.limit == Some(0) {
            return Err(ReplayError::bad("--limit", "must be at least 1"));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ReplayError::bad("--rate", "must be a positive number"));
            }
        }
        for (arg, topic) in [("--to", &self.to), ("--park", &self.park)] {
            if topic.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(ReplayError::bad(arg, "must name a topic"));
            }
        }
        Ok(())
    }
}

/// An RFC 3339 time, or a humantime duration (`90m`, `2h`, `1day`) meaning that long before `now`.
fn parse_time(
    argument: &str,
    text: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ReplayError> {
    let Some(text) = text.map(str::trim) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        ReplayError::bad(
            argument,
            format!("{text:?} is neither an RFC 3339 time nor a duration such as 2h"),
        )
    })?;
    let ago = chrono::Duration::from_std(ago)
        .map_err(|_| ReplayError::bad(argument, format!("{text:?} is too long ago")))?;
    now.checked_sub_signed(ago)
        .map(Some)
        .ok_or_else(|| ReplayError::bad(argument, format!("{text:?} is too long ago")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ReplayArgs {
        ReplayArgs::default()
    }

    fn argument_of(r: Result<ReplayOptions, ReplayError>) -> String {
        match r {
            Err(ReplayError::BadArgument { argument, .. }) => argument,
            other => panic!("expected a bad argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = ReplayOptions::from_args(args()).unwrap();
        assert_eq!(o.max_replays, 3);
        assert!(o.classes.is_empty() && o.since.is_none() && !o.dry_run);
    }

    #[test]
    fn classes_are_the_contract_names() {
        let mut a = args();
        a.classes = vec!["upstream_unavailable".into(), "rate_limited".into()];
        let o = ReplayOptions::from_args(a).unwrap();
        assert_eq!(
            o.classes,
            vec![ErrorClass::UpstreamUnavailable, ErrorClass::RateLimited]
        );
        let mut a = args();
        a.classes = vec!["upstream-unavailable".into()];
        let err = ReplayOptions::from_args(a).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("--class: unknown class"));
        assert!(err.to_string().contains("upstream_unavailable"));
    }

    #[test]
    fn times_are_rfc3339_or_relative() {
        let mut a = args();
        a.since = Some("2h".into());
        a.until = Some("2026-01-01T00:00:00+01:00".into());
        let before = Utc::now();
        let o = ReplayOptions::from_args(ReplayArgs {
            until: None,
            ..a.clone()
        })
        .unwrap();
        let since = o.since.unwrap();
        assert!(since <= before - chrono::Duration::hours(2) + chrono::Duration::seconds(5));
        assert!(since >= before - chrono::Duration::hours(2) - chrono::Duration::seconds(5));
        a.since = Some("2025-12-31T22:00:00Z".into());
        let o = ReplayOptions::from_args(a).unwrap();
        assert_eq!(o.until.unwrap().to_rfc3339(), "2025-12-31T23:00:00+00:00");
        let mut a = args();
        a.until = Some("yesterday-ish".into());
        assert_eq!(argument_of(ReplayOptions::from_args(a)), "--until");
    }

    #[test]
    fn inverted_range_names_since() {
        let mut a = args();
        a.since = Some("1h".into());
        a.until = Some("2h".into());
        assert_eq!(argument_of(ReplayOptions::from_args(a)), "--since");
    }

    #[test]
    fn numbers_are_checked() {
        let a = ReplayArgs {
            max_replays: Some(0),
            ..args()
        };
        assert_eq!(argument_of(ReplayOptions::from_args(a)), "--max-replays");
        let a = ReplayArgs {
            limit: Some(0),
            ..args()
        };
        assert_eq!(argument_of(ReplayOptions::from_args(a)), "--limit");
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let a = ReplayArgs {
                rate: Some(rate),
                ..args()
            };
            assert_eq!(argument_of(ReplayOptions::from_args(a)), "--rate");
        }
        let a = ReplayArgs {
            park: Some(" ".into()),
            ..args()
        };
        assert_eq!(argument_of(ReplayOptions::from_args(a)), "--park");
    }
}
