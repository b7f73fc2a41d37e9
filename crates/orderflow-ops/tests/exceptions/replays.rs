//! `replay`: the copy sent, the replay id, dry runs, and the stage's
//! idempotency record when a message is replayed again.

use crate::common::{Fleet, escalation, malformed, step};
use orderflow_broker::{Consumer, admin};
use orderflow_core::message::OrderId;
use orderflow_core::{OrderState, Stage};
use orderflow_ops::Kind;
use orderflow_ops::exceptions::{
    self, HaltThreshold, ReplayOutcome, ReplayReport, ReplayRequest, Selection,
};
use orderflow_runtime::noop::NoopStage;
use orderflow_runtime::{Env, StageRunner};
use std::sync::Arc;
use std::time::Duration;

pub fn request(stage: Stage, selection: Selection, replay_id: &str) -> ReplayRequest {
    ReplayRequest {
        stage,
        selection,
        dry_run: false,
        rate: None,
        canary: 0,
        canary_timeout: Duration::from_secs(10),
        halt: HaltThreshold::default(),
        replay_id: replay_id.to_owned(),
        limit: 1000,
    }
}

async fn replay(fleet: &Fleet, request: &ReplayRequest) -> ReplayReport {
    exceptions::replay(&fleet.queues, &fleet.operator(), request)
        .await
        .unwrap_or_else(|e| panic!("replay: {e}"))
}

#[tokio::test]
async fn a_replayed_copy_keeps_its_id_and_first_attempt_resets_its_attempts_and_is_audited() {
    let fleet = Fleet::new().await;
    let order = fleet.order_in("o-1", OrderState::Reserved).await;
    fleet
        .park_step(
            Stage::Payment,
            "o-1",
            "o-1.payment.v4.0",
            "payment_retries_exhausted",
        )
        .await;

    let report = replay(
        &fleet,
        &request(
            Stage::Payment,
            Selection::Ids(vec!["o-1.payment.v4.0".into()]),
            "r-one",
        ),
    )
    .await;
    assert_eq!(
        (report.sent, report.halted.clone()),
        (1, None),
        "{report:#?}"
    );
    let sent = fleet.drain(&fleet.work(Stage::Payment)).await;
    assert_eq!(sent.len(), 1);
    let meta = sent[0].meta();
    assert_eq!(
        meta.message_id.as_deref(),
        Some("o-1.payment.v4.0"),
        "the id is kept"
    );
    assert_eq!(meta.attempt, Some(1));
    // The first attempt (an hour ago) is kept: the replay window counts
    // from it, not from the replay.
    let hour_ago = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    assert!(
        meta.first_attempt_at
            .is_some_and(|at| (hour_ago - 60_000..=hour_ago).contains(&at)),
        "the first attempt is kept: {:?}",
        meta.first_attempt_at
    );
    assert_eq!(meta.reason, None);
    assert_eq!(meta.class, None);
    assert_eq!(meta.extra["orderflow-replay-id"], "r-one");
    assert_eq!(meta.policy_id.as_deref(), Some(fleet.policy.id().as_str()));
    assert_eq!(sent[0].body(), step("o-1", Stage::Payment));
    assert!(sent[0].deaths().is_empty(), "a fresh copy, no x-death");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 0);

    let audit = fleet.store.order_audit(&order).await.unwrap();
    let note = audit.last().unwrap();
    assert_eq!(note.event, "operator.replay");
    assert_eq!(note.actor, "operator:tester");
    let why = note.reason.as_deref().unwrap();
    assert!(
        why.contains("r-one") && why.contains("o-1.payment.v4.0"),
        "{why}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn the_same_replay_id_never_sends_a_message_twice() {
    let fleet = Fleet::new().await;
    fleet.order_in("o-1", OrderState::Reserved).await;
    let id = "o-1.payment.v4.0";
    fleet
        .park_step(Stage::Payment, "o-1", id, "payment_unresolved")
        .await;
    let once = request(Stage::Payment, Selection::All, "r-twice");
    assert_eq!(replay(&fleet, &once).await.sent, 1);

    // The same message is back in the queue (its ack was lost, or someone
    // imported it again): the same replay id acknowledges it, sends nothing.
    fleet
        .park_step(Stage::Payment, "o-1", id, "payment_unresolved")
        .await;
    let twice = replay(&fleet, &once).await;
    assert_eq!((twice.sent, twice.already_sent), (0, 1), "{twice:#?}");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 0);
    // Asked for by id after it left the queue: reported, not an error.
    let by_id = replay(
        &fleet,
        &request(Stage::Payment, Selection::Ids(vec![id.into()]), "r-twice"),
    )
    .await;
    assert_eq!(by_id.already_sent, 1);
    assert_eq!(
        fleet.depth(&fleet.work(Stage::Payment)).await,
        1,
        "sent once"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_replays_with_one_replay_id_send_each_message_once() {
    let fleet = Fleet::new().await;
    for n in 0..20 {
        let order = format!("o-{n}");
        fleet.order_in(&order, OrderState::Reserved).await;
        fleet
            .park_step(
                Stage::Payment,
                &order,
                &format!("{order}.payment.v4.0"),
                "payment_unresolved",
            )
            .await;
    }
    let mut both = request(Stage::Payment, Selection::All, "r-race");
    both.rate = Some(std::num::NonZeroU32::new(200).unwrap());
    // A second operator's connections to the same namespace.
    let queues = exceptions::ExceptionQueues::connect(&crate::common::amqp_url(), &fleet.ns)
        .await
        .unwrap();
    let second = exceptions::Operator {
        store: &fleet.store,
        policy: &fleet.policy,
        actor: "other",
    };
    let first = fleet.operator();
    let (a, b) = tokio::join!(
        exceptions::replay(&fleet.queues, &first, &both),
        exceptions::replay(&queues, &second, &both),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, 20, "{a:#?}\n{b:#?}");
    assert_eq!(
        fleet.depth(&fleet.work(Stage::Payment)).await,
        20,
        "each sent once"
    );
    let ids: std::collections::HashSet<String> = fleet
        .drain(&fleet.work(Stage::Payment))
        .await
        .iter()
        .filter_map(|m| m.meta().message_id.clone())
        .collect();
    assert_eq!(ids.len(), 20);
    queues.close().await;
    fleet.stop().await;
}

/// The stage loop keeps an idempotency record per message id: a message
/// replayed again under another replay id is re-emitted from it, never run
/// again.
#[tokio::test]
async fn another_replay_id_of_the_same_message_is_re_emitted_not_repeated() {
    let fleet = Fleet::new().await;
    let order = fleet.order_in("o-1", OrderState::Reserved).await;
    let id = "o-1.payment.v4.0";
    let runs = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let runner = StageRunner::new(NoopStage::new(Stage::Payment, runs.clone()), env(&fleet));
    fleet
        .park_step(Stage::Payment, "o-1", id, "payment_unresolved")
        .await;
    assert_eq!(
        replay(&fleet, &request(Stage::Payment, Selection::All, "r-first"))
            .await
            .sent,
        1
    );
    work(&fleet, &runner).await;
    let paid = fleet.store.get_order(&order).await.unwrap().unwrap();
    assert_eq!(paid.state, OrderState::Paid);
    let record = fleet
        .store
        .get_step_result(&order, Stage::Payment, &format!("msg:{id}"))
        .await
        .unwrap();
    assert!(record.is_some(), "the stage recorded the message id");

    fleet
        .park_step(Stage::Payment, "o-1", id, "payment_unresolved")
        .await;
    assert_eq!(
        replay(&fleet, &request(Stage::Payment, Selection::All, "r-second"))
            .await
            .sent,
        1
    );
    work(&fleet, &runner).await;
    let after = fleet.store.get_order(&order).await.unwrap().unwrap();
    assert_eq!(after.version, paid.version, "no second move");
    assert_eq!(
        runs.lock().unwrap()[&("o-1".to_owned(), OrderState::Paid)],
        1,
        "run once"
    );
    let next = fleet.drain(&fleet.work(Stage::Shipping)).await;
    assert_eq!(next.len(), 2, "re-emitted");
    assert_eq!(
        next[0].meta().message_id,
        next[1].meta().message_id,
        "the same message again"
    );
    drop(runner);
    fleet.stop().await;
}

/// One worker delivery: take the replayed copy from the payment queue and
/// settle it as the stage loop does.
async fn work(fleet: &Fleet, runner: &StageRunner<NoopStage>) {
    let queue = fleet.work(Stage::Payment);
    let fetched = admin::get(&fleet.connection, &queue)
        .await
        .unwrap()
        .expect("a replayed copy");
    let settlement =
        orderflow_broker::Handler::handle(runner, fetched.message().clone(), &fleet.publisher)
            .await;
    fetched.settle(settlement).await.unwrap();
}

pub fn env(fleet: &Fleet) -> Env {
    Env {
        store: fleet.store.clone(),
        policy: Arc::new(fleet.policy.clone()),
        policy_id: fleet.policy.id(),
        spec: Arc::new(fleet.spec.clone()),
        actor: "payment-worker@test".into(),
    }
}

#[tokio::test]
async fn a_dry_run_says_what_would_happen_and_sends_nothing() {
    let fleet = Fleet::new().await;
    fleet.order_in("o-live", OrderState::Reserved).await;
    fleet.order_in("o-parked", OrderState::Escalated).await;
    fleet
        .park_step(Stage::Payment, "o-live", "a", "payment_unresolved")
        .await;
    fleet
        .park_step(Stage::Payment, "o-parked", "b", "payment_unresolved")
        .await;
    fleet
        .park_step(Stage::Payment, "o-gone", "c", "payment_unresolved")
        .await;
    let mut dry = request(
        Stage::Payment,
        Selection::Reason("payment_unresolved".into()),
        "r-dry",
    );
    dry.dry_run = true;
    let report = replay(&fleet, &dry).await;
    assert!(report.dry_run);
    assert_eq!(report.messages.len(), 3);
    assert!(
        report
            .messages
            .iter()
            .all(|m| m.outcome == ReplayOutcome::Planned)
    );
    let live = report.messages[0].prediction.as_ref().unwrap();
    assert_eq!(live.order_state, Some(OrderState::Reserved));
    assert!(
        live.stage_will.starts_with("runs again"),
        "{}",
        live.stage_will
    );
    let decision = live.policy.as_ref().expect("the policy's decision");
    assert_eq!(decision.policy_id, fleet.policy.id().as_str());
    assert!(!decision.rule.is_empty());
    let parked = report.messages[1].prediction.as_ref().unwrap();
    assert!(
        parked.stage_will.contains("absorbs") && parked.stage_will.contains("escalated"),
        "{}",
        parked.stage_will
    );
    let today = parked
        .policy
        .as_ref()
        .expect("what the policy makes of the outcome");
    assert!(!today.applies, "the stage absorbs it");
    assert!(decision.applies);
    let gone = report.messages[2].prediction.as_ref().unwrap();
    assert!(
        gone.stage_will.contains("order_not_found"),
        "{}",
        gone.stage_will
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["messages"][0]["outcome"], "planned");

    assert_eq!(
        fleet.depth(&fleet.work(Stage::Payment)).await,
        0,
        "nothing sent"
    );
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        3,
        "nothing taken"
    );
    let audit = fleet
        .store
        .order_audit(&OrderId::parse("o-live").unwrap())
        .await
        .unwrap();
    assert!(
        audit.iter().all(|e| e.event != "operator.replay"),
        "nothing audited"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_still_malformed_message_is_not_replayed_and_unknown_ids_are_refused() {
    let fleet = Fleet::new().await;
    fleet
        .park(
            Stage::Inventory,
            b"{\"schema\":\"order.placed/v1\",\"order_id\":\"x\"}",
            malformed("m-bad", "/customer_id: missing"),
        )
        .await;
    let report = replay(&fleet, &request(Stage::Inventory, Selection::All, "r-bad")).await;
    assert_eq!((report.sent, report.skipped), (0, 1));
    assert!(
        report.messages[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("exceptions edit")
    );
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Inventory)).await,
        1,
        "it stays"
    );

    let err = exceptions::replay(
        &fleet.queues,
        &fleet.operator(),
        &request(
            Stage::Inventory,
            Selection::Ids(vec!["m-bad".into(), "no-such".into()]),
            "r-bad2",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    assert!(err.to_string().contains("no-such"), "{err}");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Inventory)).await, 1);
    fleet.stop().await;
}

/// A step first tried longer ago than `exceptions.replay_window` (24 h by
/// default) may meet a downstream that forgot its idempotency key: neither
/// the dry run nor the replay sends it, and it stays for a person.
#[tokio::test]
async fn a_step_first_tried_before_the_replay_window_is_not_replayed() {
    let fleet = Fleet::new().await;
    let order = fleet.order_in("o-old", OrderState::Reserved).await;
    let mut meta = escalation(
        Stage::Payment,
        order.as_str(),
        "m-old",
        "payment_unresolved",
    );
    meta.first_attempt_at = Some(jiff::Timestamp::now().as_millisecond() - 25 * 3_600_000);
    fleet
        .park(Stage::Payment, &step(order.as_str(), Stage::Payment), meta)
        .await;

    let mut dry = request(Stage::Payment, Selection::All, "r-old");
    dry.dry_run = true;
    let planned = replay(&fleet, &dry).await;
    assert_eq!(planned.messages[0].outcome, ReplayOutcome::Skipped);

    let report = replay(&fleet, &request(Stage::Payment, Selection::All, "r-old")).await;
    assert_eq!((report.sent, report.skipped), (0, 1));
    let detail = report.messages[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("1day 1h") && detail.contains("exceptions.replay_window (1day)"),
        "{detail}"
    );
    assert!(detail.contains("orderctl order resolve"), "{detail}");
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        1,
        "it stays"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_valid_producer_message_is_replayed_to_the_ingress_exchange() {
    let fleet = Fleet::new().await;
    let body = crate::common::placed("o-new").to_string();
    fleet
        .park(
            Stage::Inventory,
            body.as_bytes(),
            malformed("placed.o-new", "/items: was missing before a fix upstream"),
        )
        .await;
    let report = replay(
        &fleet,
        &request(Stage::Inventory, Selection::All, "r-ingress"),
    )
    .await;
    assert_eq!(report.sent, 1, "{report:#?}");
    assert_eq!(
        report.messages[0].destination.as_deref(),
        Some(format!("exchange {}.orders, key order.placed", fleet.ns).as_str())
    );
    let sent = fleet.drain(&fleet.work(Stage::Inventory)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].routing_key(), "order.placed");
    assert_eq!(sent[0].meta().message_id.as_deref(), Some("placed.o-new"));
    assert!(
        !sent[0]
            .meta()
            .extra
            .contains_key("orderflow-validation-errors")
    );
    // No order yet: audited in the fleet's stream.
    let notes = fleet.store.fleet_notes(None, 10).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].event, "operator.replay");
    assert!(
        notes[0].subject.contains("placed.o-new"),
        "{}",
        notes[0].subject
    );
    fleet.stop().await;
}

/// Used by `governed`: consume a stage's work queue with a logic.
pub fn consume<L: orderflow_runtime::StageLogic>(
    fleet: &Fleet,
    logic: L,
) -> (
    tokio::task::JoinHandle<()>,
    tokio_util::sync::CancellationToken,
) {
    let stage = logic.stage();
    let runner = StageRunner::new(logic, env(fleet));
    let config = orderflow_broker::ConsumerConfig {
        amqp_url: crate::common::amqp_url(),
        queue: fleet.work(stage),
        prefetch: 4,
        concurrency: 2,
        shutdown_grace: Duration::from_secs(2),
        consumer_tag_prefix: format!("{}-test", stage),
    };
    let token = tokio_util::sync::CancellationToken::new();
    let spec = fleet.spec.clone();
    let shutdown = token.clone();
    let handle = tokio::spawn(async move {
        Consumer::run(config, spec, runner, shutdown)
            .await
            .expect("consumer");
    });
    (handle, token)
}
