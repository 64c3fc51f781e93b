//! The producer's client context: it counts the times librdkafka reports the brokers lost (all
//! brokers down, or a broker connection failing), so that readiness asks the brokers at once
//! instead of on a short timer.

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The producer's [`ClientContext`]: logs librdkafka's errors as the default context does and
/// counts broker losses.
#[derive(Debug, Clone, Default)]
pub struct PublisherContext {
    broker_losses: Arc<AtomicU64>,
}

impl PublisherContext {
    /// How many times librdkafka reported all brokers down or a broker connection failing since
    /// the producer was created. Only its changes mean anything.
    pub fn broker_losses(&self) -> u64 {
        self.broker_losses.load(Ordering::Relaxed)
    }
}

/// True for the errors after which the brokers may no longer answer.
fn is_broker_loss(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
    )
}

impl ClientContext for PublisherContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_broker_loss(&error) {
            self.broker_losses.fetch_add(1, Ordering::Relaxed);
        }
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

/// Where a record's delivery report goes: the sender of the [`super::producer::Acknowledgement`]
/// its producer handed out.
pub type DeliverySender = tokio::sync::oneshot::Sender<OwnedDeliveryResult>;

impl ProducerContext for PublisherContext {
    type DeliveryOpaque = Box<DeliverySender>;

    fn delivery(&self, report: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let owned = match report {
            Ok(m) => Ok(Delivery {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp(),
            }),
            Err((e, m)) => Err((e.clone(), m.detach())),
        };
        // The receiver is gone only when its job was abandoned (shutdown).
        let _ = to.send(owned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lost_brokers_are_counted() {
        let c = PublisherContext::default();
        let global = |code| KafkaError::Global(code);
        c.error(
            global(RDKafkaErrorCode::AllBrokersDown),
            "3/3 brokers are down",
        );
        c.error(
            global(RDKafkaErrorCode::BrokerTransportFailure),
            "disconnected",
        );
        c.error(global(RDKafkaErrorCode::MessageTimedOut), "timed out");
        c.error(KafkaError::Canceled, "canceled");
        assert_eq!(c.broker_losses(), 2);
        // Clones share the count: the producer holds one, the readiness check reads another.
        let shared = c.clone();
        c.error(global(RDKafkaErrorCode::AllBrokersDown), "again");
        assert_eq!(shared.broker_losses(), 3);
    }
}
