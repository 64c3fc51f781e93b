//! The producer: idempotent (`enable.idempotence`, `acks=all`), results keyed by `job_id`, dead
//! letters with the original key and value and the §6 headers. `publish` returns only once the
//! broker acknowledged every record of a job at an offset.
//!
//! librdkafka's producer is polled for delivery reports by a thread of the worker's own
//! ([`Poller`]) in cycles of [`POLL_CYCLE`]: rust-rdkafka's `ThreadedProducer` (inside its
//! `FutureProducer`) polls in 100 ms cycles whose last millisecond is a busy loop (the remaining
//! time is truncated to whole milliseconds, 0 near the end), a third of an idle worker's CPU.
//! Reports are served as they arrive either way; a longer cycle only makes the tail rarer.

use super::context::{DeliverySender, PublisherContext};
use crate::config::Config;
use crate::contract::{DeadLetterRecord, Publication, ResultRecord};
use crate::idempotency::index::Stored;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long one poll of the producer may wait for a delivery report before the polling thread
/// looks whether it should stop (so a dropped producer is released within this time).
pub const POLL_CYCLE: Duration = Duration::from_secs(1);

/// A queued record's delivery report, once librdkafka has one.
pub type Acknowledgement = oneshot::Receiver<OwnedDeliveryResult>;

/// The header of a result record with the [`crate::idempotency::fingerprint`] of the job it
/// answers (16 hex digits), or `-` for a result the redelivery index must not hold (a job that
/// could not be decoded, a reused job_id): warm-ups index results by their key and this header
/// without decoding them.
pub const FINGERPRINT_HEADER: &str = "silentauth.fingerprint";

/// The header of a result record with the `replay_count` it answers.
pub const REPLAY_COUNT_HEADER: &str = "silentauth.replay_count";

/// The delivery reports of a job's queued records.
#[derive(Debug, Default)]
pub struct Queued {
    /// Its result's, when it has one.
    pub result: Option<Acknowledgement>,
    /// Its dead letter's, when it has one.
    pub dead_letter: Option<Acknowledgement>,
}

/// The thread that polls a producer for its delivery reports; told to stop when dropped (and
/// not waited for: it stops within [`POLL_CYCLE`], and the producer goes with it).
struct Poller {
    stop: Arc<AtomicBool>,
}

impl Poller {
    fn spawn(producer: Arc<BaseProducer<PublisherContext>>) -> std::io::Result<Poller> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("producer poll".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    producer.poll(POLL_CYCLE);
                }
            })?;
        Ok(Poller { stop })
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The two topics the worker writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `topics.results`.
    Results,
    /// `topics.dead_letter`.
    DeadLetter,
}

impl Output {
    /// The configuration key naming the topic.
    pub fn key(self) -> &'static str {
        match self {
            Output::Results => "topics.results",
            Output::DeadLetter => "topics.dead_letter",
        }
    }
}

/// A publish that failed: which output, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot publish to {} '{topic}': {source}", output.key())]
pub struct PublishError {
    /// The output that failed.
    pub output: Output,
    /// Its topic.
    pub topic: String,
    /// Why.
    pub source: ProduceFailure,
}

/// Why a record is not known to be stored.
#[derive(Debug, thiserror::Error)]
pub enum ProduceFailure {
    /// The client or the broker refused it, or it timed out.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A delivery report of success without an offset. The idempotent producer reports a
    /// record whose earlier attempt may have been stored (a timeout, a lost connection) as
    /// delivered without knowing where, and sometimes it was not stored at all (seen on
    /// librdkafka's MockCluster after a produce timeout: a result acknowledged at offset
    /// -1001 never reached the topic). Sending it again may duplicate it; not sending it may
    /// lose it.
    #[error(
        "partition {partition} acknowledged the record without an offset, so it may not be stored"
    )]
    NoOffset {
        /// The partition of the report.
        partition: i32,
    },
}

/// Publishes results and dead letters.
pub struct Publisher {
    producer: Arc<BaseProducer<PublisherContext>>,
    _poller: Poller,
    results_topic: String,
    dead_letter_topic: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("results_topic", &self.results_topic)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .finish()
    }
}

/// The librdkafka settings the producer uses; `kafka.properties` come last and win.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("client.id", "silentauth-worker")
        // The worker never creates topics: a misspelled name must stay missing (and be
        // reported), not become a new, empty topic on a broker that creates topics on first use.
        .set("allow.auto.create.topics", "false");
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

impl Publisher {
    /// A producer for the configured brokers and topics.
    pub fn new(config: &Config) -> Result<Publisher, KafkaError> {
        Self::from_client_config(producer_config(config), config)
    }

    fn from_client_config(c: ClientConfig, config: &Config) -> Result<Publisher, KafkaError> {
        let producer = Arc::new(c.create_with_context(PublisherContext::default())?);
        let poller = Poller::spawn(Arc::clone(&producer)).map_err(|e| {
            KafkaError::ClientCreation(format!("cannot start the producer's polling thread: {e}"))
        })?;
        Ok(Publisher {
            producer,
            _poller: poller,
            results_topic: config.topics.results.clone(),
            dead_letter_topic: config.topics.dead_letter.clone(),
        })
    }

    /// A transactional producer (`exactly_once`): `transactional.id` is
    /// `<group_id>.<instance>`, unless `kafka.properties` sets one.
    pub fn transactional(config: &Config) -> Result<Publisher, KafkaError> {
        let mut c = producer_config(config);
        if !config.kafka.properties.contains_key("transactional.id") {
            c.set(
                "transactional.id",
                format!(
                    "{}.{}",
                    config.kafka.group_id,
                    config.worker.instance_name()
                ),
            );
        }
        Self::from_client_config(c, config)
    }

    /// The underlying producer (metadata checks, flush).
    pub fn producer(&self) -> &BaseProducer<PublisherContext> {
        &self.producer
    }

    /// How many times librdkafka reported the brokers lost (see
    /// [`PublisherContext::broker_losses`]).
    pub fn broker_losses(&self) -> u64 {
        self.producer.context().broker_losses()
    }

    /// Queues a job's result and dead letter (either may be absent) and returns their delivery
    /// futures; waits while librdkafka's queue is full.
    pub async fn enqueue(&self, publication: &Publication) -> Result<Queued, KafkaError> {
        let mut queued = Queued::default();
        if let Some(r) = &publication.result {
            queued.result = Some(self.enqueue_result(r).await?);
        }
        if let Some(d) = &publication.dead_letter {
            queued.dead_letter = Some(self.enqueue_dead_letter(d).await?);
        }
        Ok(queued)
    }

    /// Queues a result, keyed by its `job_id`, with the headers the redelivery index reads.
    async fn enqueue_result(&self, r: &ResultRecord) -> Result<Acknowledgement, KafkaError> {
        let value = serde_json::to_vec(&r.result).expect("a JobResult always serializes");
        let fingerprint = r
            .fingerprint
            .map_or_else(|| "-".to_owned(), |f| format!("{f:016x}"));
        let replay_count = r.result.replay_count.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: FINGERPRINT_HEADER,
                value: Some(&fingerprint),
            })
            .insert(Header {
                key: REPLAY_COUNT_HEADER,
                value: Some(&replay_count),
            });
        if let Some(tp) = &r.traceparent {
            headers = headers.insert(Header {
                key: "traceparent",
                value: Some(tp),
            });
        }
        let (to, acknowledgement) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(&self.results_topic, Box::new(to))
            .key(r.result.job_id.as_bytes())
            .payload(&value)
            .headers(headers);
        self.send_when_room(record).await?;
        Ok(acknowledgement)
    }

    /// Queues a dead letter: the original key and value, the `dlq.*` headers and the audit
    /// trail.
    async fn enqueue_dead_letter(
        &self,
        d: &DeadLetterRecord,
    ) -> Result<Acknowledgement, KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(d.headers.len() + d.audit_headers.len());
        for (k, v) in &d.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        for (k, v) in &d.audit_headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let (to, acknowledgement) = oneshot::channel();
        let mut record: BaseRecord<'_, [u8], [u8], Box<DeliverySender>> =
            BaseRecord::with_opaque_to(&self.dead_letter_topic, Box::new(to)).headers(headers);
        if let Some(k) = &d.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &d.value {
            record = record.payload(v.as_slice());
        }
        self.send_when_room(record).await?;
        Ok(acknowledgement)
    }

    /// Queues `record`; waits while librdkafka's queue is full (a refused record comes back
    /// whole, its report's sender included).
    async fn send_when_room<K, P>(
        &self,
        mut record: BaseRecord<'_, K, P, Box<DeliverySender>>,
    ) -> Result<(), KafkaError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Produces a job's result and dead letter (either may be absent) and waits until the
    /// broker acknowledged both; where the result lies.
    ///
    /// The dead letter is acknowledged before the result is sent: a result on the results topic
    /// then implies its dead letter is on the dead-letter topic, so a crash between the two can
    /// never lose a dead letter (the redelivered job, answered from the idempotency cache,
    /// publishes none).
    pub async fn publish(&self, publication: &Publication) -> Result<Option<Stored>, PublishError> {
        let failed = |output: Output| {
            move |source| PublishError {
                output,
                topic: self.topic(output).to_owned(),
                source,
            }
        };
        if let Some(d) = &publication.dead_letter {
            let queued = self.enqueue_dead_letter(d).await;
            let queued = queued.map_err(|e| failed(Output::DeadLetter)(e.into()))?;
            stored_at(queued.await).map_err(failed(Output::DeadLetter))?;
        }
        let Some(r) = &publication.result else {
            return Ok(None);
        };
        let queued = self.enqueue_result(r).await;
        let queued = queued.map_err(|e| failed(Output::Results)(e.into()))?;
        stored_at(queued.await)
            .map(Some)
            .map_err(failed(Output::Results))
    }

    /// Produces the presentation-ledger record of job `job_id` (its fingerprint and
    /// `replay_count` as headers; the fingerprint as its value, so it is never a tombstone) to
    /// `topic` and waits until the broker acknowledged it at an offset.
    pub async fn record_presentation(
        &self,
        topic: &str,
        job_id: &str,
        fingerprint: u64,
        replay_count: u32,
    ) -> Result<Stored, ProduceFailure> {
        let fingerprint = format!("{fingerprint:016x}");
        let replay = replay_count.to_string();
        // The headers say it all; the value only keeps the record from being a tombstone.
        let value = fingerprint.as_bytes();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: FINGERPRINT_HEADER,
                value: Some(&fingerprint),
            })
            .insert(Header {
                key: REPLAY_COUNT_HEADER,
                value: Some(&replay),
            });
        let (to, acknowledgement) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(to))
            .key(job_id.as_bytes())
            .payload(value)
            .headers(headers);
        self.send_when_room(record).await?;
        stored_at(acknowledgement.await)
    }

    /// The topic of `output`.
    pub fn topic(&self, output: Output) -> &str {
        match output {
            Output::Results => &self.results_topic,
            Output::DeadLetter => &self.dead_letter_topic,
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

/// What a delivery future resolved to: `Ok` only for a success at an offset (a success without
/// one may not be stored, see [`ProduceFailure::NoOffset`]). The publisher's and
/// `replay-dlq`'s test of a delivery.
/// (`Err` of the outer result: the report never came, its sender dropped.)
pub fn stored<Dropped>(
    delivery: Result<OwnedDeliveryResult, Dropped>,
) -> Result<(), ProduceFailure> {
    stored_at(delivery).map(drop)
}

/// As [`stored`], with where the record lies.
pub fn stored_at<Dropped>(
    delivery: Result<OwnedDeliveryResult, Dropped>,
) -> Result<Stored, ProduceFailure> {
    match delivery {
        Ok(Ok(d)) if d.offset < 0 => Err(ProduceFailure::NoOffset {
            partition: d.partition,
        }),
        Ok(Ok(d)) => Ok(Stored {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_canceled) => Err(KafkaError::Canceled.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};
    use rdkafka::producer::future_producer::Delivery;

    fn delivered(partition: i32, offset: i64) -> Result<OwnedDeliveryResult, ()> {
        Ok(Ok(Delivery {
            partition,
            offset,
            timestamp: Timestamp::NotAvailable,
        }))
    }

    #[test]
    fn a_delivery_at_an_offset_is_an_acknowledgement() {
        let at = stored_at(delivered(2, 0)).unwrap();
        assert_eq!((at.partition, at.offset), (2, 0));
        let at = stored_at(delivered(1, 41)).unwrap();
        assert_eq!((at.partition, at.offset), (1, 41));
        assert!(stored(delivered(0, 7)).is_ok());
    }

    #[test]
    fn a_delivery_without_an_offset_is_not_an_acknowledgement() {
        // -1001 is librdkafka's "invalid offset"; any negative offset says "stored, where?".
        for offset in [-1001, -1] {
            match stored_at(delivered(3, offset)) {
                Err(ProduceFailure::NoOffset { partition: 3 }) => {}
                other => panic!("offset {offset}: {other:?}"),
            }
            assert!(matches!(
                stored(delivered(3, offset)),
                Err(ProduceFailure::NoOffset { partition: 3 })
            ));
        }
    }

    #[test]
    fn a_refused_or_lost_report_is_not_an_acknowledgement() {
        let message =
            OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, -1, None);
        let refused: Result<OwnedDeliveryResult, ()> = Ok(Err((
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            message,
        )));
        assert!(matches!(
            stored(refused),
            Err(ProduceFailure::Kafka(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            )))
        ));
        assert!(matches!(
            stored_at(Err::<OwnedDeliveryResult, _>("sender dropped")),
            Err(ProduceFailure::Kafka(KafkaError::Canceled))
        ));
    }
}
