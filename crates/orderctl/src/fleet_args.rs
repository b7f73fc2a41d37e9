//! What `status`, `order` and `stage` share: where the fleet is, who acts,
//! where the APIs are; connecting; printing; and the exit code of a
//! library error (1 failed, 2 bad usage or input, 3 refused as unsafe).

use crate::policy_source;
use clap::Args;
use orderflow_ops::{Error, Settings, Target};
use orderflow_stages::Urls;
use serde::Serialize;
use std::process::ExitCode;

/// Where the fleet is, and the policy it runs: the settings every binary
/// takes.
pub use orderflow_settings::Fleet as FleetArgs;

/// Who acts, and how the action is known again.
#[derive(Debug, Clone, Args)]
pub struct ActorArgs {
    /// Why: required, written to the audit stream.
    #[arg(long)]
    pub reason: String,
    /// Who is acting, audited as `operator:<actor>` [default: $USER].
    #[arg(long, env = "ORDERFLOW_ACTOR")]
    pub actor: Option<String>,
    /// Makes the action idempotent: the same id acts once, and running it
    /// again re-sends what it published [default: a new id, printed].
    #[arg(long)]
    pub action_id: Option<String>,
}

/// Where the downstream APIs are, for actions that check or compensate.
pub use orderflow_settings::Apis as ApiArgs;

/// The APIs' URLs as the stages' clients take them.
pub fn api_urls(apis: &ApiArgs) -> Urls {
    Urls {
        inventory: apis.inventory_url.clone(),
        payment: apis.payment_url.clone(),
        shipping: apis.shipping_url.clone(),
    }
}

impl ActorArgs {
    pub fn operator(&self) -> String {
        operator(self.actor.as_deref())
    }
}

/// `--actor`, else `ORDERFLOW_ACTOR` (clap reads it into the flag), else
/// the OS user.
pub fn operator(actor: Option<&str>) -> String {
    actor
        .filter(|actor| !actor.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_default()
}

/// Runs one command on a fresh runtime: connect, then `work`.
pub fn run<F, Fut>(fleet: &FleetArgs, apis: Option<&ApiArgs>, work: F) -> ExitCode
where
    F: FnOnce(Target) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let policy = match policy_source::load(&fleet.policy.spec) {
        Ok(policy) => policy,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let settings = Settings {
        namespace: fleet.namespace.name.clone(),
        redis_url: fleet.redis.url.clone(),
        amqp_url: fleet.amqp.url.clone(),
        policy,
        apis: apis.map(api_urls),
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        match Target::connect(settings).await {
            Ok(target) => work(target).await,
            Err(err) => fail(&err),
        }
    })
}

/// Prints the error and returns its exit code.
pub fn fail(err: &Error) -> ExitCode {
    let code = err.kind().exit_code();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    eprintln!("orderctl: {text}");
    ExitCode::from(code)
}

/// `--json`: the value, one document on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialize")
    );
}

/// A time for a table: to the second, UTC.
pub fn when(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// How long ago, to the second (`3m 12s`).
pub fn ago(at: jiff::Timestamp) -> String {
    let seconds = jiff::Timestamp::now()
        .duration_since(at)
        .as_secs()
        .max(0)
        .unsigned_abs();
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}
