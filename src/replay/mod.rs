//! `replay-dlq`: re-publishes dead letters (docs/contract.md) to the jobs topic, filtered by class
//! and failure time, with `dlq.replay_count` incremented and the dead letter's headers kept as
//! `dlq.previous.*`.
//!
//! Safety rests on three rules:
//! - it reads only up to the end offsets captured when it starts, so it never chases what it
//!   writes (or what the worker dead-letters meanwhile);
//! - it commits the position of its own group (`<kafka.group_id>.replay`) synchronously, and only
//!   after every record it re-published or parked up to there is acknowledged (idempotent
//!   producer, `acks=all`): a crash loses and skips nothing, at worst it re-publishes the
//!   unacknowledged tail again;
//! - every argument, and every topic it will touch, is checked before it reads anything.
//!
//! Records whose replay count reached `--max-replays` are held back (or moved to `--park`), so a
//! job that keeps failing cannot circulate forever; so are records whose single-use code is spent
//! (`dlq.code_spent`, or a failure after the token call), whatever their count: presenting such a
//! code again can only fail.

mod options;
mod record;
mod report;
mod sink;
mod source;

pub use options::{ReplayArgs, ReplayError, ReplayOptions, DEFAULT_MAX_REPLAYS};
pub use record::{Decision, Inspected, RawHeaders, PREVIOUS_PREFIX};
pub use report::{ClassCounts, ReplayReport};
pub use source::replay_group;

use crate::config::Config;
use crate::telemetry::traces;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use sink::{Outgoing, Sink};
use source::Source;
use std::collections::{BTreeMap, HashMap};
use tokio_util::sync::CancellationToken;

/// Records handled between two commits.
pub const COMMIT_EVERY: usize = 500;

/// Replays the dead-letter topic of `config` as `opts` says, until done, `--limit`, or `cancel`.
///
/// Errors: [`ReplayError::BadArgument`] before anything is read (exit 2);
/// [`ReplayError::Broker`] when the brokers fail after retries (exit 1), after committing what
/// was acknowledged.
pub async fn replay(
    config: &Config,
    opts: &ReplayOptions,
    cancel: CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    opts.validate()?;
    let dlq = config.topics.dead_letter.clone();
    let (target_arg, target) = match &opts.to {
        Some(t) => ("--to", t.clone()),
        None => ("topics.jobs", config.topics.jobs.clone()),
    };
    if target == dlq {
        return Err(ReplayError::bad(
            target_arg,
            format!("{target:?} is the dead-letter topic itself"),
        ));
    }
    if let Some(park) = &opts.park {
        if *park == dlq || *park == target {
            return Err(ReplayError::bad(
                "--park",
                format!("{park:?} must differ from the dead-letter and the target topic"),
            ));
        }
    }

    let source = Source::new(config)?;
    let mut checks = vec![("topics.dead_letter", dlq.as_str()), (target_arg, &target)];
    if let Some(park) = &opts.park {
        checks.push(("--park", park));
    }
    let partitions = source.check_topics(&checks).await?;
    let ranges = source.plan(&partitions, opts.from_beginning).await?;
    let mut sink = match opts.dry_run {
        true => None,
        false => Some(Sink::new(config, opts.rate)?),
    };
    let total: u64 = ranges.iter().map(|r| (r.end - r.start) as u64).sum();
    tracing::info!(topic = %dlq, group = source.group(), to = %target, records = total, dry_run = opts.dry_run, "replay started");

    let mut run = Run {
        opts,
        target,
        report: ReplayReport {
            dry_run: opts.dry_run,
            max_replays: opts.max_replays,
            parking: opts.park.is_some(),
            ..ReplayReport::default()
        },
        ends: ranges
            .iter()
            .filter(|r| r.start < r.end)
            .map(|r| (r.partition, r.end))
            .collect(),
        positions: BTreeMap::new(),
        selected: 0,
        poisoned: false,
        bar: progress_bar(opts.progress, total),
    };
    if !run.ends.is_empty() {
        source.assign(&ranges)?;
    }
    let read = run.read(&source, sink.as_mut(), &cancel, config).await;
    // Whatever stopped the reading, settle and commit what was handled.
    let committed = run.checkpoint(&source, sink.as_mut()).await;
    run.bar.finish_and_clear();
    read.and(committed)?;
    let t = run.report.totals();
    tracing::info!(
        read = t.read,
        selected = t.selected,
        republished = t.republished,
        parked = t.parked,
        held = t.held,
        code_spent = t.code_spent,
        "replay finished"
    );
    Ok(run.report)
}

/// The state of one replay run.
struct Run<'a> {
    opts: &'a ReplayOptions,
    target: String,
    report: ReplayReport,
    /// Partitions still being read, with their end offsets.
    ends: HashMap<i32, i64>,
    /// Next offset to read per partition, handled but not yet committed.
    positions: BTreeMap<i32, i64>,
    /// Selected records so far (for `--limit`).
    selected: u64,
    /// A record was not acknowledged: nothing may be committed any more.
    poisoned: bool,
    bar: ProgressBar,
}

/// What reading the dead-letter topic gave.
enum Next {
    /// Stop reading: cancelled.
    Stop,
    /// Nothing to handle this time (an error logged, a partition finished).
    Again,
    /// A record below its partition's end.
    Record(Fetched),
}

/// A dead letter copied out of the consumer's buffer.
struct Fetched {
    partition: i32,
    offset: i64,
    headers: RawHeaders,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// The record's own timestamp, in milliseconds.
    record_ms: Option<i64>,
}

impl Run<'_> {
    /// Reads, decides and sends until every partition reached its end, `--limit`, or `cancel`;
    /// commits every [`COMMIT_EVERY`] records handled.
    async fn read(
        &mut self,
        source: &Source,
        mut sink: Option<&mut Sink>,
        cancel: &CancellationToken,
        config: &Config,
    ) -> Result<(), ReplayError> {
        let mut handled = 0usize;
        while !self.ends.is_empty() {
            if self.opts.limit.is_some_and(|l| self.selected >= l) {
                self.report.limit_reached = true;
                break;
            }
            let record = match self.next(source, cancel, config).await? {
                Next::Stop => break,
                Next::Again => continue,
                Next::Record(r) => r,
            };
            if !self.handle(record, sink.as_deref_mut(), cancel).await? {
                break;
            }
            handled += 1;
            if handled % COMMIT_EVERY == 0 {
                self.checkpoint(source, sink.as_deref_mut()).await?;
            }
        }
        Ok(())
    }

    /// The next record below its partition's end; finishes the partitions that reached theirs.
    /// An error when nothing arrives for `kafka.connect_timeout`.
    async fn next(
        &mut self,
        source: &Source,
        cancel: &CancellationToken,
        config: &Config,
    ) -> Result<Next, ReplayError> {
        let idle = config.kafka.connect_timeout;
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                self.report.interrupted = true;
                return Ok(Next::Stop);
            }
            r = tokio::time::timeout(idle, source.recv()) => r,
        };
        let m = match next {
            Err(_) => {
                return Err(ReplayError::broker(
                    format!(
                        "reading {}: nothing received for {idle:?} (kafka.connect_timeout)",
                        config.topics.dead_letter
                    ),
                    KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                ))
            }
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                // Nothing more to read below `end` now: only control records, or records
                // of transactions still open (read_committed stops at the last stable
                // offset). The position stays after the last record handled, so the next
                // run reads what those transactions commit.
                self.ends.remove(&p);
                return Ok(Next::Again);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error while replaying");
                return Ok(Next::Again);
            }
            Ok(Ok(m)) => m,
        };
        let (partition, offset) = (m.partition(), m.offset());
        let Some(&end) = self.ends.get(&partition) else {
            return Ok(Next::Again);
        };
        if offset >= end {
            self.ends.remove(&partition);
            self.positions.insert(partition, end);
            return Ok(Next::Again);
        }
        let headers: RawHeaders = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Next::Record(Fetched {
            partition,
            offset,
            headers,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            record_ms: m.timestamp().to_millis(),
        }))
    }

    /// Decides what to do with `record`, counts it, and sends it where it goes (nothing in a
    /// dry run); its position is then handled. False when `cancel` came while waiting for
    /// room to send (the record is not handled).
    async fn handle(
        &mut self,
        record: Fetched,
        sink: Option<&mut Sink>,
        cancel: &CancellationToken,
    ) -> Result<bool, ReplayError> {
        let dl = Inspected::new(&record.headers, record.record_ms, record.value.as_deref());
        let decision = dl.decide(self.opts);
        if let (Decision::Republish, Some(s)) = (decision, sink.as_deref()) {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.report.interrupted = true;
                    return Ok(false);
                }
                _ = s.ready() => {}
            }
        }
        let (partition, offset) = (record.partition, record.offset);
        let out = self.route(decision, &dl, record);
        if let (Some(out), Some(s)) = (out, sink) {
            s.send(out).await?;
        }
        self.positions.insert(partition, offset + 1);
        if self
            .ends
            .get(&partition)
            .is_some_and(|&end| offset + 1 >= end)
        {
            self.ends.remove(&partition);
        }
        self.bar.inc(1);
        Ok(true)
    }

    /// Counts `record` under its class and `decision`, and returns where it goes: the target
    /// topic with the replay headers, the park topic as it is, or nowhere.
    fn route(&mut self, decision: Decision, dl: &Inspected, record: Fetched) -> Option<Outgoing> {
        let counts = self.report.entry(&dl.class_label);
        counts.read += 1;
        counts.garbled += dl.garbled() as u64;
        let out = match decision {
            Decision::Skip => {
                counts.skipped += 1;
                None
            }
            Decision::Republish => {
                counts.selected += 1;
                counts.republished += 1;
                let mut headers = dl.replay_headers(&record.headers);
                let _span = traces::replay_span(&mut headers, record.partition, record.offset);
                Some(Outgoing {
                    topic: self.target.clone(),
                    key: record.key,
                    value: record.value,
                    headers,
                    timestamp: dl.original_timestamp(),
                })
            }
            Decision::AtMaxReplays | Decision::CodeSpent => {
                counts.selected += 1;
                let park = self.opts.park.as_ref();
                match (decision, park) {
                    (Decision::CodeSpent, _) => counts.code_spent += 1,
                    (_, Some(_)) => counts.parked += 1,
                    (_, None) => counts.held += 1,
                }
                park.map(|park| Outgoing {
                    topic: park.clone(),
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                    timestamp: record.record_ms,
                })
            }
        };
        if decision != Decision::Skip {
            self.selected += 1;
        }
        out
    }

    /// Waits for every pending record's acknowledgement, then commits the positions. Commits
    /// nothing when a record failed, and nothing in a dry run.
    async fn checkpoint(
        &mut self,
        source: &Source,
        sink: Option<&mut Sink>,
    ) -> Result<(), ReplayError> {
        let Some(sink) = sink else {
            return Ok(()); // dry run
        };
        if self.poisoned {
            return Ok(());
        }
        if let Err(e) = sink.settle().await {
            self.poisoned = true;
            return Err(e);
        }
        source.commit(&self.positions).await?;
        self.positions.clear();
        Ok(())
    }
}

/// A progress bar on stderr when `enabled` and stderr is a terminal; hidden otherwise.
fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} replaying {pos}/{len} dead letters [{bar:40}] {per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
