//! A simulator started in-process, and a small HTTP client for it.

use std::time::Duration;

use downstream_sim::{Endpoint, Ledger, Profile};
use serde_json::{Value, json};

pub struct TestSim {
    base: String,
    pub http: reqwest::Client,
    _running: downstream_sim::Running,
}

/// A status and JSON body (`Null` when the body is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// Starts a simulator with a TOML profile; it stops when the handle drops.
pub async fn start(profile: &str) -> TestSim {
    let profile = Profile::from_toml(profile).expect("test profile is valid");
    let running = downstream_sim::start(profile).await.unwrap();
    TestSim {
        base: running.base_url().to_owned(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        _running: running,
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer { status, body }
}

pub fn items(lines: &[(&str, u32)]) -> Value {
    lines
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect()
}

pub fn address(country: &str) -> Value {
    json!({
        "name": "Ada Lovelace",
        "line1": "12 Analytical Row",
        "city": "London",
        "postal_code": "N1 9GU",
        "country": country,
    })
}

impl TestSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post_request(&self, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("Idempotency-Key", key)
            .json(body)
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        answer(self.post_request(path, key, &body).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn put_faults(&self, profile: Value) -> Answer {
        let request = self.http.put(self.url("/_faults")).json(&profile);
        answer(request.send().await.unwrap()).await
    }

    pub async fn ledger(&self) -> Ledger {
        let response = self.http.get(self.url("/_ledger")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until the simulator has counted `at_least` calls to
    /// `endpoint` (a call is counted as it arrives, before its latency).
    pub async fn wait_calls(&self, endpoint: Endpoint, at_least: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.ledger().await.calls_to(endpoint) < at_least {
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {at_least} calls to {endpoint:?} within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn reserve(&self, key: &str, order_id: &str, lines: &[(&str, u32)]) -> Answer {
        let body = json!({ "order_id": order_id, "items": items(lines) });
        self.post("/v1/reservations", key, body).await
    }

    pub fn charge_body(order_id: &str, token: &str) -> Value {
        json!({
            "order_id": order_id,
            "amount": 4200,
            "currency": "EUR",
            "payment_token": token,
        })
    }

    pub async fn charge(&self, key: &str, order_id: &str, token: &str) -> Answer {
        self.post("/v1/payments", key, Self::charge_body(order_id, token))
            .await
    }

    pub fn shipment_body(order_id: &str, address: Value) -> Value {
        json!({ "order_id": order_id, "address": address, "items": items(&[("SKU-1", 1)]) })
    }

    pub async fn ship(&self, key: &str, order_id: &str, address: Value) -> Answer {
        self.post("/v1/shipments", key, Self::shipment_body(order_id, address))
            .await
    }
}
