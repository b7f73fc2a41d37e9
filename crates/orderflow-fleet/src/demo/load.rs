//! The demo load: generated orders (the `mixed` mix), and beside them what
//! producers get wrong and customers change their minds about — cancels,
//! a replacement order, malformed messages, a redelivered duplicate and an
//! id reused for another order.

use orderflow_broker::names::{ORDER_CANCEL, ORDER_PLACED};
use orderflow_producer::Mix;
use orderflow_producer::{Message, generate};
use serde_json::{Value, json};

pub struct Load {
    /// Sent first: the orders.
    pub orders: Vec<Message>,
    /// Sent after the orders: cancels, a replacement, bad and repeated
    /// messages.
    pub follow_up: Vec<Message>,
    /// Ids of every valid order placed.
    pub placed: Vec<String>,
    /// Bodies the producer contract refuses.
    pub malformed: Vec<Vec<u8>>,
}

/// `count` orders from `seed`; every 40th is cancelled, one is replaced.
pub fn demo_load(count: usize, seed: u64) -> Load {
    let orders = generate(count, seed, Mix::Mixed);
    let placed: Vec<String> = orders.iter().map(order_id).collect();
    let mut follow_up = Vec::new();
    for id in placed.iter().step_by(40) {
        let cancel = json!({"schema": "order.cancel/v1", "order_id": id, "reason": "customer changed their mind"});
        follow_up.push(Message {
            routing_key: ORDER_CANCEL,
            message_id: format!("cancel.{id}"),
            body: cancel.to_string().into_bytes(),
        });
    }
    let mut placed = placed;
    if let (Some(first), Some(second)) = (orders.first(), orders.get(1)) {
        // A customer replaces an order; the earlier one is cancelled if it
        // has not been charged yet.
        let replaced = order_id(second);
        let mut replacement: Value = serde_json::from_slice(&second.body).expect("generated JSON");
        let id = format!("{replaced}-v2");
        replacement["order_id"] = json!(id);
        replacement["supersedes"] = json!(replaced);
        follow_up.push(placed_message(&id, &replacement));
        placed.push(id);
        // The producer sends the first order again, and reuses its id for
        // a different order.
        follow_up.push(Message {
            routing_key: ORDER_PLACED,
            message_id: format!("{}.again", first.message_id),
            body: first.body.clone(),
        });
        let mut conflict: Value = serde_json::from_slice(&first.body).expect("generated JSON");
        conflict["customer_id"] = json!("someone-else");
        follow_up.push(Message {
            routing_key: ORDER_PLACED,
            message_id: format!("{}.conflict", first.message_id),
            body: conflict.to_string().into_bytes(),
        });
    }
    let malformed: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        json!({"schema": "order.placed/v1", "order_id": "bad id!", "items": []})
            .to_string()
            .into_bytes(),
        json!({"schema": "order.placed/v9"})
            .to_string()
            .into_bytes(),
    ];
    for (n, body) in malformed.iter().enumerate() {
        follow_up.push(Message {
            routing_key: ORDER_PLACED,
            message_id: format!("malformed.{n}"),
            body: body.clone(),
        });
    }
    Load {
        orders,
        follow_up,
        placed,
        malformed,
    }
}

fn placed_message(id: &str, body: &Value) -> Message {
    Message {
        routing_key: ORDER_PLACED,
        message_id: format!("placed.{id}"),
        body: body.to_string().into_bytes(),
    }
}

fn order_id(message: &Message) -> String {
    serde_json::from_slice::<Value>(&message.body)
        .ok()
        .and_then(|v| v["order_id"].as_str().map(str::to_owned))
        .expect("generated orders have ids")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::message::parse_inbound;

    #[test]
    fn the_load_is_valid_where_it_should_be_and_refused_where_not() {
        let load = demo_load(100, 7);
        assert_eq!(load.placed.len(), 101, "100 orders and one replacement");
        for message in load.orders.iter() {
            assert!(parse_inbound(&message.body).is_ok());
        }
        for body in &load.malformed {
            assert!(parse_inbound(body).is_err());
        }
        let cancels = load
            .follow_up
            .iter()
            .filter(|m| m.routing_key == ORDER_CANCEL)
            .count();
        assert_eq!(cancels, 3);
    }
}
