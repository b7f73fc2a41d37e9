//! `orderctl publish`: the producer side, for demos, load and replaying a
//! file of orders. Every message is checked against the producer contract
//! before anything is sent, and counted only once the broker confirmed it.

use crate::cli::{Mix, PublishArgs};
use governor::{Quota, RateLimiter};
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Meta, Names, Outgoing, Publisher};
use orderflow_core::message::{Inbound, parse_inbound};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use std::num::NonZeroU32;
use std::process::ExitCode;
use tokio::task::JoinSet;

/// Messages confirmed at once, at most.
const IN_FLIGHT: usize = 64;

/// One message ready to publish.
pub struct Message {
    pub routing_key: &'static str,
    pub message_id: String,
    pub body: Vec<u8>,
}

pub fn run(args: PublishArgs) -> ExitCode {
    let messages = match &args.file {
        Some(path) => match read_file(path) {
            Ok(messages) => messages,
            Err(problems) => {
                eprintln!("{path}: nothing published; fix these lines first:");
                for problem in problems {
                    eprintln!("  {problem}");
                }
                return ExitCode::from(2);
            }
        },
        None => generate(args.count, args.seed, args.mix),
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(publish(&args, messages))
}

/// Reads a JSONL file of producer messages; every bad line is reported.
fn read_file(path: &str) -> Result<Vec<Message>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read it: {e}")])?;
    let mut messages = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match parse_inbound(line.as_bytes()) {
            Ok(inbound) => messages.push(message(&inbound, line.as_bytes().to_vec())),
            Err(invalid) => problems.extend(
                invalid
                    .problems
                    .iter()
                    .map(|p| format!("line {}: {p}", n + 1)),
            ),
        }
    }
    if problems.is_empty() {
        Ok(messages)
    } else {
        Err(problems)
    }
}

fn message(inbound: &Inbound, body: Vec<u8>) -> Message {
    match inbound {
        Inbound::Placed(order) => Message {
            routing_key: ORDER_PLACED,
            message_id: format!("placed.{}", order.order_id),
            body,
        },
        Inbound::Cancel(cancel) => Message {
            routing_key: ORDER_CANCEL,
            message_id: format!("cancel.{}", cancel.order_id),
            body,
        },
    }
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

async fn publish(args: &PublishArgs, messages: Vec<Message>) -> ExitCode {
    let names = match Names::new(&args.namespace.name) {
        Ok(names) => names,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let exchange = names.orders_exchange();
    let publisher = match Publisher::connect(&args.amqp.url, "orderctl-publish").await {
        Ok(publisher) => publisher,
        Err(err) => {
            eprintln!("{}", orderflow_broker::chain(&err));
            return ExitCode::from(1);
        }
    };
    let total = messages.len();
    let (confirmed, failure) = send(&publisher, &exchange, messages, args.rate).await;
    publisher.close().await;

    if args.json {
        println!(
            "{}",
            json!({"exchange": exchange, "messages": total, "confirmed": confirmed})
        );
    } else {
        println!("{confirmed} of {total} messages confirmed by the broker on {exchange}");
    }
    match failure {
        None => ExitCode::SUCCESS,
        Some(err) => {
            eprintln!(
                "publishing stopped: {err}\n(is the fleet's topology declared in namespace `{}`? workers declare it when they start)",
                args.namespace.name
            );
            ExitCode::from(1)
        }
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
