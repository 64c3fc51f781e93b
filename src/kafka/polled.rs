//! The producer behind [`super::producer::Publisher`]: a librdkafka producer whose delivery
//! reports resolve [`super::context::Delivery`] futures, polled by a thread of its own that waits
//! [`POLL_TIMEOUT`] at a time.
//!
//! rust-rdkafka's `FutureProducer` polls in 100 ms calls, and each call, rounding the wait left
//! down to whole milliseconds, ends with up to a millisecond of non-blocking polls: about 1% of
//! the polling thread's time spent spinning while idle. A call here lasts [`POLL_TIMEOUT`], so the
//! same spin costs a tenth of that. Delivery reports are handled the moment they arrive either
//! way (the wait ends on every event).

use super::context::PublisherContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::BaseProducer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one poll of the producer's queue waits for an event: also how long the polling
/// thread may outlive the [`PolledProducer`] (it then destroys the producer, flushing first).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// A [`BaseProducer`] polled by a thread of its own until this is dropped.
pub struct PolledProducer {
    producer: Arc<BaseProducer<PublisherContext>>,
    stop: Arc<AtomicBool>,
}

impl PolledProducer {
    /// Creates the producer from `config` and starts its polling thread.
    pub fn new(config: &ClientConfig, context: PublisherContext) -> KafkaResult<PolledProducer> {
        let producer = Arc::new(BaseProducer::from_config_and_context(config, context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("producer poll".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.poll(POLL_TIMEOUT);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("no polling thread: {e}")))?;
        Ok(PolledProducer { producer, stop })
    }

    /// The producer (sending, metadata, flush, transactions).
    pub fn producer(&self) -> &BaseProducer<PublisherContext> {
        &self.producer
    }
}

impl Drop for PolledProducer {
    /// Stops the polling thread after its current wait (at most [`POLL_TIMEOUT`]) without
    /// waiting for it: the thread holds the last handle and destroys the producer.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
