use crate::common::{Fleet, json_of, to};
use downstream_sim::ledger::{PaymentState, ReservationState};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, OrderState, Stage};
use orderflow_ops::{CancelBy, Decision, Done, Kind, PaymentOutcome};
use std::time::Duration;

/// Reserved for real, then the charge's outcome unknown: `payment_pending`.
async fn pending_payment(fleet: &Fleet, id: &str) -> (OrderId, String) {
    let order_id = OrderId::parse(id).unwrap();
    let reservation = fleet.reserve(&order_id).await;
    fleet
        .order(
            id,
            &[
                to(OrderState::Reserved).made(Stage::Inventory, &reservation),
                to(OrderState::PaymentPending)
                    .because("timeout / unknown")
                    .outcome(Stage::Payment, FailureClass::Timeout, Certainty::Unknown),
            ],
        )
        .await;
    (order_id, reservation)
}

fn reservation_state(ledger: &downstream_sim::Ledger, id: &str) -> ReservationState {
    ledger
        .reservations
        .iter()
        .find(|r| r.id == id)
        .expect("the reservation is in the ledger")
        .state
}

#[tokio::test]
async fn a_payment_resolved_as_succeeded_goes_to_shipping_once_per_action_id() {
    let fleet = Fleet::with_apis().await;
    let (id, _) = pending_payment(&fleet, "o-paid").await;
    // The charge did land; the worker only never heard.
    let payment = fleet.charge(&id, "tok_ok").await;

    let input = fleet.input(&id, Some("act-1"));
    let report =
        orderflow_ops::resolve_payment(&fleet.target, &input, PaymentOutcome::Succeeded, None)
            .await
            .unwrap();
    assert_eq!(report.done, Done::Acted);
    assert_eq!(
        (report.from, report.to),
        (OrderState::PaymentPending, Some(OrderState::Paid))
    );
    assert_eq!(report.actor, "operator:alice");

    let order = fleet.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(
        order.downstream_ids.get(&Stage::Payment),
        Some(&payment),
        "from the provider"
    );
    assert_eq!(
        order.last_outcomes[&Stage::Payment].certainty,
        Certainty::Applied
    );
    let audit = fleet.store.order_audit(&id).await.unwrap();
    let entry = audit.last().unwrap();
    assert_eq!(entry.actor, "operator:alice");
    assert_eq!(entry.event, "operator.payment_succeeded");
    assert_eq!(entry.reason.as_deref(), Some("checked with the provider"));
    assert_eq!(entry.rule.as_deref(), Some("action:act-1"));
    assert_eq!(entry.correlation_id, "corr-o-paid");
    assert_eq!(entry.policy_id, fleet.policy.id().to_string());

    let shipping = fleet.drain(&fleet.work_queue(Stage::Shipping)).await;
    assert_eq!(shipping.len(), 1);
    let step = json_of(&shipping[0]);
    assert_eq!(
        (
            step["schema"].as_str(),
            step["order_id"].as_str(),
            step["stage"].as_str()
        ),
        (Some("orderflow.step/v1"), Some("o-paid"), Some("shipping"))
    );
    assert_eq!(
        shipping[0].meta().correlation_id.as_deref(),
        Some("corr-o-paid")
    );
    let events = fleet.events().await;
    assert!(
        events.iter().any(|e| e["state"] == "paid"),
        "a customer event for the move"
    );

    // The same action id again: nothing acts twice, the messages go again.
    let again =
        orderflow_ops::resolve_payment(&fleet.target, &input, PaymentOutcome::Succeeded, None)
            .await
            .unwrap();
    assert_eq!(again.done, Done::Repeated);
    assert_eq!(again.to, Some(OrderState::Paid));
    assert_eq!(
        fleet.store.order_audit(&id).await.unwrap().len(),
        audit.len()
    );
    let resent = fleet.drain(&fleet.work_queue(Stage::Shipping)).await;
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].meta().message_id, shipping[0].meta().message_id);

    // Another action id meets a paid order: refused, nothing changes.
    let other = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&id, Some("act-2")),
        PaymentOutcome::Succeeded,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(other.kind(), Kind::Refused);
    // An action id is for one kind of action.
    let reused = orderflow_ops::retry(&fleet.target, &input, Stage::Payment)
        .await
        .unwrap_err();
    assert_eq!(reused.kind(), Kind::Invalid);
}

#[tokio::test]
async fn a_payment_resolved_as_failed_releases_the_reservation() {
    let fleet = Fleet::with_apis().await;
    let (id, reservation) = pending_payment(&fleet, "o-failed").await;
    let report = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&id, None),
        PaymentOutcome::Failed,
        None,
    )
    .await
    .unwrap();
    assert!(
        report.action_id.starts_with("act-"),
        "generated: {}",
        report.action_id
    );
    assert_eq!(report.to, Some(OrderState::Rejected));
    assert_eq!(
        report.compensations,
        [format!("release reservation {reservation}")]
    );
    let ledger = fleet.ledger().await;
    assert_eq!(
        reservation_state(&ledger, &reservation),
        ReservationState::Released
    );
    assert!(
        fleet
            .drain(&fleet.work_queue(Stage::Shipping))
            .await
            .is_empty()
    );
    let order = fleet.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Rejected);
    assert_eq!(order.reason.as_deref(), Some("checked with the provider"));
}

#[tokio::test]
async fn resolving_is_refused_when_the_provider_or_the_state_says_otherwise() {
    let fleet = Fleet::with_apis().await;
    // The provider says the charge succeeded: no release on a failure claim.
    let (id, reservation) = pending_payment(&fleet, "o-contra").await;
    fleet.charge(&id, "tok_ok").await;
    let refused = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&id, None),
        PaymentOutcome::Failed,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused);
    assert!(refused.to_string().contains("succeeded"), "{refused}");
    assert_eq!(
        reservation_state(&fleet.ledger().await, &reservation),
        ReservationState::Reserved
    );
    let order = fleet.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::PaymentPending);

    // No charge under the order's key: "succeeded" needs the payment id.
    let (none, _) = pending_payment(&fleet, "o-nocharge").await;
    let refused = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&none, None),
        PaymentOutcome::Succeeded,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused);
    assert!(refused.to_string().contains("--payment-id"), "{refused}");
    let given = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&none, None),
        PaymentOutcome::Succeeded,
        Some("pay-by-phone-7".into()),
    )
    .await
    .unwrap();
    assert_eq!(given.to, Some(OrderState::Paid));

    // Shipped: a payment problem now is a financial exception.
    let shipped = fleet
        .order(
            "o-shipped",
            &[
                to(OrderState::Reserved),
                to(OrderState::Paid),
                to(OrderState::ShipmentAccepted),
                to(OrderState::Delivered),
            ],
        )
        .await;
    let refused = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&shipped, None),
        PaymentOutcome::Failed,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused);
    assert!(refused.to_string().contains("shipped"), "{refused}");
    assert_eq!(fleet.store.order_audit(&shipped).await.unwrap().len(), 5);
}

#[tokio::test]
async fn an_escalated_payment_is_retried_with_its_run_counter_reset() {
    let fleet = Fleet::new().await;
    let id = fleet
        .order(
            "o-retry",
            &[
                to(OrderState::Reserved).made(Stage::Inventory, "res-1"),
                to(OrderState::PaymentPending),
                to(OrderState::Escalated).because("payment_unresolved"),
            ],
        )
        .await;
    for _ in 0..4 {
        fleet.store.incr_attempt(&id, Stage::Payment).await.unwrap();
    }
    let wrong = orderflow_ops::retry(&fleet.target, &fleet.input(&id, None), Stage::Shipping)
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), Kind::Refused);
    assert!(wrong.to_string().contains("--stage payment"), "{wrong}");

    let report = orderflow_ops::retry(
        &fleet.target,
        &fleet.input(&id, Some("r-1")),
        Stage::Payment,
    )
    .await
    .unwrap();
    assert_eq!(report.to, Some(OrderState::Reserved));
    assert_eq!(fleet.store.attempts(&id, Stage::Payment).await.unwrap(), 0);
    let steps = fleet.drain(&fleet.work_queue(Stage::Payment)).await;
    assert_eq!(steps.len(), 1);
    assert_eq!(json_of(&steps[0])["stage"], "payment");
    assert_eq!(steps[0].meta().attempt, Some(1));
    let entry = fleet.store.order_audit(&id).await.unwrap().pop().unwrap();
    assert_eq!(
        (entry.from, entry.to, entry.event.as_str()),
        (
            Some(OrderState::Escalated),
            OrderState::Reserved,
            "operator.retry"
        )
    );

    // A blocked order goes back to shipping only.
    let blocked = fleet
        .order(
            "o-blocked",
            &[
                to(OrderState::Reserved),
                to(OrderState::Paid),
                to(OrderState::Blocked).because("unsupported_destination"),
            ],
        )
        .await;
    let report = orderflow_ops::retry(&fleet.target, &fleet.input(&blocked, None), Stage::Shipping)
        .await
        .unwrap();
    assert_eq!(report.to, Some(OrderState::Paid));
    assert_eq!(
        fleet.drain(&fleet.work_queue(Stage::Shipping)).await.len(),
        1
    );
}

#[tokio::test]
async fn cancelling_follows_the_order_state() {
    let fleet = Fleet::with_apis().await;
    // In flight: a plan changes nothing; --yes hands it to the fleet.
    let reserved = fleet
        .order(
            "o-inflight",
            &[to(OrderState::Reserved).made(Stage::Inventory, "res-x")],
        )
        .await;
    let plan = orderflow_ops::cancel_plan(&fleet.target, "o-inflight")
        .await
        .unwrap();
    assert_eq!(plan.by, CancelBy::Fleet);
    assert!(plan.steps[0].contains("payment stage"), "{:?}", plan.steps);
    assert!(
        fleet
            .store
            .get_order(&reserved)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
            .is_none()
    );

    let report = orderflow_ops::cancel(&fleet.target, &fleet.input(&reserved, Some("c-1")))
        .await
        .unwrap();
    assert_eq!(report.done, Done::Requested);
    let order = fleet.store.get_order(&reserved).await.unwrap().unwrap();
    assert_eq!(
        order.state,
        OrderState::Reserved,
        "the fleet moves it, not the command"
    );
    assert_eq!(
        order.cancel_requested.as_deref(),
        Some("checked with the provider")
    );
    let audit = fleet.store.order_audit(&reserved).await.unwrap();
    assert_eq!(audit.last().unwrap().actor, "operator:alice");
    let ingress = fleet.drain(&fleet.work_queue(Stage::Inventory)).await;
    assert_eq!(ingress.len(), 1, "routed from the orders exchange");
    let cancel = json_of(&ingress[0]);
    assert_eq!(cancel["schema"], "order.cancel/v1");
    assert_eq!(cancel["order_id"], "o-inflight");
    // Again with the same action id: the request stands, once.
    let again = orderflow_ops::cancel(&fleet.target, &fleet.input(&reserved, Some("c-1")))
        .await
        .unwrap();
    assert_eq!(again.done, Done::Requested);
    assert_eq!(
        fleet.store.order_audit(&reserved).await.unwrap().len(),
        audit.len()
    );

    // Blocked: the command refunds and releases, then cancels.
    let blocked_id = OrderId::parse("o-blocked").unwrap();
    let reservation = fleet.reserve(&blocked_id).await;
    let payment = fleet.charge(&blocked_id, "tok_ok").await;
    fleet
        .order(
            "o-blocked",
            &[
                to(OrderState::Reserved).made(Stage::Inventory, &reservation),
                to(OrderState::Paid).made(Stage::Payment, &payment),
                to(OrderState::Blocked).because("unsupported_destination"),
            ],
        )
        .await;
    let plan = orderflow_ops::cancel_plan(&fleet.target, "o-blocked")
        .await
        .unwrap();
    assert_eq!(plan.by, CancelBy::Operator);
    assert_eq!(
        plan.steps[..2],
        [
            format!("refund payment {payment}"),
            format!("release reservation {reservation}")
        ]
    );
    let report = orderflow_ops::cancel(&fleet.target, &fleet.input(&blocked_id, None))
        .await
        .unwrap();
    assert_eq!(report.to, Some(OrderState::Cancelled));
    let ledger = fleet.ledger().await;
    assert_eq!(
        reservation_state(&ledger, &reservation),
        ReservationState::Released
    );
    let charge = ledger.payments.iter().find(|p| p.id == payment).unwrap();
    assert_eq!(charge.state, PaymentState::Refunded);

    // Ended, or escalated with an unknown outcome: refused.
    let delivered = fleet
        .order(
            "o-done",
            &[
                to(OrderState::Reserved),
                to(OrderState::Paid),
                to(OrderState::ShipmentAccepted),
                to(OrderState::Delivered),
            ],
        )
        .await;
    let refused = orderflow_ops::cancel(&fleet.target, &fleet.input(&delivered, None))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused);
    let unknown = fleet
        .order(
            "o-unknown",
            &[
                to(OrderState::Reserved).made(Stage::Inventory, "res-u"),
                to(OrderState::PaymentPending).outcome(
                    Stage::Payment,
                    FailureClass::Timeout,
                    Certainty::Unknown,
                ),
                to(OrderState::Escalated).because("payment_unresolved"),
            ],
        )
        .await;
    let plan = orderflow_ops::cancel_plan(&fleet.target, "o-unknown")
        .await
        .unwrap();
    assert_eq!(plan.by, CancelBy::Refused);
    let refused = orderflow_ops::cancel(&fleet.target, &fleet.input(&unknown, None))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused);
    assert!(refused.to_string().contains("resolve"), "{refused}");
}

#[tokio::test]
async fn a_blocked_order_is_shipped_kept_or_refunded() {
    let fleet = Fleet::with_apis().await;
    let path = |reservation: &str, payment: &str| {
        vec![
            to(OrderState::Reserved).made(Stage::Inventory, reservation),
            to(OrderState::Paid).made(Stage::Payment, payment),
            to(OrderState::Blocked).because("unsupported_destination"),
        ]
    };
    let ship = fleet.order("o-ship", &path("res-1", "pay-1")).await;
    fleet
        .store
        .incr_attempt(&ship, Stage::Shipping)
        .await
        .unwrap();
    let report = orderflow_ops::unblock(&fleet.target, &fleet.input(&ship, None), Decision::Ship)
        .await
        .unwrap();
    assert_eq!(report.to, Some(OrderState::Paid));
    assert_eq!(
        fleet.store.attempts(&ship, Stage::Shipping).await.unwrap(),
        0
    );
    assert_eq!(
        fleet.drain(&fleet.work_queue(Stage::Shipping)).await.len(),
        1
    );

    // Cancelled after its shipment was accepted: keep the shipment.
    let kept_id = OrderId::parse("o-keep").unwrap();
    let shipment = fleet.ship(&kept_id).await;
    fleet
        .order(
            "o-keep",
            &[
                to(OrderState::Reserved).made(Stage::Inventory, "res-2"),
                to(OrderState::Paid).made(Stage::Payment, "pay-2"),
                to(OrderState::ShipmentAccepted).made(Stage::Shipping, &shipment),
                to(OrderState::Blocked).because("cancel_after_shipment"),
            ],
        )
        .await;
    let report =
        orderflow_ops::unblock(&fleet.target, &fleet.input(&kept_id, None), Decision::Ship)
            .await
            .unwrap();
    assert_eq!(report.to, Some(OrderState::ShipmentAccepted));
    assert!(
        fleet
            .drain(&fleet.work_queue(Stage::Shipping))
            .await
            .is_empty()
    );

    // Refund: refunded and released for real.
    let refund_id = OrderId::parse("o-refund").unwrap();
    let reservation = fleet.reserve(&refund_id).await;
    let payment = fleet.charge(&refund_id, "tok_ok").await;
    fleet.order("o-refund", &path(&reservation, &payment)).await;
    let report = orderflow_ops::unblock(
        &fleet.target,
        &fleet.input(&refund_id, None),
        Decision::Refund,
    )
    .await
    .unwrap();
    assert_eq!(report.to, Some(OrderState::Cancelled));
    assert_eq!(report.compensations.len(), 2);
    let ledger = fleet.ledger().await;
    assert_eq!(
        reservation_state(&ledger, &reservation),
        ReservationState::Released
    );
    assert_eq!(
        ledger
            .payments
            .iter()
            .find(|p| p.id == payment)
            .unwrap()
            .state,
        PaymentState::Refunded
    );

    let refused = orderflow_ops::unblock(&fleet.target, &fleet.input(&ship, None), Decision::Ship)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), Kind::Refused, "it is paid now, not blocked");
}

#[tokio::test]
async fn a_worker_holding_the_order_makes_the_action_wait() {
    let fleet = Fleet::with_apis().await;
    let (id, _) = pending_payment(&fleet, "o-busy").await;
    let lease = fleet
        .store
        .acquire_lease(
            &id,
            Stage::Payment,
            "payment-worker@test/1",
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .expect("the worker takes the lease");
    let busy = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&id, None),
        PaymentOutcome::Failed,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(busy.kind(), Kind::Failed);
    assert!(busy.to_string().contains("try again"), "{busy}");
    assert_eq!(
        fleet.store.get_order(&id).await.unwrap().unwrap().state,
        OrderState::PaymentPending
    );
    fleet.store.release(&lease).await.unwrap();
    let done = orderflow_ops::resolve_payment(
        &fleet.target,
        &fleet.input(&id, None),
        PaymentOutcome::Failed,
        None,
    )
    .await
    .unwrap();
    assert_eq!(done.to, Some(OrderState::Rejected));
}

#[tokio::test]
async fn an_action_needs_a_reason_an_operator_and_a_sound_action_id() {
    let fleet = Fleet::new().await;
    let id = fleet.order("o-input", &[]).await;
    let mut input = fleet.input(&id, None);
    input.reason = "   ".into();
    let err = orderflow_ops::retry(&fleet.target, &input, Stage::Inventory)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    let mut input = fleet.input(&id, Some("has spaces"));
    let err = orderflow_ops::retry(&fleet.target, &input, Stage::Inventory)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    input.action_id = None;
    input.operator = String::new();
    let err = orderflow_ops::retry(&fleet.target, &input, Stage::Inventory)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    assert_eq!(fleet.store.order_audit(&id).await.unwrap().len(), 1);
}
