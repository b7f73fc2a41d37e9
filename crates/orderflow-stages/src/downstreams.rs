//! The three downstream clients every stage may need: a stage calls its own
//! API, and compensates through the others (payment releases the
//! reservation; shipping commits it).

use orderflow_core::Policy;
use orderflow_downstream::transport::Error;
use orderflow_downstream::{InventoryApi, PaymentApi, ShippingApi};

/// Base URLs of the three APIs.
#[derive(Debug, Clone)]
pub struct Urls {
    pub inventory: String,
    pub payment: String,
    pub shipping: String,
}

impl Urls {
    /// One server plays all three APIs (the simulator does).
    pub fn all_at(base: &str) -> Urls {
        Urls {
            inventory: base.to_owned(),
            payment: base.to_owned(),
            shipping: base.to_owned(),
        }
    }
}

pub struct Downstreams {
    pub inventory: InventoryApi,
    pub payment: PaymentApi,
    pub shipping: ShippingApi,
}

impl Downstreams {
    pub fn new(urls: &Urls, policy: &Policy) -> Result<Downstreams, Error> {
        Ok(Downstreams {
            inventory: InventoryApi::new(&urls.inventory, policy)?,
            payment: PaymentApi::new(&urls.payment, policy)?,
            shipping: ShippingApi::new(&urls.shipping, policy)?,
        })
    }
}
