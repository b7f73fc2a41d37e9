//! Every exchange and queue name, in one place.
//!
//! All names start with a namespace so tests and tenants can share a broker.
//! A delay queue carries its delay in its name: changing the tiers in the
//! policy declares new queues instead of conflicting with the old ones.

use crate::Error;
use orderflow_core::Stage;
use std::time::Duration;

/// The namespace of a production fleet.
pub const DEFAULT_NAMESPACE: &str = "orderflow";

/// Routing key of a new order on the ingress exchange.
pub const ORDER_PLACED: &str = "order.placed";

/// Routing key of a cancellation on the ingress exchange.
pub const ORDER_CANCEL: &str = "order.cancel";

/// The longest name RabbitMQ accepts (an AMQP short string).
const MAX_NAME_LEN: usize = 255;

/// The longest suffix a namespace is followed by, `.inventory.exceptions`,
/// plus room for a delay tier.
const LONGEST_SUFFIX: usize = 48;

/// Names of every exchange and queue of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    namespace: String,
}

impl Names {
    /// Checks the namespace: ASCII letters, digits, `.`, `-` and `_` only, so
    /// names stay readable in `rabbitmqctl` and in shell commands.
    pub fn new(namespace: &str) -> Result<Names, Error> {
        let invalid = |reason: &str| Error::Invalid {
            what: format!("namespace `{namespace}`"),
            reason: reason.to_owned(),
        };
        if namespace.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if namespace.len() > MAX_NAME_LEN - LONGEST_SUFFIX {
            return Err(invalid(&format!(
                "is longer than {} bytes, which leaves no room for queue names",
                MAX_NAME_LEN - LONGEST_SUFFIX
            )));
        }
        if let Some(c) = namespace
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(invalid(&format!(
                "contains `{c}`; use ASCII letters, digits, `.`, `-` and `_`"
            )));
        }
        Ok(Names {
            namespace: namespace.to_owned(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The topic exchange producers publish orders to.
    pub fn orders_exchange(&self) -> String {
        format!("{}.orders", self.namespace)
    }

    /// The topic exchange of customer-facing status events.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// The stream that keeps every customer event (bound with `#`): each
    /// subscriber reads all of it from the offset it chooses.
    pub fn events_stream(&self) -> String {
        format!("{}.events.stream", self.namespace)
    }

    /// The stream finished orders are archived to before they leave Redis.
    pub fn archive_stream(&self) -> String {
        format!("{}.archive", self.namespace)
    }

    /// The work queue a stage's workers consume.
    pub fn work_queue(&self, stage: Stage) -> String {
        format!("{}.{stage}", self.namespace)
    }

    /// Where a stage's unresolved, blocked, poison and malformed messages go.
    pub fn exception_queue(&self, stage: Stage) -> String {
        format!("{}.{stage}.exceptions", self.namespace)
    }

    /// The delay queue of one tier: messages wait `delay`, then return to the
    /// stage's work queue.
    pub fn delay_queue(&self, stage: Stage, delay: Duration) -> String {
        format!("{}.{stage}.delay.{}", self.namespace, tier_name(delay))
    }
}

/// `2s`, `200ms`, `1m30s`: humantime without its spaces.
fn tier_name(delay: Duration) -> String {
    humantime::format_duration(delay)
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace_stage_and_tier() {
        let names = Names::new(DEFAULT_NAMESPACE).unwrap();
        assert_eq!(names.orders_exchange(), "orderflow.orders");
        assert_eq!(names.events_exchange(), "orderflow.events");
        assert_eq!(names.work_queue(Stage::Payment), "orderflow.payment");
        assert_eq!(
            names.exception_queue(Stage::Shipping),
            "orderflow.shipping.exceptions"
        );
        assert_eq!(
            names.delay_queue(Stage::Payment, Duration::from_secs(2)),
            "orderflow.payment.delay.2s"
        );
        assert_eq!(
            names.delay_queue(Stage::Inventory, Duration::from_millis(200)),
            "orderflow.inventory.delay.200ms"
        );
        assert_eq!(
            names.delay_queue(Stage::Inventory, Duration::from_secs(90)),
            "orderflow.inventory.delay.1m30s"
        );
    }

    #[test]
    fn bad_namespaces_are_refused_with_a_reason() {
        assert!(Names::new("t-0b4e.x_y").is_ok());
        for bad in ["", "has space", "slash/", "ünï"] {
            let err = Names::new(bad).unwrap_err().to_string();
            assert!(err.contains("namespace"), "{err}");
        }
        let long = "n".repeat(MAX_NAME_LEN);
        assert!(Names::new(&long).is_err());
    }

    #[test]
    fn the_longest_name_fits_an_amqp_short_string() {
        let names = Names::new(&"n".repeat(MAX_NAME_LEN - LONGEST_SUFFIX)).unwrap();
        let longest = names.delay_queue(Stage::Inventory, Duration::from_millis(86_399_999));
        assert!(longest.len() <= MAX_NAME_LEN, "{longest}");
    }
}
