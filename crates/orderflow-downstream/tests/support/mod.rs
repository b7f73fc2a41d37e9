//! A simulator for one test, and what its calls need.

use downstream_sim::{Ledger, Profile, Running};
use orderflow_core::message::LineItem;

pub struct Sim {
    pub base: String,
    _running: Running,
}

impl Sim {
    pub async fn start(profile: &str) -> Sim {
        let profile = Profile::from_toml(profile).expect("test profile is valid");
        let running = downstream_sim::start(profile)
            .await
            .expect("a loopback port");
        Sim {
            base: running.base_url().to_owned(),
            _running: running,
        }
    }

    /// What really happened.
    pub async fn ledger(&self) -> Ledger {
        reqwest::get(format!("{}/_ledger", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn items() -> Vec<LineItem> {
    vec![LineItem {
        sku: "SKU-1".into(),
        quantity: 1,
        unit_price: 100,
    }]
}
