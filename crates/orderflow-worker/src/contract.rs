//! The downstream contract check: before a stage worker takes deliveries,
//! each API URL it has must answer a status query for a key that cannot
//! exist with the contract's JSON 404 (docs/downstream-api.md). A wrong
//! URL — an ingress's default page that answers `200 text/html` to
//! everything, another service — would otherwise be called with real
//! orders. Until every URL passes, the worker is unready (`/readyz` says
//! which URL answered what, and so does a warning in the log) and consumes
//! nothing; it checks again every few seconds, so it becomes ready once
//! the URL is right. After that, each call is judged on its own answer.

use crate::config::downstream_url;
use crate::http::Readiness;
use orderflow_core::Stage;
use orderflow_stages::Downstreams;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often a failed check is tried again.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Checks until every URL passes (or `stop`); the receiver turns `true`
/// then. Meanwhile `readiness` carries what is wrong.
pub fn check(
    downstreams: Arc<Downstreams>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    readiness.downstreams(Some(
        "checking that the downstream URLs answer as their APIs".to_owned(),
    ));
    let (send, receive) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut said = String::new();
        loop {
            let problems = problems(&downstreams).await;
            if problems.is_empty() {
                readiness.downstreams(None);
                info!("the downstream URLs answer as their APIs: taking deliveries");
                let _ = send.send(true);
                return;
            }
            let text = problems.join("; ");
            if text != said {
                for problem in &problems {
                    warn!("not ready: {problem}");
                }
                said.clone_from(&text);
            }
            readiness.downstreams(Some(text));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RECHECK_EVERY) => {}
            }
        }
    });
    (receive, task)
}

/// What is wrong with each URL, named by its setting.
async fn problems(downstreams: &Downstreams) -> Vec<String> {
    let (inventory, payment, shipping) = tokio::join!(
        downstreams.inventory.check_contract(),
        downstreams.payment.check_contract(),
        downstreams.shipping.check_contract(),
    );
    [
        (Stage::Inventory, inventory),
        (Stage::Payment, payment),
        (Stage::Shipping, shipping),
    ]
    .into_iter()
    .filter_map(|(stage, checked)| {
        let setting = downstream_url(stage).env;
        checked
            .err()
            .map(|why| format!("{setting} is not the API of the contract: {why}"))
    })
    .collect()
}

/// `true` while the consumer must take nothing: an operator paused the
/// stage, or the downstream check has not passed.
pub fn hold(
    mut paused: watch::Receiver<bool>,
    mut checked: watch::Receiver<bool>,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let held = |paused: bool, checked: bool| paused || !checked;
    let (send, receive) = watch::channel(held(*paused.borrow(), *checked.borrow()));
    let task = tokio::spawn(async move {
        // A watch whose sender is gone has its last word: stop asking it.
        let (mut pause_open, mut check_open) = (true, true);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = paused.changed(), if pause_open => pause_open = changed.is_ok(),
                changed = checked.changed(), if check_open => check_open = changed.is_ok(),
            }
            send.send_replace(held(*paused.borrow(), *checked.borrow()));
        }
    });
    (receive, task)
}
