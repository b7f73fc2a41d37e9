//! Business state and rules of the three APIs: stock, reservations, charges,
//! shipments. Outcomes follow from the request alone (SKU stock, payment
//! token, destination), so a test knows what to expect before it calls.
//!
//! States that change with time (a processing charge settling, a shipment
//! moving along) are stored as a schedule and caught up whenever read.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::endpoint::Endpoint;
use crate::ledger::{
    Item, Ledger, Payment, PaymentState, Reservation, ReservationState, Shipment, ShipmentState,
};

/// Why a business call was refused; nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    InsufficientStock,
    AlreadyCommitted,
    AlreadyReleased,
    CardDeclined,
    InsufficientFunds,
    FraudSuspected,
    NotRefundable,
    InvalidAddress,
    UnsupportedDestination,
}

impl Refusal {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::InsufficientStock => "insufficient_stock",
            Refusal::AlreadyCommitted => "already_committed",
            Refusal::AlreadyReleased => "already_released",
            Refusal::CardDeclined => "card_declined",
            Refusal::InsufficientFunds => "insufficient_funds",
            Refusal::FraudSuspected => "fraud_suspected",
            Refusal::NotRefundable => "not_refundable",
            Refusal::InvalidAddress => "invalid_address",
            Refusal::UnsupportedDestination => "unsupported_destination",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::NotFound => "no such record",
            Refusal::InsufficientStock => "an item is short of stock; nothing was reserved",
            Refusal::AlreadyCommitted => "the reservation is committed and cannot be released",
            Refusal::AlreadyReleased => "the reservation is released and cannot be committed",
            Refusal::CardDeclined => "the card was declined",
            Refusal::InsufficientFunds => "the card has insufficient funds",
            Refusal::FraudSuspected => "the charge was refused as suspected fraud",
            Refusal::NotRefundable => "only a succeeded payment can be refunded",
            Refusal::InvalidAddress => {
                "name, line1, city, postal_code and country must not be empty"
            }
            Refusal::UnsupportedDestination => "the destination country is not served",
        }
    }
}

/// A charge request as the payment API receives it.
pub(crate) struct Charge {
    pub order_id: String,
    pub amount: u64,
    pub currency: String,
    pub payment_token: String,
}

/// A shipment request as the shipping API receives it.
pub(crate) struct Consignment {
    pub order_id: String,
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// Rules that come from the profile in force when a record is created.
pub(crate) struct ShippingRules<'a> {
    pub unsupported_countries: &'a [String],
    pub fulfilment_step_ms: u64,
    pub fulfilment_exception: f64,
}

const FULFILMENT_STEPS: [ShipmentState; 5] = [
    ShipmentState::Accepted,
    ShipmentState::Picking,
    ShipmentState::Packed,
    ShipmentState::HandedOff,
    ShipmentState::Delivered,
];
const EXCEPTION_CODE: &str = "damaged_in_transit";

struct PaymentEntry {
    record: Payment,
    /// A processing charge's outcome and when it lands.
    settlement: Option<(Timestamp, PaymentState)>,
}

impl PaymentEntry {
    fn catch_up(&mut self, now: Timestamp) -> &Payment {
        if let Some((at, state)) = self.settlement
            && at <= now
        {
            self.record.state = state;
            self.record.updated_at = at;
            self.settlement = None;
        }
        &self.record
    }
}

struct ShipmentEntry {
    record: Shipment,
    step_ms: u64,
    /// The step (1..=4) that becomes `exception` instead, drawn at creation.
    exception_at: Option<u64>,
}

impl ShipmentEntry {
    fn catch_up(&mut self, now: Timestamp) -> &Shipment {
        let elapsed = (now.as_millisecond() - self.record.created_at.as_millisecond()).max(0);
        let steps = match self.step_ms {
            0 => u64::MAX,
            step_ms => elapsed.unsigned_abs() / step_ms,
        };
        let last = FULFILMENT_STEPS.len() as u64 - 1;
        let (step, state) = match self.exception_at {
            Some(at) if steps >= at => (at, ShipmentState::Exception),
            _ => {
                let step = steps.min(last);
                (step, FULFILMENT_STEPS[step as usize])
            }
        };
        self.record.state = state;
        self.record.exception_code =
            (state == ShipmentState::Exception).then(|| EXCEPTION_CODE.to_owned());
        self.record.updated_at = after(self.record.created_at, step.saturating_mul(self.step_ms));
        &self.record
    }
}

pub(crate) struct Books {
    reservations: Vec<Reservation>,
    payments: Vec<PaymentEntry>,
    shipments: Vec<ShipmentEntry>,
    /// Units left of each scarce SKU; SKUs not here are never short.
    stock: BTreeMap<String, u64>,
    /// Never reset, so an id from before `/_reset` cannot name a new record.
    last_id: u64,
}

impl Books {
    pub(crate) fn new(stock: BTreeMap<String, u64>) -> Self {
        Books {
            reservations: Vec::new(),
            payments: Vec::new(),
            shipments: Vec::new(),
            stock,
            last_id: 0,
        }
    }

    /// Forgets every record and restores `stock`.
    pub(crate) fn reset(&mut self, stock: BTreeMap<String, u64>) {
        *self = Books {
            last_id: self.last_id,
            ..Books::new(stock)
        };
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.last_id += 1;
        format!("{prefix}_{:06}", self.last_id)
    }

    pub(crate) fn snapshot(&mut self, now: Timestamp, calls: &BTreeMap<Endpoint, u64>) -> Ledger {
        Ledger {
            reservations: self.reservations.clone(),
            payments: self
                .payments
                .iter_mut()
                .map(|p| p.catch_up(now).clone())
                .collect(),
            shipments: self
                .shipments
                .iter_mut()
                .map(|s| s.catch_up(now).clone())
                .collect(),
            calls: calls.clone(),
        }
    }

    // Inventory

    /// Takes stock for every item, or nothing when any SKU is short.
    pub(crate) fn reserve(
        &mut self,
        key: &str,
        order_id: String,
        items: Vec<Item>,
        now: Timestamp,
    ) -> Result<&Reservation, Refusal> {
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for item in &items {
            *wanted.entry(item.sku.as_str()).or_default() += u64::from(item.quantity);
        }
        let short = wanted
            .iter()
            .any(|(sku, quantity)| self.stock.get(*sku).is_some_and(|left| left < quantity));
        if short {
            return Err(Refusal::InsufficientStock);
        }
        for (sku, quantity) in wanted {
            if let Some(left) = self.stock.get_mut(sku) {
                *left -= quantity;
            }
        }
        let id = self.next_id("res");
        self.reservations.push(Reservation {
            id,
            key: key.to_owned(),
            order_id,
            items,
            state: ReservationState::Reserved,
            created_at: now,
            updated_at: now,
        });
        Ok(self.reservations.last().expect("just pushed"))
    }

    pub(crate) fn reservation_by_key(&self, key: &str) -> Option<&Reservation> {
        self.reservations.iter().rev().find(|r| r.key == key)
    }

    /// Makes a reservation final; committing twice is a no-op.
    pub(crate) fn commit(&mut self, id: &str, now: Timestamp) -> Result<&Reservation, Refusal> {
        let reservation = self.reservation_mut(id)?;
        match reservation.state {
            ReservationState::Released => return Err(Refusal::AlreadyReleased),
            ReservationState::Committed => {}
            ReservationState::Reserved => {
                reservation.state = ReservationState::Committed;
                reservation.updated_at = now;
            }
        }
        Ok(reservation)
    }

    /// Gives a reservation's stock back; releasing twice is a no-op.
    pub(crate) fn release(&mut self, id: &str, now: Timestamp) -> Result<&Reservation, Refusal> {
        let index = self.reservation_index(id)?;
        let reservation = &mut self.reservations[index];
        match reservation.state {
            ReservationState::Committed => return Err(Refusal::AlreadyCommitted),
            ReservationState::Released => {}
            ReservationState::Reserved => {
                reservation.state = ReservationState::Released;
                reservation.updated_at = now;
                for item in &reservation.items {
                    if let Some(left) = self.stock.get_mut(&item.sku) {
                        *left += u64::from(item.quantity);
                    }
                }
            }
        }
        Ok(&self.reservations[index])
    }

    fn reservation_index(&self, id: &str) -> Result<usize, Refusal> {
        self.reservations
            .iter()
            .position(|r| r.id == id)
            .ok_or(Refusal::NotFound)
    }

    fn reservation_mut(&mut self, id: &str) -> Result<&mut Reservation, Refusal> {
        let index = self.reservation_index(id)?;
        Ok(&mut self.reservations[index])
    }

    // Payment

    /// Charges by test token: `tok_ok`, `tok_processing`, `tok_processing_fail`
    /// create a payment; the decline tokens and any unknown token refuse.
    pub(crate) fn charge(
        &mut self,
        key: &str,
        charge: Charge,
        processing_ms: u64,
        now: Timestamp,
    ) -> Result<&Payment, Refusal> {
        let (state, settlement) = match charge.payment_token.as_str() {
            "tok_ok" => (PaymentState::Succeeded, None),
            "tok_processing" => (PaymentState::Processing, Some(PaymentState::Succeeded)),
            "tok_processing_fail" => (PaymentState::Processing, Some(PaymentState::Failed)),
            "tok_insufficient_funds" => return Err(Refusal::InsufficientFunds),
            "tok_fraud" => return Err(Refusal::FraudSuspected),
            _ => return Err(Refusal::CardDeclined),
        };
        let id = self.next_id("pay");
        self.payments.push(PaymentEntry {
            record: Payment {
                id,
                key: key.to_owned(),
                order_id: charge.order_id,
                amount: charge.amount,
                currency: charge.currency,
                state,
                created_at: now,
                updated_at: now,
            },
            settlement: settlement.map(|to| (after(now, processing_ms), to)),
        });
        Ok(&self.payments.last().expect("just pushed").record)
    }

    pub(crate) fn payment_by_key(&mut self, key: &str, now: Timestamp) -> Option<&Payment> {
        let entry = self
            .payments
            .iter_mut()
            .rev()
            .find(|p| p.record.key == key)?;
        Some(entry.catch_up(now))
    }

    /// Refunds a succeeded payment; refunding twice is a no-op.
    pub(crate) fn refund(&mut self, id: &str, now: Timestamp) -> Result<&Payment, Refusal> {
        let entry = self
            .payments
            .iter_mut()
            .find(|p| p.record.id == id)
            .ok_or(Refusal::NotFound)?;
        entry.catch_up(now);
        let payment = &mut entry.record;
        match payment.state {
            PaymentState::Processing | PaymentState::Failed => return Err(Refusal::NotRefundable),
            PaymentState::Refunded => {}
            PaymentState::Succeeded => {
                payment.state = PaymentState::Refunded;
                payment.updated_at = now;
            }
        }
        Ok(payment)
    }

    // Shipping

    /// Accepts a shipment and fixes its fulfilment path (delivered, or an
    /// exception at a random step) from the seeded RNG.
    pub(crate) fn ship(
        &mut self,
        key: &str,
        consignment: Consignment,
        rules: &ShippingRules<'_>,
        rng: &mut StdRng,
        now: Timestamp,
    ) -> Result<&Shipment, Refusal> {
        let address = [
            &consignment.name,
            &consignment.line1,
            &consignment.city,
            &consignment.postal_code,
            &consignment.country,
        ];
        if address.iter().any(|field| field.trim().is_empty()) {
            return Err(Refusal::InvalidAddress);
        }
        let unsupported = rules
            .unsupported_countries
            .iter()
            .any(|country| country.eq_ignore_ascii_case(consignment.country.trim()));
        if unsupported {
            return Err(Refusal::UnsupportedDestination);
        }
        let last = FULFILMENT_STEPS.len() as u64 - 1;
        let exception_at = rng
            .random_bool(rules.fulfilment_exception)
            .then(|| rng.random_range(1..=last));
        let id = self.next_id("shp");
        self.shipments.push(ShipmentEntry {
            record: Shipment {
                id,
                key: key.to_owned(),
                order_id: consignment.order_id,
                state: ShipmentState::Accepted,
                exception_code: None,
                created_at: now,
                updated_at: now,
            },
            step_ms: rules.fulfilment_step_ms,
            exception_at,
        });
        Ok(&self.shipments.last().expect("just pushed").record)
    }

    pub(crate) fn shipment_by_key(&mut self, key: &str, now: Timestamp) -> Option<&Shipment> {
        let entry = self
            .shipments
            .iter_mut()
            .rev()
            .find(|s| s.record.key == key)?;
        Some(entry.catch_up(now))
    }
}

/// The ledger's clock: wall time, cut to whole milliseconds as reported.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).expect("now is in range")
}

fn after(start: Timestamp, ms: u64) -> Timestamp {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(start.as_millisecond().saturating_add(ms)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    fn items(sku: &str, quantity: u32) -> Vec<Item> {
        vec![Item {
            sku: sku.into(),
            quantity,
        }]
    }

    #[test]
    fn reservations_take_and_give_back_scarce_stock() {
        let mut books = Books::new(BTreeMap::from([("SCARCE".to_owned(), 3)]));
        let first = books
            .reserve("k1", "o1".into(), items("SCARCE", 2), at(0))
            .unwrap()
            .id
            .clone();
        assert_eq!(
            books
                .reserve("k2", "o2".into(), items("SCARCE", 2), at(0))
                .unwrap_err(),
            Refusal::InsufficientStock
        );
        books.release(&first, at(1)).unwrap();
        assert!(
            books
                .reserve("k3", "o3".into(), items("SCARCE", 3), at(2))
                .is_ok()
        );
        assert!(
            books
                .reserve("k4", "o4".into(), items("PLENTY", 1_000_000), at(2))
                .is_ok()
        );
    }

    #[test]
    fn shipment_steps_are_computed_from_creation_time() {
        let mut books = Books::new(BTreeMap::new());
        let rules = ShippingRules {
            unsupported_countries: &[],
            fulfilment_step_ms: 100,
            fulfilment_exception: 0.0,
        };
        let consignment = Consignment {
            order_id: "o1".into(),
            name: "A".into(),
            line1: "1 Road".into(),
            city: "Town".into(),
            postal_code: "123".into(),
            country: "NL".into(),
        };
        let mut rng = StdRng::seed_from_u64(1);
        books
            .ship("k", consignment, &rules, &mut rng, at(0))
            .unwrap();
        let state = |books: &mut Books, ms| books.shipment_by_key("k", at(ms)).unwrap().clone();
        assert_eq!(state(&mut books, 99).state, ShipmentState::Accepted);
        assert_eq!(state(&mut books, 250).state, ShipmentState::Packed);
        let delivered = state(&mut books, 10_000);
        assert_eq!(delivered.state, ShipmentState::Delivered);
        assert_eq!(delivered.updated_at, at(400));
    }
}
