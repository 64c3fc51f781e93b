//! Reads one result back from the results topic, where the redelivery index says it lies: the
//! answer to a job that comes again after the in-memory cache forgot its result (rare: a
//! redelivery or re-publication older than the cache's most recent results).

use super::warmup_seek::{first_records, single_record_settings};
use crate::config::Config;
use crate::contract::JobResult;
use crate::idempotency::index::Stored;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads single results by partition and offset (one at a time; a blocking client on its own).
#[derive(Clone)]
pub struct ResultFetcher {
    consumer: Arc<Mutex<BaseConsumer>>,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for ResultFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultFetcher")
            .field("topic", &self.topic)
            .finish()
    }
}

impl ResultFetcher {
    /// A reader of `topics.results`, with the group-less settings of the warm-up.
    pub fn new(config: &Config) -> KafkaResult<ResultFetcher> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}.readback", config.kafka.group_id));
        for (k, v) in &config.kafka.properties {
            c.set(k, v);
        }
        c.set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        Ok(ResultFetcher {
            consumer: Arc::new(Mutex::new(single_record_settings(&mut c).create()?)),
            topic: config.topics.results.clone(),
            timeout: config.kafka.connect_timeout,
        })
    }

    /// The result at `at`, if the record there is a result of `job_id`; `Ok(None)` when the
    /// record is gone (retention) or holds something else. Blocking.
    pub fn read(&self, at: Stored, job_id: &str) -> KafkaResult<Option<JobResult>> {
        let consumer = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let found = first_records(
            &consumer,
            &self.topic,
            &[(at.partition, at.offset)],
            self.timeout,
            |m| {
                let ours = m.offset() == at.offset && m.key() == Some(job_id.as_bytes());
                m.payload()
                    .filter(|_| ours)
                    .and_then(|v| serde_json::from_slice::<JobResult>(v).ok())
            },
        )?;
        Ok(found.into_iter().next().and_then(|(_, r)| r).flatten())
    }

    /// [`ResultFetcher::read`] off the async runtime, tried again while the brokers fail (as a
    /// result that cannot be published is: the job waits, its offset unfinished); `None` when
    /// the record is gone or holds something else.
    pub async fn read_async(&self, at: Stored, job_id: &str) -> Option<JobResult> {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1.. {
            let (me, id) = (self.clone(), job_id.to_owned());
            let read = tokio::task::spawn_blocking(move || me.read(at, &id)).await;
            match read {
                Ok(Ok(found)) => return found,
                Ok(Err(e)) => tracing::warn!(
                    job_id,
                    partition = at.partition,
                    offset = at.offset,
                    attempt,
                    error = %e,
                    "cannot read an earlier result back; trying again"
                ),
                Err(e) => tracing::error!(error = %e, "the read-back task failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        None
    }
}
