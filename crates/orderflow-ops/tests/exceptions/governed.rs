//! Governed replays against a stage that works: a canary first, a halt
//! when replayed messages come back.

use crate::common::Fleet;
use crate::replays::{consume, request};
use orderflow_core::{OrderState, Stage};
use orderflow_ops::exceptions::{self, Halt, HaltThreshold, ReplayOutcome, Selection};
use orderflow_runtime::noop::NoopStage;
use orderflow_runtime::{Effect, Emission, Env, Job, Planned, StageLogic};
use orderflow_store::OrderRecord;
use std::num::NonZeroU32;
use std::time::Duration;

/// A payment stage whose provider fails for good: every order it takes is
/// escalated and parked again.
struct FailingPayment;

impl StageLogic for FailingPayment {
    fn stage(&self) -> Stage {
        Stage::Payment
    }

    async fn run(
        &self,
        order: &OrderRecord,
        _job: &Job,
        _env: &Env,
    ) -> Result<Effect, orderflow_runtime::Error> {
        if order.state != OrderState::Reserved {
            return Ok(Effect::default());
        }
        Ok(Effect {
            transition: Some(Planned {
                to: OrderState::Escalated,
                reason: Some("payment_retries_exhausted".into()),
                event: "escalated".into(),
                rule: "test.fail".into(),
                fields: vec![],
            }),
            emissions: vec![Emission::Exception {
                reason: "payment_retries_exhausted".into(),
                outcome: None,
                detail: None,
                keep_original: false,
            }],
            note: None,
        })
    }
}

async fn parked_orders(fleet: &Fleet, n: usize, state: OrderState) {
    for k in 0..n {
        let order = format!("o-{k}");
        fleet.order_in(&order, state).await;
        fleet
            .park_step(
                Stage::Payment,
                &order,
                &format!("{order}.payment.v9.0"),
                "payment_retries_exhausted",
            )
            .await;
    }
}

#[tokio::test]
async fn a_canary_that_leaves_the_exception_path_lets_the_rest_follow() {
    let fleet = Fleet::new().await;
    parked_orders(&fleet, 3, OrderState::Reserved).await;
    let runs = Default::default();
    let (worker, stop) = consume(&fleet, NoopStage::new(Stage::Payment, runs));
    let mut canary = request(Stage::Payment, Selection::All, "r-canary");
    canary.canary = 1;
    let report = exceptions::replay(&fleet.queues, &fleet.operator(), &canary)
        .await
        .unwrap();
    assert_eq!(report.halted, None, "{report:#?}");
    assert_eq!(report.sent, 3);
    stop.cancel();
    worker.await.unwrap();
    let first = fleet
        .store
        .get_order(&orderflow_core::message::OrderId::parse("o-0").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.state, OrderState::Paid, "the canary went through");
    fleet.stop().await;
}

#[tokio::test]
async fn a_canary_whose_order_does_not_move_halts_the_replay() {
    let fleet = Fleet::new().await;
    // Escalated orders: the stage absorbs their step messages.
    parked_orders(&fleet, 3, OrderState::Escalated).await;
    let (worker, stop) = consume(&fleet, NoopStage::new(Stage::Payment, Default::default()));
    let mut canary = request(Stage::Payment, Selection::All, "r-stuck");
    canary.canary = 1;
    canary.canary_timeout = Duration::from_secs(2);
    let report = exceptions::replay(&fleet.queues, &fleet.operator(), &canary)
        .await
        .unwrap();
    let Some(Halt::CanaryUnsettled { ids, states, .. }) = &report.halted else {
        panic!("halted on the canary: {report:#?}");
    };
    assert_eq!(ids, &["o-0.payment.v9.0"]);
    assert!(states[0].contains("escalated"), "{states:?}");
    assert_eq!((report.sent, report.not_sent), (1, 2));
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        2,
        "the rest stay"
    );
    stop.cancel();
    worker.await.unwrap();
    fleet.stop().await;
}

#[tokio::test]
async fn a_replay_halts_by_itself_when_replayed_messages_come_back() {
    let fleet = Fleet::new().await;
    parked_orders(&fleet, 8, OrderState::Reserved).await;
    let (worker, stop) = consume(&fleet, FailingPayment);
    let mut governed = request(Stage::Payment, Selection::All, "r-halt");
    governed.rate = NonZeroU32::new(2);
    governed.halt = HaltThreshold::Count(1);
    let report = exceptions::replay(&fleet.queues, &fleet.operator(), &governed)
        .await
        .unwrap();
    let Some(Halt::CameBack { came_back, .. }) = report.halted else {
        panic!("halted: {report:#?}");
    };
    assert!(came_back >= 1);
    assert!(report.sent < 8, "halted before the end: {report:#?}");
    assert!(report.not_sent > 0);
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.outcome == ReplayOutcome::CameBack)
    );
    // Every message sent comes back (this provider fails them all); what
    // was not sent is still parked beside them.
    let queue = fleet.exceptions(Stage::Payment);
    let mut parked = 0;
    for _ in 0..50 {
        parked = fleet.depth(&queue).await as usize;
        if parked == report.not_sent + report.sent {
            break;
        }
    }
    assert_eq!(parked, report.not_sent + report.sent);
    stop.cancel();
    worker.await.unwrap();
    fleet.stop().await;
}
