//! The fleet an operator works on: one namespace on one Redis and one
//! RabbitMQ, read with one policy, and — for actions that compensate — the
//! downstream APIs.

use crate::error::{Error, Result};
use orderflow_broker::{Connection, Names, Publisher, TopologySpec, without_password};
use orderflow_core::message::OrderId;
use orderflow_core::{Policy, PolicyId};
use orderflow_runtime::Env;
use orderflow_stages::{Downstreams, Urls};
use orderflow_store::{OrderRecord, Store};
use std::sync::Arc;
use std::time::Duration;

/// A server that has not answered by then is reported as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the fleet is.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub redis_url: String,
    pub amqp_url: String,
    /// The fleet's policy: delay tiers, retry budgets and the lease ttl are
    /// read from it, and operator actions are audited with its id.
    pub policy: Policy,
    /// The downstream APIs, for actions that check with a provider or
    /// compensate (refund, release); `None` when only reading.
    pub apis: Option<Urls>,
}

/// A connected fleet. Cheap to share by reference; holds one Redis
/// connection and opens broker connections as commands need them.
pub struct Target {
    pub(crate) env: Env,
    amqp_url: String,
    downstreams: Option<Arc<Downstreams>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("namespace", &self.namespace())
            .field("policy_id", &self.env.policy_id)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Checks the settings and connects to Redis; RabbitMQ and the APIs
    /// are reached only by the commands that need them.
    pub async fn connect(settings: Settings) -> Result<Target> {
        let spec = TopologySpec::from_policy(&settings.namespace, &settings.policy)
            .map_err(|e| Error::Invalid(orderflow_broker::chain(&e)))?;
        let downstreams = match &settings.apis {
            Some(urls) => Some(Arc::new(
                Downstreams::new(urls, &settings.policy)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            )),
            None => None,
        };
        let shown = without_password(&settings.redis_url);
        let store = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            Store::connect(&settings.redis_url, &settings.namespace),
        )
        .await
        {
            Ok(Ok(store)) => store,
            Ok(Err(err)) if err.class() == orderflow_store::ErrorClass::Invalid => {
                return Err(Error::Invalid(
                    err.to_string().replace(&settings.redis_url, &shown),
                ));
            }
            Ok(Err(err)) => {
                return Err(Error::Unavailable(format!(
                    "cannot reach Redis at {shown}: {} (is it running? is the URL right?)",
                    err.to_string().replace(&settings.redis_url, &shown)
                )));
            }
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "cannot reach Redis at {shown}: no answer within {CONNECT_TIMEOUT:?} (is it running? is the URL right?)"
                )));
            }
        };
        let policy_id = settings.policy.id();
        Ok(Target {
            env: Env {
                store,
                policy: Arc::new(settings.policy),
                policy_id,
                spec: Arc::new(spec),
                actor: "orderctl".to_owned(),
            },
            amqp_url: settings.amqp_url,
            downstreams,
        })
    }

    pub fn namespace(&self) -> &str {
        self.env.store.namespace()
    }

    pub fn store(&self) -> &Store {
        &self.env.store
    }

    pub fn policy(&self) -> &Policy {
        &self.env.policy
    }

    pub fn policy_id(&self) -> &PolicyId {
        &self.env.policy_id
    }

    /// `actor` acting on this fleet's exception queues, with its store and
    /// policy.
    pub fn operator<'a>(&'a self, actor: &'a str) -> crate::exceptions::Operator<'a> {
        crate::exceptions::Operator {
            store: self.store(),
            policy: self.policy(),
            actor,
        }
    }

    /// The broker, for the exception queues ([`crate::exceptions::ExceptionQueues`]).
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    pub(crate) fn spec(&self) -> &TopologySpec {
        &self.env.spec
    }

    pub(crate) fn names(&self) -> &Names {
        self.env.spec.names()
    }

    pub(crate) fn downstreams(&self) -> Result<&Downstreams> {
        self.downstreams.as_deref().ok_or_else(|| {
            Error::Invalid(
                "this action calls the downstream APIs, but no API URLs were given".to_owned(),
            )
        })
    }

    /// A broker connection for reading queues; the caller closes it.
    pub(crate) async fn broker(&self) -> Result<Connection> {
        orderflow_broker::connect_named(&self.amqp_url, &format!("{}.orderctl", self.namespace()))
            .await
            .map_err(Error::broker("cannot read the queues"))
    }

    /// A confirming publisher; the caller closes it.
    pub(crate) async fn publisher(&self) -> Result<Publisher> {
        Publisher::connect(
            &self.amqp_url,
            &format!("{}.orderctl.publisher", self.namespace()),
        )
        .await
        .map_err(Error::broker("cannot publish"))
    }

    /// The order's record; an unknown order is [`Error::Invalid`], naming
    /// the namespaces that exist when this one has no orders at all.
    pub(crate) async fn order(&self, order_id: &OrderId) -> Result<OrderRecord> {
        let found = self
            .store()
            .get_order(order_id)
            .await
            .map_err(Error::store(format!("cannot read order {order_id}")))?;
        match found {
            Some(order) => Ok(order),
            None => Err(self.not_found(order_id).await),
        }
    }

    /// "Order not found", with what the store knows that might explain it.
    pub(crate) async fn not_found(&self, order_id: &OrderId) -> Error {
        let hint = match self.kept_cancel_hint(order_id).await {
            Some(hint) => Some(hint),
            None => self.empty_namespace_hint().await,
        };
        Error::Invalid(format!(
            "order {order_id} not found in namespace `{}`{}",
            self.namespace(),
            hint.map(|hint| format!(" ({hint})")).unwrap_or_default()
        ))
    }

    /// `Some(hint)` when a cancel waits for the order to arrive: an
    /// operator looking for the order should know the fleet holds it.
    async fn kept_cancel_hint(&self, order_id: &OrderId) -> Option<String> {
        let kept = self.store().kept_cancel(order_id).await.ok()??;
        let since = i64::try_from(kept.kept_at_ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(|| kept.kept_at_ms.to_string(), |at| at.to_string());
        Some(format!(
            "a cancel for it is kept since {since}, message {}, reason `{}`: it is applied when the order arrives, or parked as cancel_unknown_order after exceptions.replay_window",
            kept.message_id, kept.reason
        ))
    }

    /// `Some(hint)` when the namespace has no orders and no live workers:
    /// most likely a mistyped namespace, so the hint names those that
    /// exist.
    pub(crate) async fn empty_namespace_hint(&self) -> Option<String> {
        let store = self.store();
        let counts = store.count_by_state().await.ok()?;
        if counts.values().any(|n| *n > 0) || !store.live_workers().await.ok()?.is_empty() {
            return None;
        }
        let known = store.known_namespaces().await.ok()?;
        let namespace = self.namespace();
        Some(if known.is_empty() {
            format!(
                "namespace `{namespace}` has no orders and no workers, and no namespace of this Redis has any"
            )
        } else {
            format!(
                "namespace `{namespace}` has no orders and no workers; namespaces with some: {}",
                known.join(", ")
            )
        })
    }
}

/// An order id as typed by an operator.
pub fn parse_order_id(raw: &str) -> Result<OrderId> {
    OrderId::parse(raw).ok_or_else(|| {
        Error::Invalid(format!(
            "`{raw}` is not an order id: use 1-64 characters of A-Z, a-z, 0-9, _ and -"
        ))
    })
}
