//! The orders pages: one order in full, what needs a person, and the
//! actions, carried out by `orderflow-ops` against the real RabbitMQ,
//! Redis and the downstream simulator.

use crate::common::{Fleet, Options};
use downstream_sim::ledger::{PaymentState, ReservationState};
use orderflow_core::message::OrderId;
use orderflow_core::{Certainty, FailureClass, OrderState, Stage};
use orderflow_store::{FieldUpdate, LastOutcome, OrderRecord};

const REASON: &str = "checked with the provider";

fn made(stage: Stage, id: &str) -> FieldUpdate {
    FieldUpdate::DownstreamId {
        stage,
        id: id.to_owned(),
    }
}

fn unknown(stage: Stage) -> FieldUpdate {
    FieldUpdate::LastOutcome {
        stage,
        outcome: LastOutcome {
            class: FailureClass::Timeout,
            certainty: Certainty::Unknown,
        },
    }
}

/// The action id the page rendered into the form `form`.
fn action_id_in(page: &str, form: &str) -> String {
    let start = page
        .find(&format!("id=\"{form}\""))
        .unwrap_or_else(|| panic!("no #{form} on the page: {page}"));
    let marker = "name=\"action_id\" value=\"";
    let at = page[start..]
        .find(marker)
        .unwrap_or_else(|| panic!("#{form} has no action id"))
        + start
        + marker.len();
    let id = page[at..].split('"').next().unwrap().to_owned();
    assert!(id.starts_with("act-"), "a fresh action id: {id}");
    id
}

fn entries(page: &str) -> usize {
    page.matches("<tr class=\"entry\"").count()
}

async fn order(fleet: &Fleet, order_id: &OrderId) -> OrderRecord {
    fleet
        .store
        .get_order(order_id)
        .await
        .unwrap()
        .expect("the order exists")
}

/// Reserved and charged for real, then blocked by the shipping stage.
async fn blocked(fleet: &Fleet, id: &str) -> (OrderId, String, String) {
    let order_id = OrderId::parse(id).unwrap();
    let reservation = fleet.reserve(&order_id).await;
    let payment = fleet.charge(&order_id, "tok_ok").await;
    fleet
        .order(
            id,
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::Blocked, Some("unsupported_destination")),
            ],
            vec![
                made(Stage::Inventory, &reservation),
                made(Stage::Payment, &payment),
            ],
        )
        .await;
    (order_id, reservation, payment)
}

/// Reserved for real, the charge's outcome unknown, then escalated by the
/// payment stage.
async fn escalated_payment(fleet: &Fleet, id: &str) -> (OrderId, String) {
    let order_id = OrderId::parse(id).unwrap();
    let reservation = fleet.reserve(&order_id).await;
    fleet
        .order(
            id,
            &[
                (OrderState::Reserved, None),
                (OrderState::PaymentPending, Some("timeout / unknown")),
                (OrderState::Escalated, Some("payment_unresolved")),
            ],
            vec![
                made(Stage::Inventory, &reservation),
                unknown(Stage::Payment),
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

fn charge_state(ledger: &downstream_sim::Ledger, id: &str) -> PaymentState {
    ledger
        .payments
        .iter()
        .find(|p| p.id == id)
        .expect("the charge is in the ledger")
        .state
}

#[tokio::test]
async fn the_order_page_shows_state_downstream_ids_and_every_audit_entry() {
    let fleet = Fleet::new().await;
    let (id, reservation, charge) = blocked(&fleet, "o-page").await;
    let (status, page) = fleet.get("/orders/o-page").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"<span class="badge needs-person">blocked</span>"#),
        "{page}"
    );
    assert!(page.contains("unsupported_destination"), "the reason");
    for downstream_id in [&reservation, &charge] {
        assert!(page.contains(downstream_id.as_str()), "{downstream_id}");
    }
    assert!(page.contains("corr-o-page"), "the correlation id");
    assert!(
        page.contains(&fleet.policy.id().to_string()),
        "the policy id"
    );
    let audit = fleet.audit(&id).await;
    assert_eq!(audit.len(), 4, "created and three moves");
    assert!(page.contains(r#"id="timeline""#));
    assert_eq!(entries(&page), audit.len(), "one row per audit entry");
    assert!(page.contains("paid → blocked"), "from → to");
    assert!(page.contains("worker@test/1"), "who");
    // What a blocked order allows: a decision, nothing else.
    assert!(page.contains(r#"id="unblock-form""#));
    assert!(page.contains(r#"id="unblock""#));
    assert!(!page.contains(r#"id="resolve-form""#));
    assert!(!page.contains(r#"id="retry-form""#));
    assert_eq!(
        page.matches(r#"name="reason""#).count(),
        1,
        "a reason in each form"
    );

    // An ended order offers nothing.
    fleet
        .order(
            "o-ended",
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::ShipmentAccepted, None),
                (OrderState::Delivered, None),
            ],
            Vec::new(),
        )
        .await;
    let (status, page) = fleet.get("/orders/o-ended").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"id="no-actions""#), "{page}");
    assert!(
        !page.contains(r#"name="action_id""#),
        "no action forms: {page}"
    );
}

#[tokio::test]
async fn the_search_box_opens_an_order_and_the_index_lists_what_needs_a_person() {
    let fleet = Fleet::new().await;
    blocked(&fleet, "o-stuck").await;
    escalated_payment(&fleet, "o-lost").await;
    fleet
        .order(
            "o-young",
            &[
                (OrderState::Reserved, None),
                (OrderState::PaymentPending, Some("timeout / unknown")),
            ],
            Vec::new(),
        )
        .await;

    let (status, page) = fleet.get("/orders").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"id="order-search""#));
    assert!(page.contains(r#"name="id""#));
    let section = |id: &str| {
        let start = page.find(&format!("id=\"{id}\"")).expect(id);
        let end = page[start..].find("</section>").unwrap() + start;
        page[start..end].to_owned()
    };
    let blocked = section("needs-blocked");
    assert!(blocked.contains(r#"href="/orders/o-stuck""#), "{blocked}");
    assert!(blocked.contains("unsupported_destination"), "{blocked}");
    let escalated = section("needs-escalated");
    assert!(
        escalated.contains(r#"href="/orders/o-lost""#),
        "{escalated}"
    );
    assert!(escalated.contains("payment_unresolved"), "{escalated}");
    let slow = section("needs-slow-payment");
    assert!(
        !slow.contains("o-young"),
        "a payment pending for seconds is not a person's yet: {slow}"
    );

    // The fleet page links each state to its orders.
    let (status, in_state) = fleet.get("/orders?state=payment_pending").await;
    assert_eq!(status, 200, "{in_state}");
    assert!(in_state.contains(r#"href="/orders/o-young""#), "{in_state}");
    assert!(
        !in_state.contains(r#"href="/orders/o-stuck""#),
        "{in_state}"
    );
    let (status, bad) = fleet.get("/orders?state=stuckish").await;
    assert_eq!(status, 400);
    assert!(bad.contains("is not an order state"), "{bad}");

    let response = fleet
        .http
        .get(format!("{}/orders?id=o-stuck", fleet.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "/orders/o-stuck"
    );
    let (status, page) = fleet.get("/orders?id=no%20such%20id!").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("is not an order id"), "{page}");
    let (status, page) = fleet.get("/orders/o-missing").await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("order o-missing not found in namespace"),
        "{page}"
    );
}

#[tokio::test]
async fn a_blocked_order_unblocked_from_the_console_acts_once_and_is_audited() {
    let fleet = Fleet::new().await;
    let (id, reservation, charge) = blocked(&fleet, "o-unblock").await;
    let (_, page) = fleet.get("/orders/o-unblock").await;
    let action_id = action_id_in(&page, "unblock-form");
    let form = [
        ("decision", "refund"),
        ("reason", "destination unsupported; customer refunded"),
        ("action_id", action_id.as_str()),
    ];

    let (status, page) = fleet.post("/orders/o-unblock/unblock", &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"id="result""#), "{page}");
    assert!(page.contains(r#"data-done="acted""#), "{page}");
    assert!(page.contains("blocked → cancelled"), "{page}");
    assert!(page.contains(&format!("refund payment {charge}")), "{page}");
    assert!(
        page.contains(&format!("release reservation {reservation}")),
        "{page}"
    );
    assert!(page.contains(&action_id), "the action id is reported");
    assert!(page.contains(r#"href="/orders/o-unblock""#), "a way back");

    assert_eq!(order(&fleet, &id).await.state, OrderState::Cancelled);
    let audit = fleet.audit(&id).await;
    let entry = audit.last().unwrap();
    assert_eq!(entry.actor, "operator:alice@console");
    assert_eq!(
        entry.reason.as_deref(),
        Some("destination unsupported; customer refunded")
    );
    assert_eq!(
        (entry.from, entry.to),
        (Some(OrderState::Blocked), OrderState::Cancelled)
    );
    assert_eq!(entry.rule.as_deref(), Some(&*format!("action:{action_id}")));
    let ledger = fleet.ledger().await;
    assert_eq!(charge_state(&ledger, &charge), PaymentState::Refunded);
    assert_eq!(
        reservation_state(&ledger, &reservation),
        ReservationState::Released
    );

    // The same form again (a double submit, a re-post): acted once.
    let (status, page) = fleet.post("/orders/o-unblock/unblock", &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-done="repeated""#), "{page}");
    assert!(page.contains("nothing was done again"), "{page}");
    assert_eq!(fleet.audit(&id).await.len(), audit.len(), "no second move");

    // The order page shows the operator's move in its timeline.
    let (_, page) = fleet.get("/orders/o-unblock").await;
    assert_eq!(entries(&page), audit.len());
    assert!(page.contains("operator:alice@console"), "{page}");
}

#[tokio::test]
async fn a_blank_reason_is_refused_and_changes_nothing() {
    let fleet = Fleet::new().await;
    let (id, _, _) = blocked(&fleet, "o-blank").await;
    let before = fleet.audit(&id).await.len();
    let (status, page) = fleet
        .post(
            "/orders/o-blank/unblock",
            &[
                ("decision", "ship"),
                ("reason", "   "),
                ("action_id", "act-blank"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("a reason is required"), "{page}");
    assert_eq!(order(&fleet, &id).await.state, OrderState::Blocked);
    assert_eq!(fleet.audit(&id).await.len(), before);

    // No decision: asked for, nothing done.
    let (status, page) = fleet
        .post(
            "/orders/o-blank/unblock",
            &[("reason", "fixed the address")],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("ship or refund"), "{page}");
    assert_eq!(fleet.audit(&id).await.len(), before);
}

#[tokio::test]
async fn an_unsafe_action_is_refused_with_409_and_changes_nothing() {
    let fleet = Fleet::new().await;
    let delivered = fleet
        .order(
            "o-delivered",
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::ShipmentAccepted, None),
                (OrderState::Delivered, None),
            ],
            vec![made(Stage::Shipping, "shp-1")],
        )
        .await;
    let (status, page) = fleet
        .post(
            "/orders/o-delivered/unblock",
            &[("decision", "refund"), ("reason", "customer asked")],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("Refused as unsafe: nothing was done"),
        "{page}"
    );
    assert!(page.contains("has ended"), "the library's why: {page}");
    assert_eq!(order(&fleet, &delivered).await.state, OrderState::Delivered);
    assert_eq!(fleet.audit(&delivered).await.len(), 5);

    // Shipped: the payment cannot be resolved any more.
    let shipped = fleet
        .order(
            "o-shipped",
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::ShipmentAccepted, None),
            ],
            vec![
                made(Stage::Payment, "pay-1"),
                made(Stage::Shipping, "shp-2"),
            ],
        )
        .await;
    let (status, page) = fleet
        .post(
            "/orders/o-shipped/resolve",
            &[("outcome", "failed"), ("reason", "provider says declined")],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("has shipped"), "{page}");
    let after = order(&fleet, &shipped).await;
    assert_eq!(after.state, OrderState::ShipmentAccepted);
    assert_eq!(after.version, 4);
}

#[tokio::test]
async fn the_cancel_page_shows_the_plan_before_anything_changes() {
    let fleet = Fleet::new().await;
    let (id, reservation, charge) = blocked(&fleet, "o-cancel").await;
    let (_, page) = fleet.get("/orders/o-cancel").await;
    assert!(
        !page.contains(r#"id="cancel""#),
        "a blocked order is decided with unblock"
    );

    // Escalated by the shipping stage, its money and stock real.
    let order_id = OrderId::parse("o-stray").unwrap();
    let stray_reservation = fleet.reserve(&order_id).await;
    let stray_charge = fleet.charge(&order_id, "tok_ok").await;
    fleet
        .order(
            "o-stray",
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::Escalated, Some("shipping_unresolved")),
            ],
            vec![
                made(Stage::Inventory, &stray_reservation),
                made(Stage::Payment, &stray_charge),
            ],
        )
        .await;
    let (_, page) = fleet.get("/orders/o-stray").await;
    assert!(
        page.contains(r#"href="/orders/o-stray/cancel""#),
        "cancel leads to the plan: {page}"
    );
    let before = fleet.audit(&order_id).await.len();
    let (status, page) = fleet.get("/orders/o-stray/cancel").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-by="operator""#), "{page}");
    assert!(
        page.contains(&format!("refund payment {stray_charge}")),
        "{page}"
    );
    assert!(
        page.contains(&format!("release reservation {stray_reservation}")),
        "{page}"
    );
    assert!(page.contains("→ cancelled"), "{page}");
    assert!(page.contains(r#"id="cancel-confirm""#), "{page}");
    // Reading the plan changed nothing.
    assert_eq!(order(&fleet, &order_id).await.state, OrderState::Escalated);
    assert_eq!(fleet.audit(&order_id).await.len(), before);
    let ledger = fleet.ledger().await;
    assert_eq!(
        charge_state(&ledger, &stray_charge),
        PaymentState::Succeeded
    );
    assert_eq!(
        reservation_state(&ledger, &stray_reservation),
        ReservationState::Reserved
    );

    let action_id = action_id_in(&page, "cancel-form");
    let (status, page) = fleet
        .post(
            "/orders/o-stray/cancel",
            &[
                ("reason", "customer withdrew"),
                ("action_id", action_id.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("escalated → cancelled"), "{page}");
    assert_eq!(order(&fleet, &order_id).await.state, OrderState::Cancelled);
    let ledger = fleet.ledger().await;
    assert_eq!(charge_state(&ledger, &stray_charge), PaymentState::Refunded);
    assert_eq!(
        reservation_state(&ledger, &stray_reservation),
        ReservationState::Released
    );
    // The blocked one was never touched.
    assert_eq!(order(&fleet, &id).await.state, OrderState::Blocked);
    assert_eq!(charge_state(&ledger, &charge), PaymentState::Succeeded);
    assert_eq!(
        reservation_state(&ledger, &reservation),
        ReservationState::Reserved
    );
}

#[tokio::test]
async fn a_refused_cancel_shows_why_and_offers_no_confirm() {
    let fleet = Fleet::new().await;
    // Never on a guess: the charge's outcome is unknown.
    let (id, reservation) = escalated_payment(&fleet, "o-guess").await;
    let (status, page) = fleet.get("/orders/o-guess/cancel").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-by="refused""#), "{page}");
    assert!(page.contains(r#"id="refusal""#), "{page}");
    assert!(page.contains("unknown"), "the library's why: {page}");
    assert!(!page.contains(r#"id="cancel-confirm""#), "{page}");
    assert!(!page.contains(r#"id="cancel-form""#), "{page}");

    // Posted anyway: refused by the library, nothing done.
    let before = fleet.audit(&id).await.len();
    let (status, page) = fleet
        .post("/orders/o-guess/cancel", &[("reason", "customer withdrew")])
        .await;
    assert_eq!(status, 409, "{page}");
    assert_eq!(order(&fleet, &id).await.state, OrderState::Escalated);
    assert_eq!(fleet.audit(&id).await.len(), before);
    assert_eq!(
        reservation_state_now(&fleet, &reservation).await,
        ReservationState::Reserved
    );
}

async fn reservation_state_now(fleet: &Fleet, id: &str) -> ReservationState {
    reservation_state(&fleet.ledger().await, id)
}

#[tokio::test]
async fn an_order_in_flight_is_cancelled_by_the_fleet() {
    let fleet = Fleet::new().await;
    let id = fleet
        .order(
            "o-flight",
            &[(OrderState::Reserved, None)],
            vec![made(Stage::Inventory, "res-flight")],
        )
        .await;
    let (status, page) = fleet.get("/orders/o-flight/cancel").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-by="fleet""#), "{page}");
    assert!(page.contains("payment stage"), "who carries it out: {page}");
    assert!(order(&fleet, &id).await.cancel_requested.is_none());

    let action_id = action_id_in(&page, "cancel-form");
    let (status, page) = fleet
        .post(
            "/orders/o-flight/cancel",
            &[("reason", "customer withdrew"), ("action_id", &action_id)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"data-done="requested""#), "{page}");
    assert!(
        page.contains("order.cancel"),
        "the message published: {page}"
    );
    let after = order(&fleet, &id).await;
    assert_eq!(after.state, OrderState::Reserved, "the fleet moves it");
    assert_eq!(after.cancel_requested.as_deref(), Some("customer withdrew"));
    let entry = fleet.audit(&id).await.pop().unwrap();
    assert_eq!(entry.actor, "operator:alice@console");
}

#[tokio::test]
async fn an_escalated_payment_resolved_as_succeeded_goes_to_shipping() {
    let fleet = Fleet::new().await;
    let (id, _) = escalated_payment(&fleet, "o-paid").await;
    // The charge did land; the worker only never heard.
    let charge = fleet.charge(&id, "tok_ok").await;
    let (_, page) = fleet.get("/orders/o-paid").await;
    assert!(page.contains(r#"id="resolve-form""#), "{page}");
    assert!(page.contains(r#"id="resolve""#), "{page}");
    assert!(
        page.contains(r#"id="escalated-from">payment_pending"#),
        "whose problem it is: {page}"
    );
    let action_id = action_id_in(&page, "resolve-form");

    let (status, page) = fleet
        .post(
            "/orders/o-paid/resolve",
            &[
                ("outcome", "succeeded"),
                ("payment_id", ""),
                ("reason", REASON),
                ("action_id", &action_id),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("escalated → paid"), "{page}");
    assert!(
        page.contains("shipping"),
        "a step message to shipping: {page}"
    );
    let after = order(&fleet, &id).await;
    assert_eq!(after.state, OrderState::Paid);
    assert_eq!(
        after.downstream_ids.get(&Stage::Payment),
        Some(&charge),
        "from the provider"
    );
    let entry = fleet.audit(&id).await.pop().unwrap();
    assert_eq!(entry.actor, "operator:alice@console");
    assert_eq!(entry.event, "operator.payment_succeeded");
    assert_eq!(entry.reason.as_deref(), Some(REASON));
}

#[tokio::test]
async fn an_escalated_payment_resolved_as_failed_releases_the_reservation() {
    let fleet = Fleet::new().await;
    // The provider has no charge: the failure stands.
    let (id, reserved) = escalated_payment(&fleet, "o-failed").await;
    let (status, page) = fleet
        .post(
            "/orders/o-failed/resolve",
            &[("outcome", "failed"), ("reason", REASON)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("escalated → rejected"), "{page}");
    assert!(
        page.contains(&format!("release reservation {reserved}")),
        "{page}"
    );
    assert_eq!(order(&fleet, &id).await.state, OrderState::Rejected);
    assert_eq!(
        reservation_state_now(&fleet, &reserved).await,
        ReservationState::Released
    );

    // The provider says the charge succeeded: no release on a failure claim.
    let (contra, held) = escalated_payment(&fleet, "o-contra").await;
    fleet.charge(&contra, "tok_ok").await;
    let (status, page) = fleet
        .post(
            "/orders/o-contra/resolve",
            &[("outcome", "failed"), ("reason", REASON)],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("succeeded"), "{page}");
    assert_eq!(order(&fleet, &contra).await.state, OrderState::Escalated);
    assert_eq!(
        reservation_state_now(&fleet, &held).await,
        ReservationState::Reserved
    );
}

#[tokio::test]
async fn an_escalated_shipment_is_retried_from_the_console() {
    let fleet = Fleet::new().await;
    let id = fleet
        .order(
            "o-retry",
            &[
                (OrderState::Reserved, None),
                (OrderState::Paid, None),
                (OrderState::ShippingPending, None),
                (OrderState::Escalated, Some("shipping_unresolved")),
            ],
            vec![
                made(Stage::Inventory, "res-r"),
                made(Stage::Payment, "pay-r"),
            ],
        )
        .await;
    for _ in 0..3 {
        fleet
            .store
            .incr_attempt(&id, Stage::Shipping)
            .await
            .unwrap();
    }
    let (_, page) = fleet.get("/orders/o-retry").await;
    assert!(page.contains(r#"id="retry-form""#), "{page}");
    assert!(
        page.contains(r#"name="stage" value="shipping""#),
        "the stage that escalated it: {page}"
    );
    let action_id = action_id_in(&page, "retry-form");

    // Another stage than the one that escalated it: refused, and named.
    let (status, refused) = fleet
        .post(
            "/orders/o-retry/retry",
            &[("stage", "payment"), ("reason", "again")],
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.contains("stage shipping"), "{refused}");
    assert_eq!(order(&fleet, &id).await.state, OrderState::Escalated);

    let (status, page) = fleet
        .post(
            "/orders/o-retry/retry",
            &[
                ("stage", "shipping"),
                ("reason", "carrier back up"),
                ("action_id", &action_id),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("escalated → paid"), "{page}");
    assert_eq!(order(&fleet, &id).await.state, OrderState::Paid);
    assert_eq!(
        fleet.store.attempts(&id, Stage::Shipping).await.unwrap(),
        0,
        "its run counter reset"
    );
}

#[tokio::test]
async fn an_action_needs_an_operator_who_signed_in() {
    let fleet = Fleet::with(Options::default()).await;
    let (id, _, _) = blocked(&fleet, "o-anon").await;
    let (status, page) = fleet
        .post(
            "/orders/o-anon/unblock",
            &[("decision", "ship"), ("reason", "fixed the address")],
        )
        .await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("sign in"), "{page}");
    assert_eq!(order(&fleet, &id).await.state, OrderState::Blocked);
    assert_eq!(fleet.audit(&id).await.len(), 4);
}
