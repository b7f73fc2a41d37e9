//! # orderflow-verify
//!
//! The invariants I1–I9 (docs/design.md §5) as a pure check: the simulator's
//! ledger is the truth about side effects, the store and its audit streams
//! are the fleet's view, the inventory exception queue holds what was
//! refused at the door. The end-to-end tests and `orderflow-fleet` read a
//! [`Snapshot`] of their namespace with [`read_snapshot`] and hand it to
//! [`check`].

use downstream_sim::Ledger;
use downstream_sim::ledger::{PaymentState, ReservationState, ShipmentState};
use orderflow_broker::Meta;
use orderflow_core::OrderState;
use orderflow_core::state::Disposition;
use orderflow_store::{AuditEntry, LOST_EVENT, OrderRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod read;

pub use read::{Namespace, ReadError, parked_orders, read_snapshot};

/// A message parked in an exception queue, as it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub queue: String,
    pub body: Vec<u8>,
    pub meta: Meta,
    pub redelivered: bool,
}

impl Parked {
    /// The `orderflow-reason` header.
    pub fn reason(&self) -> Option<&str> {
        self.meta.reason.as_deref()
    }

    /// The `orderflow-order-id` header, else the body's `order_id`.
    pub fn order_id(&self) -> Option<String> {
        self.meta.order_id.clone().or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()?
                .get("order_id")?
                .as_str()
                .map(str::to_owned)
        })
    }

    /// The `orderflow-validation-errors` header of a malformed message.
    pub fn validation_errors(&self) -> Option<&str> {
        self.meta
            .extra
            .get("orderflow-validation-errors")
            .map(String::as_str)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where an order is: terminal, or waiting for a person.
pub fn is_settled(state: OrderState) -> bool {
    state.disposition() != Disposition::InFlight
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `I1` … `I9`.
    pub invariant: &'static str,
    pub order_id: Option<String>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.order_id {
            Some(id) => write!(f, "{} {id}: {}", self.invariant, self.detail),
            None => write!(f, "{}: {}", self.invariant, self.detail),
        }
    }
}

/// What the test did, which the invariants are measured against.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Ids of the valid orders published.
    pub placed: Vec<String>,
    /// Bodies published that the contract refuses.
    pub malformed: Vec<Vec<u8>>,
    /// Whether the payment provider honours idempotency keys; if not, every
    /// charge record counts (I2).
    pub payment_idempotent: bool,
    /// Orders whose payment the test refunded on the simulator itself.
    pub external_refunds: BTreeSet<String>,
    /// The test made the store lose writes it had acknowledged: an order
    /// the store forgot whole is judged by the providers' records alone,
    /// where its work must have finished ([`finished_at_providers`]).
    pub store_lost_writes: bool,
}

/// Whether the providers' records of an order show its work finished: paid
/// once, shipped and delivered with its stock committed; or never charged
/// (or refunded), never shipped, its stock released. An order the store
/// forgot after that left nothing undone.
pub fn finished_at_providers(ledger: &Ledger, id: &str) -> bool {
    let reservations: Vec<_> = ledger
        .reservations
        .iter()
        .filter(|r| r.order_id == id)
        .collect();
    let payments: Vec<_> = ledger
        .payments
        .iter()
        .filter(|p| p.order_id == id)
        .collect();
    let shipments: Vec<_> = ledger
        .shipments
        .iter()
        .filter(|s| s.order_id == id)
        .collect();
    let charged = payments
        .iter()
        .filter(|p| p.state == PaymentState::Succeeded)
        .count();
    if payments.iter().any(|p| p.state == PaymentState::Processing) {
        return false;
    }
    match charged {
        0 => {
            shipments.is_empty()
                && reservations
                    .iter()
                    .all(|r| r.state == ReservationState::Released)
        }
        1 => {
            shipments.len() == 1
                && shipments[0].state == ShipmentState::Delivered
                && !reservations.is_empty()
                && reservations
                    .iter()
                    .all(|r| r.state == ReservationState::Committed)
        }
        _ => false,
    }
}

/// What the invariants need of an order record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub state: OrderState,
    pub version: u64,
    pub reason: Option<String>,
}

impl From<&OrderRecord> for OrderView {
    fn from(record: &OrderRecord) -> OrderView {
        OrderView {
            state: record.state,
            version: record.version,
            reason: record.reason.clone(),
        }
    }
}

/// What the invariants need of an audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStep {
    pub version: u64,
    pub from: Option<OrderState>,
    pub to: OrderState,
    pub event: String,
    pub correlation_id: String,
    pub policy_id: String,
}

impl From<&AuditEntry> for AuditStep {
    fn from(entry: &AuditEntry) -> AuditStep {
        AuditStep {
            version: entry.version,
            from: entry.from,
            to: entry.to,
            event: entry.event.clone(),
            correlation_id: entry.correlation_id.clone(),
            policy_id: entry.policy_id.clone(),
        }
    }
}

/// Everything the invariants look at, read at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub ledger: Ledger,
    /// Each placed order as the store has it (`None`: absent).
    pub orders: BTreeMap<String, Option<OrderView>>,
    pub audits: BTreeMap<String, Vec<AuditStep>>,
    pub inventory_exceptions: Vec<Parked>,
    /// Orders with a message in a stage's exception queue, waiting for a
    /// person (read only when the store lost writes: see
    /// [`Expectations::store_lost_writes`]).
    pub parked_orders: BTreeSet<String>,
    /// Worker processes not running, with why.
    pub dead_workers: Vec<String>,
}

/// Whether an order the store forgot whole is still accounted for: its
/// work at the providers finished ([`finished_at_providers`]), or a
/// message about it waits in an exception queue for a person, who finds
/// it there and, replaying it, has it recorded again as escalated.
pub fn forgotten_but_accounted(ledger: &Ledger, parked: &BTreeSet<String>, id: &str) -> bool {
    parked.contains(id) || finished_at_providers(ledger, id)
}

/// Every violation of I1–I9 in the snapshot.
pub fn check(snapshot: &Snapshot, expected: &Expectations) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut violation = |invariant: &'static str, order: Option<&str>, detail: String| {
        out.push(Violation {
            invariant,
            order_id: order.map(str::to_owned),
            detail,
        });
    };
    let ledger = &snapshot.ledger;

    // I9 and I1: every published order exists and has settled with a reason.
    for id in &expected.placed {
        match snapshot.orders.get(id).and_then(Option::as_ref) {
            None if expected.store_lost_writes
                && forgotten_but_accounted(ledger, &snapshot.parked_orders, id) => {}
            None => violation(
                "I9",
                Some(id),
                "published and confirmed, but not in the store".into(),
            ),
            Some(order) if !is_settled(order.state) => violation(
                "I1",
                Some(id),
                format!(
                    "still {} (neither terminal nor blocked/escalated)",
                    order.state
                ),
            ),
            Some(order) if order.state != OrderState::Delivered && blank(&order.reason) => {
                violation("I1", Some(id), format!("{} without a reason", order.state));
            }
            Some(_) => {}
        }
    }

    // I2: at most one successful charge per order (any charge at all, when
    // the provider does not deduplicate).
    let mut payments: BTreeMap<&str, Vec<&downstream_sim::ledger::Payment>> = BTreeMap::new();
    for payment in &ledger.payments {
        payments.entry(&payment.order_id).or_default().push(payment);
    }
    for (order, list) in &payments {
        let successful: Vec<_> = list
            .iter()
            .filter(|p| matches!(p.state, PaymentState::Succeeded | PaymentState::Refunded))
            .collect();
        if successful.len() > 1 {
            violation(
                "I2",
                Some(order),
                format!(
                    "{} successful charges: {}",
                    successful.len(),
                    successful
                        .iter()
                        .map(|p| format!("{} {:?}", p.id, p.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if !expected.payment_idempotent && list.len() > 1 {
            violation(
                "I2",
                Some(order),
                format!(
                    "{} charges at a provider without idempotency: {}",
                    list.len(),
                    list.iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    // I3: at most one shipment per order.
    let mut shipments: BTreeMap<&str, Vec<&downstream_sim::ledger::Shipment>> = BTreeMap::new();
    for shipment in &ledger.shipments {
        shipments
            .entry(&shipment.order_id)
            .or_default()
            .push(shipment);
    }
    for (order, list) in &shipments {
        if list.len() > 1 {
            violation(
                "I3",
                Some(order),
                format!(
                    "{} shipments: {}",
                    list.len(),
                    list.iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    // I4: a shipment only after a confirmed successful charge. A succeeded
    // payment settled at `updated_at`; a refunded one succeeded at some
    // point after its creation, which is all the ledger still tells.
    for shipment in &ledger.shipments {
        let confirmed_before = payments
            .get(shipment.order_id.as_str())
            .into_iter()
            .flatten()
            .any(|p| match p.state {
                PaymentState::Succeeded => p.updated_at <= shipment.created_at,
                PaymentState::Refunded => p.created_at <= shipment.created_at,
                PaymentState::Processing | PaymentState::Failed => false,
            });
        if !confirmed_before {
            violation(
                "I4",
                Some(&shipment.order_id),
                format!(
                    "shipment {} created {} without a successful charge settled before it",
                    shipment.id, shipment.created_at
                ),
            );
        }
    }

    // I5: terminal orders hold no reservation: delivered → committed,
    // rejected or cancelled → released (or never reserved).
    let mut reservations: BTreeMap<&str, Vec<&downstream_sim::ledger::Reservation>> =
        BTreeMap::new();
    for reservation in &ledger.reservations {
        reservations
            .entry(&reservation.order_id)
            .or_default()
            .push(reservation);
    }
    for (id, order) in &snapshot.orders {
        let Some(order) = order else { continue };
        let held = reservations.get(id.as_str()).cloned().unwrap_or_default();
        match order.state {
            OrderState::Delivered => {
                if !held.iter().any(|r| r.state == ReservationState::Committed) {
                    violation(
                        "I5",
                        Some(id),
                        format!(
                            "delivered, but no committed reservation (reservations: {})",
                            describe_reservations(&held)
                        ),
                    );
                }
                if held.iter().any(|r| r.state == ReservationState::Reserved) {
                    violation(
                        "I5",
                        Some(id),
                        format!(
                            "delivered, but a reservation is still only reserved: {}",
                            describe_reservations(&held)
                        ),
                    );
                }
            }
            OrderState::Rejected | OrderState::Cancelled
                if held.iter().any(|r| r.state != ReservationState::Released) =>
            {
                violation(
                    "I5",
                    Some(id),
                    format!(
                        "{}, but stock is still held: {}",
                        order.state,
                        describe_reservations(&held)
                    ),
                );
            }
            _ => {}
        }
    }

    // I6: no refund or release on a guess. A rejected or cancelled order has
    // no charge that succeeded (unrefunded) or is still processing; an
    // order waiting for a person was not rolled back.
    for (id, order) in &snapshot.orders {
        let Some(order) = order else { continue };
        let charges = payments.get(id.as_str()).cloned().unwrap_or_default();
        let held = reservations.get(id.as_str()).cloned().unwrap_or_default();
        match order.state {
            OrderState::Rejected | OrderState::Cancelled => {
                for p in &charges {
                    if matches!(p.state, PaymentState::Succeeded | PaymentState::Processing) {
                        violation(
                            "I6",
                            Some(id),
                            format!(
                                "{} while payment {} is {:?}: its outcome was not a confirmed failure (or it was not refunded)",
                                order.state, p.id, p.state
                            ),
                        );
                    }
                }
            }
            // After a loss the store no longer holds the decisions that
            // rolled such an order back (a decline, a cancel): a person
            // reconciles it, and I2–I5 still judge the money and goods.
            OrderState::Escalated if expected.store_lost_writes && lost_track(order) => {}
            OrderState::Blocked | OrderState::Escalated => {
                if !expected.external_refunds.contains(id) {
                    for p in charges.iter().filter(|p| p.state == PaymentState::Refunded) {
                        violation(
                            "I6",
                            Some(id),
                            format!(
                                "{} ({}) but payment {} was refunded: no automatic rollback",
                                order.state,
                                order.reason.as_deref().unwrap_or("-"),
                                p.id
                            ),
                        );
                    }
                }
                for r in held
                    .iter()
                    .filter(|r| r.state == ReservationState::Released)
                {
                    violation(
                        "I6",
                        Some(id),
                        format!(
                            "{} ({}) but reservation {} was released: no automatic rollback",
                            order.state,
                            order.reason.as_deref().unwrap_or("-"),
                            r.id
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    // I7: each malformed input parked exactly once as malformed, nothing
    // valid parked as malformed, and every worker still running.
    let malformed_parked: Vec<&Parked> = snapshot
        .inventory_exceptions
        .iter()
        .filter(|p| p.reason() == Some("malformed"))
        .collect();
    for body in &expected.malformed {
        let copies = malformed_parked.iter().filter(|p| &p.body == body).count();
        if copies != 1 {
            violation(
                "I7",
                None,
                format!(
                    "malformed input parked {copies} times (expected once): {}",
                    preview(body)
                ),
            );
        }
    }
    for parked in &malformed_parked {
        if !expected.malformed.contains(&parked.body) {
            violation(
                "I7",
                parked.order_id().as_deref(),
                format!(
                    "parked as malformed, but the test did not publish it as such: {}",
                    preview(&parked.body)
                ),
            );
        }
    }
    for dead in &snapshot.dead_workers {
        violation("I7", None, format!("worker {dead} is not running"));
    }

    // I8: every transition audited once, in order, with correlation id and
    // policy id, ending in the current state.
    for (id, order) in &snapshot.orders {
        let Some(order) = order else { continue };
        let audit = snapshot.audits.get(id).cloned().unwrap_or_default();
        for problem in audit_problems(order, &audit) {
            violation("I8", Some(id), problem);
        }
    }
    out
}

/// Whether an escalated order stopped because the store lost track of it:
/// a message proved the loss, or it sat past its deadline with nothing in
/// flight.
fn lost_track(order: &OrderView) -> bool {
    matches!(order.reason.as_deref(), Some("store_lost_writes" | "stuck"))
}

/// What is wrong with an order's audit stream.
pub fn audit_problems(order: &OrderView, audit: &[AuditStep]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected_version = 1;
    let mut state: Option<OrderState> = None;
    for entry in audit {
        if entry.correlation_id.trim().is_empty() {
            problems.push(format!(
                "entry v{} `{}` has no correlation id",
                entry.version, entry.event
            ));
        }
        if entry.policy_id.trim().is_empty() {
            problems.push(format!(
                "entry v{} `{}` has no policy id",
                entry.version, entry.event
            ));
        }
        // An order the store lost whole starts again, escalated, one
        // version past the last message about it (`LOST_EVENT`).
        if entry.event == LOST_EVENT && entry.from.is_none() && state.is_none() {
            state = Some(entry.to);
            expected_version = entry.version + 1;
            continue;
        }
        // A note moves nothing: same state, same version.
        let is_note = state.is_some()
            && entry.from == state
            && Some(entry.to) == state
            && entry.version + 1 == expected_version;
        if is_note {
            continue;
        }
        if entry.version != expected_version {
            problems.push(format!(
                "entry `{}` ({:?} → {}) has version {}, expected {expected_version}",
                entry.event, entry.from, entry.to, entry.version
            ));
        }
        if entry.from != state {
            problems.push(format!(
                "entry v{} `{}` moves from {:?}, but the order was in {:?}",
                entry.version, entry.event, entry.from, state
            ));
        }
        state = Some(entry.to);
        expected_version = entry.version + 1;
    }
    if audit.is_empty() {
        problems.push("no audit entries".into());
    } else if state != Some(order.state) || expected_version != order.version + 1 {
        problems.push(format!(
            "the audit ends in {:?} at v{}, the order is {} at v{}",
            state,
            expected_version - 1,
            order.state,
            order.version
        ));
    }
    problems
}

fn blank(reason: &Option<String>) -> bool {
    reason.as_deref().is_none_or(|r| r.trim().is_empty())
}

fn describe_reservations(list: &[&downstream_sim::ledger::Reservation]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|r| format!("{} {:?}", r.id, r.state))
        .collect::<Vec<_>>()
        .join(", ")
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downstream_sim::ledger::{Payment, Reservation, Shipment};
    use jiff::Timestamp;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    fn record(state: OrderState, version: u64, reason: Option<&str>) -> OrderView {
        OrderView {
            state,
            version,
            reason: reason.map(str::to_owned),
        }
    }

    fn entry(version: u64, from: Option<OrderState>, to: OrderState) -> AuditStep {
        AuditStep {
            version,
            from,
            to,
            event: "e".into(),
            correlation_id: "c".into(),
            policy_id: "pol-1".into(),
        }
    }

    fn delivered_audit() -> Vec<AuditStep> {
        use OrderState::*;
        vec![
            entry(1, None, Received),
            entry(2, Some(Received), Reserved),
            entry(3, Some(Reserved), Paid),
            entry(3, Some(Paid), Paid),
            entry(4, Some(Paid), ShipmentAccepted),
            entry(5, Some(ShipmentAccepted), Delivered),
        ]
    }

    fn payment(order: &str, id: &str, state: PaymentState, created: i64, updated: i64) -> Payment {
        Payment {
            id: id.into(),
            key: format!("{order}.payment.charge"),
            order_id: order.into(),
            amount: 1250,
            currency: "EUR".into(),
            state,
            created_at: at(created),
            updated_at: at(updated),
        }
    }

    fn reservation(order: &str, state: ReservationState) -> Reservation {
        Reservation {
            id: format!("res-{order}"),
            key: format!("{order}.inventory.reserve"),
            order_id: order.into(),
            items: vec![],
            state,
            created_at: at(0),
            updated_at: at(1),
        }
    }

    fn shipment(order: &str, created: i64) -> Shipment {
        Shipment {
            id: format!("shp-{order}-{created}"),
            key: format!("{order}.shipping.ship"),
            order_id: order.into(),
            state: ShipmentState::Delivered,
            exception_code: None,
            created_at: at(created),
            updated_at: at(created),
        }
    }

    fn happy() -> (Snapshot, Expectations) {
        let snapshot = Snapshot {
            ledger: Ledger {
                reservations: vec![reservation("o1", ReservationState::Committed)],
                payments: vec![payment("o1", "p1", PaymentState::Succeeded, 10, 10)],
                shipments: vec![shipment("o1", 20)],
                calls: BTreeMap::new(),
            },
            orders: [(
                "o1".to_owned(),
                Some(record(OrderState::Delivered, 5, None)),
            )]
            .into(),
            audits: [("o1".to_owned(), delivered_audit())].into(),
            inventory_exceptions: vec![],
            parked_orders: BTreeSet::new(),
            dead_workers: vec![],
        };
        let expected = Expectations {
            placed: vec!["o1".into()],
            payment_idempotent: true,
            ..Expectations::default()
        };
        (snapshot, expected)
    }

    fn names(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_delivered_order_with_one_of_everything_breaks_nothing() {
        let (snapshot, expected) = happy();
        assert_eq!(check(&snapshot, &expected), vec![]);
    }

    #[test]
    fn a_second_charge_or_shipment_is_caught() {
        let (mut snapshot, expected) = happy();
        snapshot
            .ledger
            .payments
            .push(payment("o1", "p2", PaymentState::Refunded, 11, 30));
        snapshot.ledger.shipments.push(shipment("o1", 25));
        assert_eq!(names(&check(&snapshot, &expected)), ["I2", "I3"]);
    }

    #[test]
    fn a_shipment_before_the_charge_settled_is_caught() {
        let (mut snapshot, expected) = happy();
        snapshot.ledger.payments[0] = payment("o1", "p1", PaymentState::Succeeded, 10, 30);
        assert_eq!(names(&check(&snapshot, &expected)), ["I4"]);
    }

    #[test]
    fn stock_held_by_a_terminal_order_is_caught() {
        let (mut snapshot, expected) = happy();
        snapshot.ledger.reservations[0].state = ReservationState::Reserved;
        assert_eq!(names(&check(&snapshot, &expected)), ["I5", "I5"]);
    }

    #[test]
    fn a_cancelled_order_with_an_unrefunded_charge_is_caught() {
        let (mut snapshot, expected) = happy();
        snapshot.ledger.shipments.clear();
        snapshot.ledger.reservations[0].state = ReservationState::Released;
        snapshot.orders.insert(
            "o1".into(),
            Some(record(OrderState::Cancelled, 4, Some("customer"))),
        );
        use OrderState::*;
        snapshot.audits.insert(
            "o1".into(),
            vec![
                entry(1, None, Received),
                entry(2, Some(Received), Reserved),
                entry(3, Some(Reserved), Paid),
                entry(4, Some(Paid), Cancelled),
            ],
        );
        assert_eq!(names(&check(&snapshot, &expected)), ["I6"]);
    }

    #[test]
    fn an_escalated_order_rolled_back_is_caught_unless_the_store_lost_its_track() {
        let (mut snapshot, expected) = happy();
        snapshot.ledger.shipments.clear();
        snapshot.ledger.payments.clear();
        snapshot.ledger.reservations[0].state = ReservationState::Released;
        snapshot.orders.insert(
            "o1".into(),
            Some(record(OrderState::Escalated, 2, Some("stuck"))),
        );
        use OrderState::*;
        snapshot.audits.insert(
            "o1".into(),
            vec![
                entry(1, None, Received),
                entry(2, Some(Received), Escalated),
            ],
        );
        assert_eq!(names(&check(&snapshot, &expected)), ["I6"]);

        // After a loss, the rejection that released it may be what the
        // store lost: a person reconciles the order.
        let mut after_loss = expected.clone();
        after_loss.store_lost_writes = true;
        assert_eq!(check(&snapshot, &after_loss), vec![]);
        // Other reasons are judged as ever.
        snapshot.orders.insert(
            "o1".into(),
            Some(record(OrderState::Escalated, 2, Some("payment_unresolved"))),
        );
        assert_eq!(names(&check(&snapshot, &after_loss)), ["I6"]);
    }

    #[test]
    fn an_order_the_store_lost_whole_is_audited_from_its_re_recording() {
        let (mut snapshot, expected) = happy();
        snapshot.ledger.shipments.clear();
        snapshot.ledger.reservations[0].state = ReservationState::Reserved;
        snapshot.orders.insert(
            "o1".into(),
            Some(record(OrderState::Escalated, 4, Some("store_lost_writes"))),
        );
        let lost = AuditStep {
            event: LOST_EVENT.into(),
            ..entry(4, None, OrderState::Escalated)
        };
        snapshot.audits.insert("o1".into(), vec![lost.clone()]);
        assert_eq!(check(&snapshot, &expected), vec![]);

        // Only as the first entry: a gap anywhere else is still a gap.
        snapshot.audits.insert(
            "o1".into(),
            vec![entry(1, None, OrderState::Received), lost],
        );
        assert_eq!(names(&check(&snapshot, &expected)), ["I8", "I8"]);
    }

    #[test]
    fn an_unsettled_or_missing_order_is_caught() {
        let (mut snapshot, mut expected) = happy();
        expected.placed.push("o2".into());
        snapshot.orders.insert("o2".into(), None);
        snapshot
            .orders
            .insert("o1".into(), Some(record(OrderState::Paid, 3, None)));
        snapshot
            .audits
            .insert("o1".into(), delivered_audit()[..4].to_vec());
        snapshot.ledger.shipments.clear();
        snapshot.ledger.reservations[0].state = ReservationState::Reserved;
        assert_eq!(names(&check(&snapshot, &expected)), ["I1", "I9"]);
    }

    #[test]
    fn an_order_the_store_forgot_is_judged_by_the_providers_after_a_loss() {
        let (mut snapshot, mut expected) = happy();
        snapshot.orders.insert("o1".into(), None);
        snapshot.audits.clear();
        assert_eq!(names(&check(&snapshot, &expected)), ["I9"]);

        expected.store_lost_writes = true;
        assert_eq!(check(&snapshot, &expected), vec![]);

        // Work left undone at the providers is still caught...
        snapshot.ledger.reservations[0].state = ReservationState::Reserved;
        assert_eq!(names(&check(&snapshot, &expected)), ["I9"]);
        // ...unless a message about the order waits for a person.
        snapshot.parked_orders.insert("o1".into());
        assert_eq!(check(&snapshot, &expected), vec![]);
    }

    #[test]
    fn malformed_input_must_be_parked_exactly_once_and_workers_live() {
        let (mut snapshot, mut expected) = happy();
        expected.malformed = vec![b"not json".to_vec(), b"{}".to_vec()];
        let parked = |body: &[u8]| Parked {
            queue: "q".into(),
            body: body.to_vec(),
            meta: orderflow_broker::Meta {
                reason: Some("malformed".into()),
                ..Default::default()
            },
            redelivered: false,
        };
        snapshot.inventory_exceptions = vec![parked(b"not json"), parked(b"not json")];
        snapshot.dead_workers = vec!["payment-worker#0 (exit status: 101)".into()];
        assert_eq!(names(&check(&snapshot, &expected)), ["I7", "I7", "I7"]);
    }

    #[test]
    fn gaps_and_missing_ids_in_the_audit_are_caught() {
        let (mut snapshot, expected) = happy();
        let mut audit = delivered_audit();
        audit.remove(2);
        audit[0].correlation_id = String::new();
        snapshot.audits.insert("o1".into(), audit);
        let violations = check(&snapshot, &expected);
        assert_eq!(names(&violations), ["I8", "I8"], "{violations:#?}");
    }
}
