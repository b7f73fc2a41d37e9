//! The settings as clap flags. Each flag is declared once, in its own type;
//! [`Fleet`] is all four. URLs may carry passwords: their values never show
//! in `--help`.

use crate::{
    AMQP_URL, DEFAULT_AMQP_URL, DEFAULT_API_URL, DEFAULT_NAMESPACE, DEFAULT_POLICY,
    DEFAULT_REDIS_URL, INVENTORY_URL, NAMESPACE, PAYMENT_URL, POLICY, REDIS_URL, SHIPPING_URL,
};
use clap::Args;

/// Where the fleet is and the policy it runs: what every process of a
/// fleet is started with.
#[derive(Debug, Clone, Args)]
pub struct Fleet {
    #[command(flatten)]
    pub amqp: Amqp,
    #[command(flatten)]
    pub redis: Redis,
    #[command(flatten)]
    pub namespace: Namespace,
    #[command(flatten)]
    pub policy: PolicySource,
}

#[derive(Debug, Clone, Args)]
pub struct Amqp {
    /// RabbitMQ URL, or comma-separated the URLs of a cluster's nodes
    /// (the first that answers is used; on a lost connection, the next).
    #[arg(
        id = "amqp_url",
        value_name = "AMQP_URL",
        long = AMQP_URL.long,
        env = AMQP_URL.env,
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct Redis {
    /// Redis URL: one Redis (`redis://host:6379`), or a Redis Cluster by
    /// its seed nodes (`redis+cluster://host:7001,host:7002`).
    #[arg(
        id = "redis_url",
        value_name = "REDIS_URL",
        long = REDIS_URL.long,
        env = REDIS_URL.env,
        default_value = DEFAULT_REDIS_URL,
        hide_env_values = true
    )]
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct Namespace {
    /// Prefix of every queue, exchange and Redis key; processes share work
    /// only within one namespace.
    #[arg(
        id = "namespace",
        value_name = "NAMESPACE",
        long = NAMESPACE.long,
        env = NAMESPACE.env,
        default_value = DEFAULT_NAMESPACE
    )]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct PolicySource {
    /// The fleet's policy: a file, or a preset name (`default`, `naive`).
    /// Check a file with `orderctl policy check FILE`.
    #[arg(
        id = "policy",
        value_name = "POLICY",
        long = POLICY.long,
        env = POLICY.env,
        default_value = DEFAULT_POLICY
    )]
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        fleet: Fleet,
    }

    #[test]
    fn the_flags_keep_the_names_the_docs_and_deploy_files_use() {
        let cli = Cli::try_parse_from([
            "x",
            "--amqp-url",
            "amqp://a",
            "--redis-url",
            "redis://r",
            "--namespace",
            "ns",
            "--policy",
            "naive",
        ])
        .unwrap();
        let fleet = cli.fleet;
        assert_eq!(
            [
                fleet.amqp.url,
                fleet.redis.url,
                fleet.namespace.name,
                fleet.policy.spec
            ],
            ["amqp://a", "redis://r", "ns", "naive"]
        );
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for setting in [AMQP_URL, REDIS_URL, NAMESPACE, POLICY] {
            assert!(help.contains(&format!("[env: {}", setting.env)), "{help}");
        }
        assert!(help.contains("--amqp-url <AMQP_URL>"), "{help}");
    }
}

/// Where the three downstream APIs are: for the stage workers, and for the
/// operator actions that check with them or compensate.
#[derive(Debug, Clone, Args)]
pub struct Apis {
    /// Base URL of the inventory API.
    #[arg(
        id = "inventory_url",
        value_name = "INVENTORY_URL",
        long = INVENTORY_URL.long,
        env = INVENTORY_URL.env,
        default_value = DEFAULT_API_URL
    )]
    pub inventory_url: String,
    /// Base URL of the payment API.
    #[arg(
        id = "payment_url",
        value_name = "PAYMENT_URL",
        long = PAYMENT_URL.long,
        env = PAYMENT_URL.env,
        default_value = DEFAULT_API_URL
    )]
    pub payment_url: String,
    /// Base URL of the shipping API.
    #[arg(
        id = "shipping_url",
        value_name = "SHIPPING_URL",
        long = SHIPPING_URL.long,
        env = SHIPPING_URL.env,
        default_value = DEFAULT_API_URL
    )]
    pub shipping_url: String,
}
