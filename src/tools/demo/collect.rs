//! The demo's Kafka ends: a producer that publishes the jobs as fast as the broker takes them,
//! and a reader of the results and dead-letter topics that shows progress while it waits.

use super::plan::Record;
use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use silentauth_worker::contract::JobResult;
use silentauth_worker::telemetry::counters::WorkerCounters;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// When each record was handed to the producer.
#[derive(Debug)]
pub struct Published {
    /// First send.
    pub first: Instant,
    /// Last acknowledgement.
    pub last_ack: Instant,
    /// Records published.
    pub records: usize,
    /// First send time per key.
    pub sent_at: HashMap<String, Instant>,
}

/// The demo's producer of jobs (idempotent, like a well-behaved upstream service).
pub struct JobPublisher {
    producer: FutureProducer,
}

impl JobPublisher {
    /// A producer for `bootstrap`.
    pub fn new(bootstrap: &str) -> anyhow::Result<JobPublisher> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("message.timeout.ms", "30000")
            .set("client.id", "silentauth-demo-publisher")
            .create()
            .context("cannot create the demo's producer")?;
        Ok(JobPublisher { producer })
    }

    /// Publishes one record to `topic` (not the jobs topic) so the producer's connection and
    /// idempotent producer id are set up before the timed run.
    pub async fn warm_up(&self, topic: &str) -> anyhow::Result<()> {
        let record = FutureRecord::<[u8], [u8]>::to(topic).payload(b"warm-up".as_slice());
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => Ok(()),
            Err((e, _)) => bail!("cannot publish to the embedded cluster: {e}"),
        }
    }

    /// Publishes `records` to `topic` with up to the producer's queue in flight, and waits for
    /// every acknowledgement.
    pub async fn publish(&self, topic: &str, records: &[Record]) -> anyhow::Result<Published> {
        let producer = &self.producer;
        let mut pending = FuturesUnordered::new();
        let mut sent_at = HashMap::with_capacity(records.len());
        let first = Instant::now();
        for r in records {
            let mut headers = OwnedHeaders::new();
            if let Some(tp) = &r.traceparent {
                headers = headers.insert(Header {
                    key: "traceparent",
                    value: Some(tp.as_bytes()),
                });
            }
            let mut record = FutureRecord::to(topic)
                .key(r.key.as_bytes())
                .payload(r.payload.as_slice())
                .headers(headers);
            loop {
                sent_at.entry(r.key.clone()).or_insert_with(Instant::now);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // Let the broker catch up before queueing more.
                        match pending.next().await {
                            Some(d) => check(d)?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => bail!("cannot publish a job: {e}"),
                }
            }
        }
        while let Some(d) = pending.next().await {
            check(d)?;
        }
        Ok(Published {
            first,
            last_ack: Instant::now(),
            records: records.len(),
            sent_at,
        })
    }
}

fn check(
    d: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> anyhow::Result<()> {
    match d {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!("a job was not acknowledged by the broker: {e}"),
        Err(_) => bail!("the demo's producer stopped before acknowledging a job"),
    }
}

/// A result read back, with the `traceparent` header it carried.
#[derive(Debug, Clone)]
pub struct SeenResult {
    /// The result.
    pub result: JobResult,
    /// Its `traceparent` header.
    pub traceparent: Option<String>,
    /// When the demo read it.
    pub at: Instant,
}

/// A dead letter read back.
#[derive(Debug, Clone)]
pub struct SeenDeadLetter {
    /// `dlq.error.class`.
    pub class: Option<String>,
    /// Its `traceparent` header.
    pub traceparent: Option<String>,
    /// The record's value (the original job bytes, unchanged).
    pub value: Vec<u8>,
}

/// Everything read from the results and dead-letter topics.
#[derive(Debug, Default)]
pub struct Received {
    /// Results by `job_id`.
    pub results: HashMap<String, Vec<SeenResult>>,
    /// Dead letters by key (lossy UTF-8; `""` without a key).
    pub dead_letters: HashMap<String, Vec<SeenDeadLetter>>,
    /// Records on the results topic that are not Result v1 JSON.
    pub unreadable_results: usize,
    /// Results read.
    pub result_count: u64,
    /// Dead letters read.
    pub dead_letter_count: u64,
    /// When the last result was read.
    pub last_result: Option<Instant>,
    /// True when the timeout ended the wait.
    pub timed_out: bool,
}

/// Reads the results and dead-letter topics from the beginning, without a consumer group
/// (explicit assignment: no rebalance delay).
pub struct Collector {
    consumer: StreamConsumer,
    results_topic: String,
}

impl Collector {
    /// A reader of every partition of both topics.
    pub fn new(
        bootstrap: &str,
        results: (&str, i32),
        dead_letters: (&str, i32),
    ) -> anyhow::Result<Collector> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "silentauth-demo-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // The mock broker holds a fetch for the full wait even when records arrive
            // meanwhile: a short wait keeps the end-to-end latency measurement honest.
            .set("fetch.wait.max.ms", "10")
            .set("client.id", "silentauth-demo-reader")
            .create()
            .context("cannot create the demo's reader")?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in [results, dead_letters] {
            for p in 0..partitions {
                tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            }
        }
        consumer
            .assign(&tpl)
            .context("cannot assign the demo's reader")?;
        Ok(Collector {
            consumer,
            results_topic: results.0.to_owned(),
        })
    }

    /// Reads until `want_results` results and `want_dead_letters` dead letters arrived (then a
    /// short grace for anything unexpected), or until `deadline`.
    pub async fn collect(
        &self,
        want_results: u64,
        want_dead_letters: u64,
        deadline: Instant,
        counters: &dyn WorkerGauges,
    ) -> Received {
        let mut got = Received::default();
        let progress = Progress::new(want_results, counters);
        let mut grace_until: Option<Instant> = None;
        loop {
            let complete =
                got.result_count >= want_results && got.dead_letter_count >= want_dead_letters;
            if complete && grace_until.is_none() {
                grace_until = Some(Instant::now() + Duration::from_millis(500));
            }
            let until = grace_until.unwrap_or(deadline).min(deadline);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                got.timed_out = !complete;
                break;
            }
            let wait = left.min(Duration::from_millis(250));
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "demo reader error");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Ok(m)) => {
                    let traceparent = header(&m, "traceparent");
                    if m.topic() == self.results_topic {
                        match m
                            .payload()
                            .and_then(|p| serde_json::from_slice::<JobResult>(p).ok())
                        {
                            Some(result) => {
                                got.result_count += 1;
                                got.last_result = Some(Instant::now());
                                got.results.entry(result.job_id.clone()).or_default().push(
                                    SeenResult {
                                        result,
                                        traceparent,
                                        at: Instant::now(),
                                    },
                                );
                            }
                            None => got.unreadable_results += 1,
                        }
                    } else {
                        got.dead_letter_count += 1;
                        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                        got.dead_letters
                            .entry(key)
                            .or_default()
                            .push(SeenDeadLetter {
                                class: header(&m, "dlq.error.class"),
                                traceparent,
                                value: m.payload().unwrap_or_default().to_vec(),
                            });
                    }
                }
            }
            progress.update(got.result_count, got.dead_letter_count);
        }
        progress.finish(got.result_count, got.dead_letter_count);
        got
    }
}

fn header<M: Message>(m: &M, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// What the progress line shows of the running worker.
pub trait WorkerGauges: Sync {
    /// Its jobs in flight now.
    fn in_flight(&self) -> u64;
    /// Its HTTP requests so far.
    fn http_requests(&self) -> u64;
}

impl WorkerGauges for WorkerCounters {
    fn in_flight(&self) -> u64 {
        WorkerCounters::get(&self.in_flight)
    }

    fn http_requests(&self) -> u64 {
        WorkerCounters::get(&self.http_requests)
    }
}

/// A progress bar on a terminal, a line every two seconds otherwise (stderr).
struct Progress<'a> {
    counters: &'a dyn WorkerGauges,
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    next_line: std::cell::Cell<Instant>,
}

impl<'a> Progress<'a> {
    fn new(total: u64, counters: &'a dyn WorkerGauges) -> Progress<'a> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} results, {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            counters,
            bar,
            total,
            started: Instant::now(),
            next_line: std::cell::Cell::new(Instant::now() + Duration::from_secs(2)),
        }
    }

    fn update(&self, results: u64, dead_letters: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(results);
                bar.set_message(self.message(dead_letters));
            }
            None if Instant::now() >= self.next_line.get() => {
                self.next_line.set(Instant::now() + Duration::from_secs(2));
                self.line(results, dead_letters);
            }
            None => {}
        }
    }

    fn message(&self, dead_letters: u64) -> String {
        format!(
            "{dead_letters} dead letters, {} in flight, {} HTTP requests",
            self.counters.in_flight(),
            self.counters.http_requests()
        )
    }

    fn line(&self, results: u64, dead_letters: u64) {
        eprintln!(
            "demo: {results}/{} results, {}, {:.1}s",
            self.total,
            self.message(dead_letters),
            self.started.elapsed().as_secs_f64()
        );
    }

    fn finish(&self, results: u64, dead_letters: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(results);
                bar.set_message(self.message(dead_letters));
                bar.finish();
            }
            None => self.line(results, dead_letters),
        }
    }
}
