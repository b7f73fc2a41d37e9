//! What a worker tells the fleet about itself and what it learns from it:
//! a heartbeat every few seconds (role, actor, policy, start time, the
//! breaker of each downstream client, whether it is paused), which
//! `orderctl status` reads, and — for a stage worker — whether an operator
//! paused its stage, looked up every couple of seconds.

use orderflow_core::Stage;
use orderflow_stages::Downstreams;
use orderflow_store::{Heartbeat, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often a worker writes its heartbeat...
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// ...and how long one lasts: a few missed beats, then the worker is gone.
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);
/// How often a stage worker looks whether its stage is paused.
const PAUSE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Who this process is, for its heartbeat.
pub struct Identity {
    pub actor: String,
    pub role: String,
    pub policy_id: String,
    pub started_at: jiff::Timestamp,
}

/// Writes the heartbeat every few seconds until `stop`, then removes it,
/// so a drained worker leaves the fleet's view at once.
pub fn heartbeat(
    store: Store,
    identity: Identity,
    downstreams: Option<Arc<Downstreams>>,
    paused: Option<watch::Receiver<bool>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let beat = Heartbeat {
                actor: identity.actor.clone(),
                role: identity.role.clone(),
                policy_id: identity.policy_id.clone(),
                started_at: identity.started_at,
                breakers: downstreams.as_deref().map(breakers).unwrap_or_default(),
                paused: paused.as_ref().is_some_and(|paused| *paused.borrow()),
            };
            if let Err(err) = store.write_heartbeat(&beat, HEARTBEAT_TTL).await {
                debug!(error = %err, "heartbeat not written; trying again shortly");
            }
        }
        if let Err(err) = store.remove_heartbeat(&identity.actor).await {
            debug!(error = %err, "heartbeat not removed; it expires by itself");
        }
    })
}

fn breakers(downstreams: &Downstreams) -> BTreeMap<Stage, orderflow_core::decide::BreakerState> {
    BTreeMap::from([
        (Stage::Inventory, downstreams.inventory.0.breaker().state()),
        (Stage::Payment, downstreams.payment.0.breaker().state()),
        (Stage::Shipping, downstreams.shipping.0.breaker().state()),
    ])
}

/// Whether `stage` is paused, kept up to date every couple of seconds
/// until `stop`. Looked up once before returning, so a worker started
/// while its stage is paused takes nothing. While Redis cannot be read the
/// last answer stands.
pub async fn pause_watch(
    store: Store,
    stage: Stage,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let initially = match store.stage_pause(stage).await {
        Ok(pause) => pause.is_some(),
        Err(err) => {
            warn!(error = %err, "cannot read whether the stage is paused; assuming it is not");
            false
        }
    };
    if initially {
        info!(stage = %stage, "the stage is paused: taking no deliveries until it is resumed");
    }
    let (send, receive) = watch::channel(initially);
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(PAUSE_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match store.stage_pause(stage).await {
                Ok(Some(pause)) => {
                    if !send.send_replace(true) {
                        info!(stage = %stage, by = pause.actor, reason = pause.reason,
                            "the stage was paused: finishing in-flight deliveries, then taking none");
                    }
                }
                Ok(None) => {
                    if send.send_replace(false) {
                        info!(stage = %stage, "the stage was resumed: consuming again");
                    }
                }
                Err(err) => {
                    debug!(error = %err, "cannot read whether the stage is paused; keeping the last answer");
                }
            }
        }
    });
    (receive, task)
}
