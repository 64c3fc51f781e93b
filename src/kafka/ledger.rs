//! The presentation ledger (`worker.ledger`, `topics.ledger`): before a job's token request
//! leaves, a record keyed by its `job_id` with the fingerprint of its code and number is
//! acknowledged by the brokers. A warm-up reads the ledger beside the results topic, so a job
//! redelivered after a crash whose code was recorded but that has no result is concluded
//! `interrupted` without presenting its code again (contract A2). The records ride the
//! producer's batching (`linger.ms`), so the cost is one acknowledgement per job, shared with
//! the jobs around it.

use super::producer::Publisher;
use crate::contract::Job;
use crate::idempotency::fingerprint;
use crate::verify::PresentationLedger;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Records presentations in a Kafka topic.
#[derive(Debug)]
pub struct KafkaLedger {
    publisher: Arc<Publisher>,
    topic: String,
}

impl KafkaLedger {
    /// A ledger writing to `topic` through `publisher` (a non-transactional producer).
    pub fn new(publisher: Arc<Publisher>, topic: String) -> KafkaLedger {
        KafkaLedger { publisher, topic }
    }
}

impl PresentationLedger for KafkaLedger {
    fn record<'a>(&'a self, job: &'a Job, replay_count: u32) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.publisher
                .record_presentation(&self.topic, &job.job_id, fingerprint(job), replay_count)
                .await
                .map(drop)
                .map_err(|e| format!("{}: {e}", self.topic))
        })
    }
}
