//! Settings: every flag can also be given as an `ORDERFLOW_*` environment
//! variable, so one image runs any role from its environment alone.
//!
//! [`Settings::parse`] only reads the command line and environment;
//! [`Settings::check`] then turns the settings into what the process runs
//! with (policy, topology, downstream clients) without touching the
//! network, so a typo is reported before any connection is tried.

use crate::failure::Failure;
use crate::role::Role;
use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use orderflow_broker::{Names, TopologySpec, without_password};
use orderflow_core::{Policy, Stage};
use orderflow_downstream::transport::Error as DownstreamError;
use orderflow_settings::{AMQP_URL, Fleet, NAMESPACE, POLICY, REDIS_URL, Setting};
use orderflow_stages::{Downstreams, Urls};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Settings every role takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub fleet: Fleet,

    /// Address of the health and metrics endpoints (/healthz, /readyz,
    /// /metrics); port 0 picks a free port, logged as `listening on ADDR`.
    // The default depends on the role: set in `Settings::parse`.
    #[arg(long, env = "ORDERFLOW_LISTEN")]
    pub listen: SocketAddr,

    /// Who acts in audit entries [default: <binary>@<hostname>/<pid>].
    #[arg(long, env = "ORDERFLOW_ACTOR")]
    pub actor: Option<String>,

    /// Log format on stderr; the filter is RUST_LOG (default `info`).
    #[arg(long, env = "ORDERFLOW_LOG", value_enum, default_value_t = LogFormat::Text)]
    pub log: LogFormat,
}

/// Where the downstream APIs are, for the stage workers (the reconciler
/// calls none: it asks the stages). A stage worker stays unready and takes
/// nothing until each answers as its API (the `contract` check).
pub use orderflow_settings::Apis;

/// Settings of the roles that consume a work queue.
#[derive(Debug, Clone, Args)]
pub struct Consume {
    /// Deliveries handled at once.
    #[arg(
        long,
        env = "ORDERFLOW_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=65_535)
    )]
    pub concurrency: u32,

    /// Unacknowledged deliveries the broker may send ahead (AMQP prefetch).
    #[arg(
        long,
        env = "ORDERFLOW_PREFETCH",
        default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub prefetch: u16,

    /// After SIGTERM/SIGINT, how long in-flight deliveries may finish;
    /// unfinished ones go back to the queue.
    #[arg(
        long,
        env = "ORDERFLOW_SHUTDOWN_GRACE",
        default_value = "20s",
        value_parser = humantime::parse_duration
    )]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

const AFTER_HELP: &str = "\
Every flag can be set by its environment variable instead.
Logging: RUST_LOG filters (default `info`); logs go to stderr.
Exit status: 0 after a clean SIGTERM/SIGINT drain, 2 for bad settings or a
failed start-up check (Redis or RabbitMQ unreachable, topology conflict),
1 for any later error. A stage worker is not ready, and takes nothing,
until each API URL answers as its API (it checks every 2 s).
See docs/workers.md.";

#[derive(Debug, Parser)]
struct StageCli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    apis: Apis,
    #[command(flatten)]
    consume: Consume,
}

#[derive(Debug, Parser)]
struct ReconcilerCli {
    #[command(flatten)]
    common: Common,
}

/// What the role does once started, as configured.
#[derive(Debug, Clone)]
pub enum Work {
    /// Consume the stage's work queue.
    Stage {
        stage: Stage,
        apis: Apis,
        consume: Consume,
    },
    Reconcile,
}

/// [`Work`] with its downstream clients built.
pub enum Job {
    Stage {
        stage: Stage,
        /// Shared by the stage logic and its compensations.
        downstreams: Arc<Downstreams>,
        consume: Consume,
    },
    Reconcile,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub role: Role,
    pub common: Common,
    pub work: Work,
}

/// The settings turned into what the process runs with.
pub struct Checked {
    pub policy: Policy,
    pub spec: TopologySpec,
    pub actor: String,
    pub job: Job,
}

impl Settings {
    /// Reads the command line (`args`, program name first) and the
    /// environment. The error is clap's: usage, `--help` or `--version`.
    pub fn parse(
        role: Role,
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Settings, clap::Error> {
        let tailor = |command: clap::Command| {
            command
                .name(role.binary())
                .bin_name(role.binary())
                .about(role.about())
                .after_help(AFTER_HELP)
                .mut_arg("listen", |arg| {
                    arg.default_value(role.default_listen()).required(false)
                })
        };
        let (common, work) = match role.stage() {
            Some(stage) => {
                let matches = tailor(StageCli::command()).try_get_matches_from(args)?;
                let cli = StageCli::from_arg_matches(&matches)?;
                let (apis, consume) = (cli.apis, cli.consume);
                (
                    cli.common,
                    Work::Stage {
                        stage,
                        apis,
                        consume,
                    },
                )
            }
            None => {
                let matches = tailor(ReconcilerCli::command()).try_get_matches_from(args)?;
                (
                    ReconcilerCli::from_arg_matches(&matches)?.common,
                    Work::Reconcile,
                )
            }
        };
        Ok(Settings { role, common, work })
    }

    /// Everything that can be checked without a connection: URL syntax,
    /// the namespace, the policy (every problem it has), the downstream
    /// clients. The downstream APIs themselves are not contacted here: the
    /// worker checks them once running, unready until they answer.
    pub fn check(&self) -> Result<Checked, Failure> {
        let c = &self.common.fleet;
        for node in orderflow_broker::node_urls(&c.amqp.url) {
            check_url(
                AMQP_URL,
                node,
                &["amqp", "amqps"],
                "amqp://user:password@host:5672/%2f (or several, comma-separated)",
            )?;
        }
        if c.redis.url.starts_with(orderflow_store::CLUSTER_SCHEME) {
            // A seed list is no single URL: the store's own parser checks it.
            orderflow_store::check_url(&c.redis.url)
                .map_err(|e| Failure::setting(REDIS_URL, e, REDIS_URL_EXAMPLE))?;
        } else {
            check_url(
                REDIS_URL,
                &c.redis.url,
                &[
                    "redis",
                    "rediss",
                    "valkey",
                    "valkeys",
                    "unix",
                    "redis+unix",
                    "valkey+unix",
                ],
                REDIS_URL_EXAMPLE,
            )?;
        }
        Names::new(&c.namespace.name).map_err(|e| {
            Failure::setting(
                NAMESPACE,
                e,
                "use 1-64 ASCII letters, digits, `.`, `-` and `_`",
            )
        })?;
        let policy =
            orderflow_core::policy::from_source(&c.policy.spec, |path| std::fs::read_to_string(path))
                .map_err(|e| {
                    Failure::setting(
                        POLICY,
                        e,
                        "fix the file (`orderctl policy check FILE` shows the same problems) or name a preset: default, naive",
                    )
                })?;
        let spec = TopologySpec::from_policy(&c.namespace.name, &policy)
            .map_err(|e| Failure::setting(POLICY, e, "fix the policy file"))?;
        let actor = match &self.common.actor {
            Some(actor) if actor.trim().is_empty() => {
                return Err(Failure::setting(
                    ACTOR,
                    "is empty",
                    "name this process, or unset it for the default",
                ));
            }
            Some(actor) => actor.clone(),
            None => format!(
                "{}@{}/{}",
                self.role.binary(),
                gethostname::gethostname().to_string_lossy(),
                std::process::id()
            ),
        };
        let job = match &self.work {
            Work::Stage {
                stage,
                apis,
                consume,
            } => Job::Stage {
                stage: *stage,
                downstreams: Arc::new(clients(apis, &policy)?),
                consume: consume.clone(),
            },
            Work::Reconcile => Job::Reconcile,
        };
        Ok(Checked {
            policy,
            spec,
            actor,
            job,
        })
    }
}

/// The clients of the APIs, built without contacting anyone.
fn clients(apis: &Apis, policy: &Policy) -> Result<Downstreams, Failure> {
    let urls = Urls {
        inventory: apis.inventory_url.clone(),
        payment: apis.payment_url.clone(),
        shipping: apis.shipping_url.clone(),
    };
    Downstreams::new(&urls, policy).map_err(|e| match e {
        DownstreamError::BadUrl { stage, .. } => Failure::setting(
            downstream_url(stage),
            e,
            "give the API's base URL, such as http://host:7070",
        ),
        DownstreamError::Client(_) => Failure::Startup(format!(
            "cannot build the HTTP client for the downstream APIs: {}",
            orderflow_broker::chain(&e)
        )),
    })
}

/// One Redis, or a Redis Cluster by its seed nodes (orderflow-store).
const REDIS_URL_EXAMPLE: &str =
    "redis://host:6379 (one Redis) or redis+cluster://host:7001,host:7002 (a Redis Cluster)";
pub const LISTEN: Setting = Setting {
    env: "ORDERFLOW_LISTEN",
    long: "listen",
};
const ACTOR: Setting = Setting {
    env: "ORDERFLOW_ACTOR",
    long: "actor",
};

pub(crate) fn downstream_url(stage: Stage) -> Setting {
    match stage {
        Stage::Inventory => orderflow_settings::INVENTORY_URL,
        Stage::Payment => orderflow_settings::PAYMENT_URL,
        Stage::Shipping => orderflow_settings::SHIPPING_URL,
    }
}

/// Syntax and scheme only; whether anything answers there is a start-up
/// check of its own.
fn check_url(setting: Setting, raw: &str, schemes: &[&str], example: &str) -> Result<(), Failure> {
    let fix = format!("give a URL such as {example}");
    let shown = without_password(raw);
    let url = url::Url::parse(raw)
        .map_err(|e| Failure::setting(setting, format!("`{shown}` is not a URL ({e})"), &fix))?;
    if !schemes.contains(&url.scheme()) {
        return Err(Failure::setting(
            setting,
            format!(
                "`{shown}` has scheme `{}`, expected one of: {}",
                url.scheme(),
                schemes.join(", ")
            ),
            &fix,
        ));
    }
    let socket_path = url.scheme().ends_with("unix");
    if !socket_path && url.host_str().is_none_or(str::is_empty) {
        return Err(Failure::setting(
            setting,
            format!("`{shown}` names no host"),
            &fix,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(role: Role, args: &[&str]) -> Result<Settings, clap::Error> {
        let argv = std::iter::once(role.binary())
            .chain(args.iter().copied())
            .map(OsString::from);
        Settings::parse(role, argv)
    }

    #[test]
    fn each_role_has_its_own_default_listen_address() {
        for (role, port) in [
            (Role::Inventory, 9101),
            (Role::Payment, 9102),
            (Role::Shipping, 9103),
            (Role::Reconciler, 9104),
        ] {
            let settings = parse(role, &[]).unwrap();
            assert_eq!(settings.common.listen.port(), port, "{role:?}");
        }
    }

    #[test]
    fn the_reconciler_takes_no_consumer_or_api_settings() {
        assert!(parse(Role::Reconciler, &["--concurrency", "4"]).is_err());
        assert!(parse(Role::Reconciler, &["--payment-url", "http://h"]).is_err());
        let settings = parse(Role::Payment, &["--concurrency", "4"]).unwrap();
        let Work::Stage { stage, consume, .. } = settings.work else {
            panic!("a payment worker consumes")
        };
        assert_eq!((stage, consume.concurrency), (Stage::Payment, 4));
    }

    #[test]
    fn zero_concurrency_or_prefetch_is_refused() {
        assert!(parse(Role::Payment, &["--concurrency", "0"]).is_err());
        assert!(parse(Role::Payment, &["--prefetch", "0"]).is_err());
    }

    fn failure(args: &[&str]) -> String {
        match parse(Role::Payment, args).unwrap().check() {
            Ok(_) => panic!("{args:?} passed the checks"),
            Err(failure) => failure.to_string(),
        }
    }

    #[test]
    fn the_defaults_pass_the_checks_and_name_the_actor() {
        let checked = parse(Role::Shipping, &[]).unwrap().check().unwrap();
        assert!(checked.actor.starts_with("shipping-worker@"));
        assert_eq!(checked.policy.id(), Policy::default_policy().id());
    }

    #[test]
    fn bad_urls_name_their_setting_and_hide_passwords() {
        let text = failure(&["--amqp-url", "http://guest:secret@host/"]);
        assert!(
            text.starts_with("ORDERFLOW_AMQP_URL (--amqp-url): "),
            "{text}"
        );
        assert!(
            text.contains("scheme `http`") && !text.contains("secret"),
            "{text}"
        );
        let text = failure(&["--redis-url", "localhost:6379"]);
        assert!(text.starts_with("ORDERFLOW_REDIS_URL"), "{text}");
        let text = failure(&["--shipping-url", "ftp://host"]);
        assert!(text.starts_with("ORDERFLOW_SHIPPING_URL"), "{text}");
        let text = failure(&["--amqp-url", "amqp://"]);
        assert!(text.contains("names no host"), "{text}");
    }

    #[test]
    fn a_list_of_broker_nodes_is_checked_node_by_node() {
        let list = "amqp://guest:s1@127.0.0.1:5701/%2f,amqp://guest:s2@127.0.0.1:5702/%2f";
        let settings = parse(Role::Payment, &["--amqp-url", list]).unwrap();
        assert!(settings.check().is_ok());
        let text = failure(&[
            "--amqp-url",
            "amqp://guest:s1@127.0.0.1:5701/%2f,amqp://guest:s2@",
        ]);
        assert!(text.contains("`amqp://guest:***@` is not a URL"), "{text}");
        assert!(!text.contains("s1") && !text.contains("s2@"), "{text}");
    }

    #[test]
    fn a_mistyped_url_keeps_its_password_hidden() {
        let text = failure(&["--amqp-url", "amqp//guest:secret@localhost"]);
        assert!(
            text.contains("`amqp//guest:***@localhost` is not a URL"),
            "{text}"
        );
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_seed_nodes() {
        let url = "redis+cluster://app:secret@10.0.0.1:7001,10.0.0.2:7001";
        let settings = parse(Role::Payment, &["--redis-url", url]).unwrap();
        assert!(settings.check().is_ok());
        let text = failure(&["--redis-url", "redis+cluster://app:secret@a:1,,b:2"]);
        assert!(text.starts_with("ORDERFLOW_REDIS_URL"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_redis_socket_path_needs_no_host() {
        let settings = parse(Role::Payment, &["--redis-url", "unix:///run/redis.sock"]).unwrap();
        assert!(settings.check().is_ok());
    }

    #[test]
    fn a_bad_namespace_or_actor_is_named() {
        assert!(failure(&["--namespace", "a b"]).starts_with("ORDERFLOW_NAMESPACE"));
        assert!(failure(&["--actor", " "]).starts_with("ORDERFLOW_ACTOR"));
    }

    #[test]
    fn a_missing_policy_file_is_named_with_the_presets() {
        let text = failure(&["--policy", "/nonexistent/policy.toml"]);
        assert!(text.starts_with("ORDERFLOW_POLICY (--policy): "), "{text}");
        assert!(text.contains("default, naive"), "{text}");
    }
}
