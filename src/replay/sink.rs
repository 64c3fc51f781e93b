//! The writing side of a replay: the idempotent producer (`acks=all`), the `--rate` limiter, and
//! the batch of records sent but not yet known to be acknowledged.

use super::options::ReplayError;
use super::record::RawHeaders;
use crate::config::Config;
use crate::kafka::producer::{producer_config, stored};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Sends of one record before the replay gives up (each already retried by librdkafka for
/// `message.timeout.ms`).
const SEND_ATTEMPTS: u32 = 3;

/// A record to write.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where: the target or the park topic.
    pub topic: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub value: Option<Vec<u8>>,
    /// The headers to write.
    pub headers: RawHeaders,
    /// The record timestamp (ms); the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

struct Pending {
    record: Outgoing,
    delivery: DeliveryFuture,
}

/// Writes re-published and parked records and tells when all of them are acknowledged.
pub struct Sink {
    producer: FutureProducer,
    limiter: Option<DefaultDirectRateLimiter>,
    pending: Vec<Pending>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Sink {
    /// A producer with the worker's settings (idempotent, `acks=all`), limited to `rate`
    /// re-published records per second when given.
    pub fn new(config: &Config, rate: Option<f64>) -> Result<Sink, ReplayError> {
        let producer = producer_config(config)
            .set("client.id", "silentauth-worker-replay")
            .create()
            .map_err(|e| ReplayError::broker("creating the producer", e))?;
        let limiter = rate
            .and_then(|r| Quota::with_period(Duration::from_secs_f64(1.0 / r)))
            .map(RateLimiter::direct);
        Ok(Sink {
            producer,
            limiter,
            pending: Vec::new(),
        })
    }

    /// Waits until `--rate` allows the next re-published record.
    pub async fn ready(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
    }

    /// Hands `record` to the producer (waiting while its queue is full).
    pub async fn send(&mut self, record: Outgoing) -> Result<(), ReplayError> {
        let delivery = self.enqueue(&record).await?;
        self.pending.push(Pending { record, delivery });
        Ok(())
    }

    async fn enqueue(&self, r: &Outgoing) -> Result<DeliveryFuture, ReplayError> {
        loop {
            let headers = r.headers.iter().fold(
                OwnedHeaders::new_with_capacity(r.headers.len()),
                |h, (k, v)| {
                    h.insert(Header {
                        key: k.as_str(),
                        value: v.as_deref(),
                    })
                },
            );
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&r.topic).headers(headers);
            if let Some(k) = &r.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                record = record.payload(v.as_slice());
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            match self.producer.send_result(record) {
                Ok(d) => return Ok(d),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => {
                    return Err(ReplayError::broker(format!("producing to {}", r.topic), e))
                }
            }
        }
    }

    /// Waits until every pending record is acknowledged, sending a failed one again (up to
    /// [`SEND_ATTEMPTS`] in all). An error means some record may not have been written: the
    /// caller must not commit past it.
    pub async fn settle(&mut self) -> Result<(), ReplayError> {
        for Pending { record, delivery } in std::mem::take(&mut self.pending) {
            let mut delivery = delivery;
            let mut attempt = 1;
            loop {
                // Only a success at an offset counts (see `kafka::producer::stored`).
                let error = match stored(delivery.await) {
                    Ok(()) => break,
                    Err(failure) => failure,
                };
                if attempt >= SEND_ATTEMPTS {
                    return Err(ReplayError::Produce {
                        topic: record.topic.clone(),
                        source: error,
                    });
                }
                tracing::warn!(error = %error, topic = %record.topic, attempt, "a replayed record was not acknowledged; sending it again");
                attempt += 1;
                delivery = self.enqueue(&record).await?;
            }
        }
        Ok(())
    }
}
