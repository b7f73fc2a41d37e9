//! `orderctl publish`: the producer side, for demos, load and replaying a
//! file of orders. Every message is checked against the producer contract
//! before anything is sent, and counted only once the broker confirmed it
//! (`orderflow_producer::send`).

use crate::cli::PublishArgs;
use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_broker::{Names, Publisher};
use orderflow_core::message::{Inbound, parse_inbound};
use orderflow_producer::{Message, generate, send};
use serde_json::json;
use std::process::ExitCode;

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
