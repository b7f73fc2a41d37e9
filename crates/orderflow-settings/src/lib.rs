//! Where an orderflow fleet is — its RabbitMQ, its Redis, its namespace —
//! and the policy it runs: the defaults, the environment variables and the
//! flags every binary takes them by, in one place, so a flag means the same
//! in every binary and the docs and deploy files can rely on its name.
//!
//! The defaults and names need nothing; the clap flags ([`Fleet`] and the
//! one-flag types it is made of) come with the `clap` feature. A command
//! that needs fewer than all four takes the one-flag types it needs (a
//! producer publishes with no Redis and no policy).

use std::fmt;

/// The local RabbitMQ of a development machine, and of the tests.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The local Redis of a development machine, and of the tests.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_NAMESPACE: &str = "orderflow";
/// The built-in policy's preset name.
pub const DEFAULT_POLICY: &str = "default";
/// The downstream simulator's address, which plays all three APIs.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7070";

/// A setting as operators see it: its variable and its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub env: &'static str,
    /// The flag without its `--`.
    pub long: &'static str,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (--{})", self.env, self.long)
    }
}

pub const AMQP_URL: Setting = Setting {
    env: "ORDERFLOW_AMQP_URL",
    long: "amqp-url",
};
pub const REDIS_URL: Setting = Setting {
    env: "ORDERFLOW_REDIS_URL",
    long: "redis-url",
};
pub const NAMESPACE: Setting = Setting {
    env: "ORDERFLOW_NAMESPACE",
    long: "namespace",
};
pub const POLICY: Setting = Setting {
    env: "ORDERFLOW_POLICY",
    long: "policy",
};
pub const INVENTORY_URL: Setting = Setting {
    env: "ORDERFLOW_INVENTORY_URL",
    long: "inventory-url",
};
pub const PAYMENT_URL: Setting = Setting {
    env: "ORDERFLOW_PAYMENT_URL",
    long: "payment-url",
};
pub const SHIPPING_URL: Setting = Setting {
    env: "ORDERFLOW_SHIPPING_URL",
    long: "shipping-url",
};

#[cfg(feature = "clap")]
mod flags;
#[cfg(feature = "clap")]
pub use flags::{Amqp, Apis, Fleet, Namespace, PolicySource, Redis};
