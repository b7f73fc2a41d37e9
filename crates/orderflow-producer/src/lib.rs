//! # orderflow-producer
//!
//! The producer's side of the contract, for `orderctl publish` and the
//! local fleet's loads (`orderflow-fleet`): generated `order.placed/v1`
//! orders, reproducible from a seed, and confirmed publishing at a rate.
//! Every message counts only once the broker confirmed it.

use governor::{Quota, RateLimiter};
use orderflow_broker::names::ORDER_PLACED;
use orderflow_broker::{Meta, Outgoing, Publisher};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::num::NonZeroU32;
use tokio::task::JoinSet;

/// Messages confirmed at once, at most.
const IN_FLIGHT: usize = 64;

/// One message ready to publish.
pub struct Message {
    pub routing_key: &'static str,
    pub message_id: String,
    pub body: Vec<u8>,
}

/// What generated orders ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Every order can succeed.
    Happy,
    /// Mostly good orders, plus short stock, declined, slow and failing
    /// payments, and unsupported destinations.
    Mixed,
}

/// `count` valid orders from `seed`: the same seed gives the same orders.
pub fn generate(count: usize, seed: u64, mix: Mix) -> Vec<Message> {
    let mut rng = StdRng::seed_from_u64(seed);
    let placed_at = jiff::Timestamp::now().to_string();
    (0..count)
        .map(|n| {
            let (token, country, sku, quantity) = match mix {
                Mix::Happy => ("tok_ok", "DE", format!("SKU-{}", rng.random_range(1..10)), 1),
                Mix::Mixed => mixed_case(&mut rng),
            };
            let order_id = format!("ord-{seed}-{n}");
            let order = json!({
                "schema": "order.placed/v1",
                "order_id": order_id,
                "customer_id": format!("cust-{}", rng.random_range(1..500)),
                "items": [{"sku": sku, "quantity": quantity, "unit_price": rng.random_range(100..10_000)}],
                "currency": "EUR",
                "payment_token": token,
                "shipping_address": {
                    "name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London",
                    "postal_code": "N1 9GU", "country": country
                },
                "placed_at": placed_at,
            });
            Message {
                routing_key: ORDER_PLACED,
                message_id: format!("placed.{order_id}"),
                body: order.to_string().into_bytes(),
            }
        })
        .collect()
}

/// A producer's mix: mostly good orders, and each business outcome the
/// stages handle differently (stock, declines, slow and failed payments,
/// unsupported destinations).
fn mixed_case(rng: &mut StdRng) -> (&'static str, &'static str, String, u64) {
    let sku = format!("SKU-{}", rng.random_range(1..10));
    match rng.random_range(0..100) {
        0..70 => ("tok_ok", "DE", sku, 1),
        70..75 => ("tok_ok", "DE", "SKU-SCARCE".to_owned(), 10),
        75..80 => ("tok_declined", "FR", sku, 1),
        80..83 => ("tok_insufficient_funds", "NL", sku, 2),
        83..85 => ("tok_fraud", "DE", sku, 1),
        85..90 => ("tok_processing", "DE", sku, 1),
        90..92 => ("tok_processing_fail", "DE", sku, 1),
        _ => ("tok_ok", "ZZ", sku, 1),
    }
}

/// Publishes every message to `exchange` with confirms, at most `rate` a
/// second; returns how many the broker confirmed, and the first failure
/// explained (after which nothing more is sent).
pub async fn send(
    publisher: &Publisher,
    exchange: &str,
    messages: Vec<Message>,
    rate: Option<u32>,
) -> (usize, Option<String>) {
    let limiter = rate
        .and_then(NonZeroU32::new)
        .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
    let mut confirmed = 0usize;
    let mut failure = None;
    let mut in_flight = JoinSet::new();
    let mut progress = Progress::new(messages.len());
    for message in messages {
        if let Some(limiter) = &limiter {
            limiter.until_ready().await;
        }
        while in_flight.len() >= IN_FLIGHT || (failure.is_some() && !in_flight.is_empty()) {
            settle(in_flight.join_next().await, &mut confirmed, &mut failure);
            progress.show(confirmed);
        }
        if failure.is_some() {
            break;
        }
        let outgoing = Outgoing {
            exchange: exchange.to_owned(),
            routing_key: message.routing_key.to_owned(),
            body: message.body,
            meta: Meta {
                message_id: Some(message.message_id),
                ..Meta::default()
            },
        };
        let publisher = publisher.clone();
        in_flight.spawn(async move { publisher.publish(outgoing).await });
    }
    while let Some(done) = in_flight.join_next().await {
        settle(Some(done), &mut confirmed, &mut failure);
        progress.show(confirmed);
    }
    progress.done();
    (confirmed, failure)
}

/// A progress line on a terminal (`confirmed/total`), redrawn at most a few
/// times a second; nothing when stderr is not a terminal.
struct Progress {
    total: usize,
    on_terminal: bool,
    drawn: Option<std::time::Instant>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            on_terminal: std::io::stderr().is_terminal(),
            drawn: None,
        }
    }

    fn show(&mut self, confirmed: usize) {
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(200));
        if self.on_terminal && due {
            let width = 30;
            let filled = (confirmed * width).checked_div(self.total).unwrap_or(width);
            eprint!(
                "\r\x1b[K[{}{}] {confirmed}/{} confirmed",
                "#".repeat(filled),
                " ".repeat(width - filled.min(width)),
                self.total
            );
            self.drawn = Some(std::time::Instant::now());
        }
    }

    fn done(&self) {
        if self.on_terminal && self.drawn.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

fn settle(
    done: Option<Result<Result<(), orderflow_broker::Error>, tokio::task::JoinError>>,
    confirmed: &mut usize,
    failure: &mut Option<String>,
) {
    match done {
        Some(Ok(Ok(()))) => *confirmed += 1,
        Some(Ok(Err(err))) => {
            failure.get_or_insert_with(|| orderflow_broker::chain(&err).to_string());
        }
        Some(Err(err)) => {
            failure.get_or_insert_with(|| err.to_string());
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::message::parse_inbound;

    #[test]
    fn generated_orders_are_valid_and_reproducible() {
        for mix in [Mix::Happy, Mix::Mixed] {
            let orders = generate(200, 7, mix);
            for order in &orders {
                assert!(
                    parse_inbound(&order.body).is_ok(),
                    "{}",
                    String::from_utf8_lossy(&order.body)
                );
            }
            let again = generate(200, 7, mix);
            assert!(
                orders
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.message_id == b.message_id)
            );
        }
        let mixed = generate(500, 1, Mix::Mixed);
        let declined = mixed
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.body).contains("tok_declined"))
            .count();
        assert!(declined > 0, "the mix includes declines");
    }
}
