//! The producer's context: its delivery reports resolve [`Delivery`] futures, and it counts the
//! times librdkafka reports the brokers lost (all brokers down, or a broker connection failing),
//! so that readiness asks the brokers at once instead of on a short timer.

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// What a delivery report says: acknowledged, or why not.
pub type DeliveryResult = Result<(), KafkaError>;

/// The sending half of a [`Delivery`], carried through librdkafka as the record's opaque.
pub type DeliverySender = Box<oneshot::Sender<DeliveryResult>>;

/// Resolves when the broker acknowledged the record, or with the error that stopped it
/// (`KafkaError::Canceled` if the producer went away first).
#[derive(Debug)]
pub struct Delivery(oneshot::Receiver<DeliveryResult>);

impl Delivery {
    /// A delivery and the sender its record carries.
    pub fn channel() -> (DeliverySender, Delivery) {
        let (tx, rx) = oneshot::channel();
        (Box::new(tx), Delivery(rx))
    }
}

impl Future for Delivery {
    type Output = DeliveryResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DeliveryResult> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(KafkaError::Canceled)))
    }
}

/// The producer's [`ClientContext`] and [`ProducerContext`]: logs librdkafka's errors as the
/// default context does, counts broker losses and resolves deliveries.
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

impl ProducerContext for PublisherContext {
    type DeliveryOpaque = DeliverySender;

    fn delivery(&self, report: &rdkafka::message::DeliveryResult<'_>, tx: DeliverySender) {
        let result = match report {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        // The receiver is gone only when nobody waits for this record any more.
        let _ = tx.send(result);
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
        // Clones share the count: the producer holds one, the probe reads another.
        let shared = c.clone();
        c.error(global(RDKafkaErrorCode::AllBrokersDown), "again");
        assert_eq!(shared.broker_losses(), 3);
    }

    #[tokio::test]
    async fn a_delivery_resolves_with_its_report_or_as_canceled() {
        let (tx, delivery) = Delivery::channel();
        tx.send(Err(KafkaError::Global(RDKafkaErrorCode::MessageTimedOut)))
            .unwrap();
        assert_eq!(
            delivery.await,
            Err(KafkaError::Global(RDKafkaErrorCode::MessageTimedOut))
        );
        let (tx, delivery) = Delivery::channel();
        tx.send(Ok(())).unwrap();
        assert_eq!(delivery.await, Ok(()));
        let (tx, delivery) = Delivery::channel();
        drop(tx);
        assert_eq!(delivery.await, Err(KafkaError::Canceled));
    }
}
