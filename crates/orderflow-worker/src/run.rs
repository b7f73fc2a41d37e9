//! The process from start to exit: settings checked, health endpoints up,
//! start-up checks against Redis and RabbitMQ, then the role's work until a
//! signal drains it.

use crate::config::{Common, Consume, Job, LISTEN, Settings};
use crate::contract;
use crate::failure::Failure;
use crate::http::{self, Readiness};
use crate::presence::{self, Identity};
use crate::role::Role;
use crate::telemetry;
use orderflow_broker::{
    Consumer, ConsumerConfig, Error as BrokerError, Publisher, TopologySpec, chain,
    without_password,
};
use orderflow_core::Stage;
use orderflow_core::policy::StorePolicy;
use orderflow_runtime::{Env, StageLogic, StageRunner};
use orderflow_settings::{AMQP_URL, NAMESPACE, POLICY, REDIS_URL};
use orderflow_stages::{InventoryStage, PaymentStage, Reconciler, ShippingStage};
use orderflow_store::{Error as StoreError, Store, StoreOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A server that has not answered by then is reported as unreachable: a
/// fleet being rolled out should fail fast, not hang in start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker waits before asking a slow Redis again at start-up.
const CONNECT_RETRY: Duration = Duration::from_millis(250);
/// How long the health server may take to close after the work is done.
pub(crate) const HTTP_DRAIN: Duration = Duration::from_secs(2);
/// After the in-flight deliveries' grace, how long a stage worker may take
/// to close its broker connections and remove its heartbeat (network calls
/// to a broker or a Redis that may not answer). Past it the worker exits
/// anyway: the broker returns whatever it left unsettled to the queue.
pub(crate) const CLOSE_ALLOWANCE: Duration = Duration::from_secs(3);

pub async fn run(settings: Settings) -> Result<(), Failure> {
    let started_at = jiff::Timestamp::now();
    let checked = settings.check()?;
    let (role, common) = (settings.role, &settings.common);
    let policy_id = checked.policy.id();
    // Before anything slow: a SIGTERM during start-up then drains instead
    // of killing the process halfway through a check.
    let shutdown = orderflow_runtime::shutdown::on_signal()
        .map_err(|e| Failure::Runtime(format!("cannot listen for SIGTERM/SIGINT: {e}")))?;
    let metrics = telemetry::install_metrics(role, &policy_id)?;

    // Health first, so an orchestrator sees a live but unready process while
    // the start-up checks run.
    let listener = TcpListener::bind(common.listen).await.map_err(|e| {
        Failure::setting(
            LISTEN,
            format!("cannot listen on {} ({e})", common.listen),
            "pick a free address, or port 0 for any free port",
        )
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::Runtime(format!("cannot read the bound address: {e}")))?;
    info!("listening on {address}");
    let readiness = Arc::new(Readiness::new(role, policy_id.clone(), shutdown.clone()));
    let stop_http = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        http::router(readiness.clone(), metrics),
        stop_http.clone(),
    ));

    let store = connect_store(common, &checked.policy.store).await?;
    declare_topology(role, common, &checked.spec).await?;
    // A stage worker is not ready before its downstream URLs are checked.
    let stop_check = CancellationToken::new();
    let checked_downstreams = match &checked.job {
        Job::Stage { downstreams, .. } => Some(contract::check(
            downstreams.clone(),
            readiness.clone(),
            stop_check.clone(),
        )),
        Job::Reconcile => None,
    };
    readiness.started(store.clone());
    info!(
        role = role.as_str(),
        policy_id = %policy_id,
        namespace = common.fleet.namespace.name,
        actor = checked.actor,
        "started"
    );

    let identity = Identity {
        actor: checked.actor.clone(),
        role: role.as_str().to_owned(),
        policy_id: policy_id.to_string(),
        started_at,
    };
    let env = Env {
        store: store.clone(),
        policy: Arc::new(checked.policy),
        policy_id,
        spec: Arc::new(checked.spec),
        actor: checked.actor,
    };
    // The heartbeat and the pause watch last until the work is drained.
    let stop_presence = CancellationToken::new();
    let worked = match checked.job {
        Job::Stage {
            stage,
            downstreams,
            consume,
        } => {
            let (paused, watcher) =
                presence::pause_watch(store.clone(), stage, stop_presence.clone()).await;
            let (verified, checker) = checked_downstreams.expect("a stage job checks its APIs");
            let (held, holder) = contract::hold(paused.clone(), verified, stop_presence.clone());
            let beat = presence::heartbeat(
                store,
                identity,
                Some(downstreams.clone()),
                Some(paused.clone()),
                stop_presence.clone(),
            );
            let run = Consuming {
                env,
                role,
                common,
                consume: &consume,
                shutdown: shutdown.clone(),
                held,
            };
            let work = async {
                let worked = match stage {
                    Stage::Inventory => run.queue(InventoryStage::new(downstreams)).await,
                    Stage::Payment => run.queue(PaymentStage::new(downstreams)).await,
                    Stage::Shipping => run.queue(ShippingStage::new(downstreams)).await,
                };
                stop_presence.cancel();
                stop_check.cancel();
                let _ = tokio::join!(beat, watcher, holder, checker);
                worked
            };
            within_drain(&shutdown, consume.shutdown_grace + CLOSE_ALLOWANCE, work).await
        }
        Job::Reconcile => {
            let beat = presence::heartbeat(store, identity, None, None, stop_presence.clone());
            let worked = reconcile(env, common, shutdown).await;
            stop_presence.cancel();
            let _ = beat.await;
            worked
        }
    };

    stop_http.cancel();
    // A scrape in progress may finish; a stuck client must not hold the exit.
    match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!("the health server failed: {e}"),
        Ok(Err(e)) => warn!("the health server stopped abnormally: {e}"),
        Err(_) => warn!("the health server did not stop within {HTTP_DRAIN:?}; exiting anyway"),
    }
    if worked.is_ok() {
        info!("drained, exiting");
    }
    worked
}

/// Runs `work` to its end, or until `allowed` has passed since the drain
/// began: an orchestrator kills a process that outlives its grace period,
/// so the worker ends first, saying why.
async fn within_drain(
    shutdown: &CancellationToken,
    allowed: Duration,
    work: impl Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    let overrun = async {
        shutdown.cancelled().await;
        tokio::time::sleep(allowed).await;
    };
    tokio::select! {
        worked = work => worked,
        () = overrun => Err(Failure::Runtime(format!(
            "the drain did not end within {allowed:?}; exiting with what is unsettled \
             (the broker returns it to the queue)"
        ))),
    }
}

/// Redis must answer at start: a worker that cannot record anything must
/// not take deliveries. The policy says how many replicas each state write
/// waits for.
async fn connect_store(common: &Common, policy: &StorePolicy) -> Result<Store, Failure> {
    let shown = without_password(&common.fleet.redis.url);
    // Error texts may quote the URL: never with its password.
    let masked = |e: &StoreError| e.to_string().replace(&common.fleet.redis.url, &shown);
    let fix = "start Redis (`redis-server --daemonize yes`) or point the setting at a running one";
    let options = StoreOptions {
        namespace: common.fleet.namespace.name.clone(),
        replica_acks: policy.replica_acks,
        replica_ack_timeout: policy.replica_ack_timeout,
        ..StoreOptions::default()
    };
    // A Redis that is slow to answer (busy, starting, failing over) is asked
    // again until the start-up deadline: a worker restarted in such a moment
    // would otherwise exit after one short timeout. The last answer is the
    // one reported.
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let connected = loop {
        let attempt = tokio::time::timeout_at(
            deadline,
            Store::connect_with(&common.fleet.redis.url, options.clone()),
        )
        .await;
        match attempt {
            Ok(Err(StoreError::Unavailable(_)))
                if tokio::time::Instant::now() + CONNECT_RETRY < deadline =>
            {
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            attempt => break attempt,
        }
    };
    match connected {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e @ StoreError::InvalidNamespace(_))) => Err(Failure::setting(
            NAMESPACE,
            e,
            "use 1-64 ASCII letters, digits, `.`, `-` and `_`",
        )),
        Ok(Err(e @ StoreError::InvalidArgument(_))) => Err(Failure::setting(
            REDIS_URL,
            masked(&e),
            "give a URL such as redis://host:6379 or redis+cluster://host:7001,host:7002",
        )),
        Ok(Err(e)) => Err(Failure::setting(
            REDIS_URL,
            format!("cannot reach Redis at {shown} ({})", masked(&e)),
            fix,
        )),
        Err(_) => Err(Failure::setting(
            REDIS_URL,
            format!("cannot reach Redis at {shown}: no answer within {CONNECT_TIMEOUT:?}"),
            fix,
        )),
    }
}

/// RabbitMQ must answer at start, and the namespace's queues must match the
/// policy; every role declares them, so the first process up creates them
/// and the reconciler can publish before any worker has started.
async fn declare_topology(role: Role, common: &Common, spec: &TopologySpec) -> Result<(), Failure> {
    let shown = without_password(&common.fleet.amqp.url);
    let name = format!("{}.{}.startup", common.fleet.namespace.name, role.binary());
    // A cluster's list is tried node by node: a node that drops packets
    // must not use up the time the next one needs to answer.
    let nodes = orderflow_broker::node_urls(&common.fleet.amqp.url).len();
    let allowed = CONNECT_TIMEOUT.saturating_mul(u32::try_from(nodes).unwrap_or(u32::MAX));
    let connection = match tokio::time::timeout(
        allowed,
        orderflow_broker::connect_named(&common.fleet.amqp.url, &name),
    )
    .await
    {
        Ok(Ok(connection)) => connection,
        // The broker's text says where and what to check.
        Ok(Err(e)) => return Err(Failure::Startup(format!("{AMQP_URL}: {}", chain(&e)))),
        Err(_) => {
            return Err(Failure::setting(
                AMQP_URL,
                format!("cannot connect to RabbitMQ at {shown}: no answer within {allowed:?}"),
                "start RabbitMQ (`rabbitmq-server -detached`) or point the setting at a running one",
            ));
        }
    };
    let declared = orderflow_broker::declare(&connection, spec).await;
    orderflow_broker::close(&connection, "start-up checks done").await;
    declared.map_err(|e| match e {
        BrokerError::TopologyConflict { .. } | BrokerError::ExchangeConflict { .. } => {
            Failure::Startup(format!(
                "{POLICY}: the policy does not match the queues namespace `{}` already has: {}",
                common.fleet.namespace.name,
                chain(&e)
            ))
        }
        _ => Failure::Startup(format!(
            "cannot declare the queues of namespace `{}` on RabbitMQ at {shown}: {}",
            common.fleet.namespace.name,
            chain(&e)
        )),
    })
}

/// What a stage worker runs its logic with.
struct Consuming<'a> {
    env: Env,
    role: Role,
    common: &'a Common,
    consume: &'a Consume,
    shutdown: CancellationToken,
    /// Whether an operator paused the stage or its downstream URLs have
    /// not passed the contract check: no deliveries while either holds.
    held: watch::Receiver<bool>,
}

impl Consuming<'_> {
    /// The runtime's stage loop around the stage's logic, on the stage's
    /// work queue, until drained; taking nothing while the stage is paused.
    async fn queue<L: StageLogic>(self, logic: L) -> Result<(), Failure> {
        let spec = TopologySpec::clone(&self.env.spec);
        let queue = spec.names().work_queue(logic.stage());
        let config = ConsumerConfig {
            amqp_url: self.common.fleet.amqp.url.clone(),
            queue: queue.clone(),
            prefetch: self.consume.prefetch,
            concurrency: usize::try_from(self.consume.concurrency).unwrap_or(usize::MAX),
            shutdown_grace: self.consume.shutdown_grace,
            consumer_tag_prefix: format!(
                "{}.{}",
                self.common.fleet.namespace.name,
                self.role.binary()
            ),
        };
        let runner = StageRunner::new(logic, self.env);
        Consumer::run_pausable(config, spec, runner, self.shutdown, self.held)
            .await
            .map_err(|e| Failure::Runtime(format!("consuming `{queue}`: {}", chain(&e))))
    }
}

async fn reconcile(env: Env, common: &Common, shutdown: CancellationToken) -> Result<(), Failure> {
    let publisher = Publisher::lazy(
        &common.fleet.amqp.url,
        &format!("{}.reconciler.publisher", common.fleet.namespace.name),
    );
    let reconciled = Reconciler::new(env, publisher.clone()).run(shutdown).await;
    publisher.close().await;
    reconciled.map_err(|e| Failure::Runtime(format!("reconciler: {}", chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_whose_closing_hangs_ends_after_its_allowance() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let hanging = std::future::pending::<Result<(), Failure>>();
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            within_drain(&shutdown, Duration::from_millis(50), hanging),
        )
        .await
        .expect("the allowance ends it");
        assert!(
            matches!(&ended, Err(Failure::Runtime(text)) if text.contains("the drain did not end")),
            "{ended:?}"
        );
    }

    #[tokio::test]
    async fn work_without_a_drain_is_never_cut_short() {
        let shutdown = CancellationToken::new();
        let work = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        };
        let ended = within_drain(&shutdown, Duration::ZERO, work).await;
        assert!(ended.is_ok(), "{ended:?}");
    }
}
