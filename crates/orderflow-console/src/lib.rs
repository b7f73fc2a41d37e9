//! # orderflow-console
//!
//! The operator console (`orderctl console`): server-rendered pages over
//! the same library `orderctl` uses, so every action follows exactly its
//! rules — a reason required, idempotent by action id, refused when unsafe,
//! audited with the operator (here `<name>@console`).
//!
//! - [`auth`]: the host names it answers to, the access token and the
//!   sessions signed in with it, the operator's name, and the same-origin
//!   check on every action.
//! - [`layout`]: the page shell, its stylesheet and script (built in: no
//!   CDN, nothing downloaded at run time), and error pages.
//! - [`fleet`]: per stage queues, delay tiers, exceptions, consumers and
//!   pauses; breakers and budgets; orders by state; policy drift.
//! - [`charts`]: orders by state and decisions by class over the last
//!   hour, drawn as SVG from the fleet's audit stream.
//! - [`exceptions`]: exception messages grouped, opened, replayed,
//!   discarded, exported.
//! - [`orders`]: one order's state, timeline, downstream ids and actions.
//! - [`table`]: plain text tables, for what `orderctl` prints on a
//!   terminal and the reports of `orderflow-fleet`.

pub mod auth;
pub mod charts;
pub mod exceptions;
pub mod fleet;
pub mod layout;
pub mod orders;
pub mod table;

use axum::Router;
use axum::routing::get;
use orderflow_ops::Target;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use auth::{Auth, BadHostName, Hosts};

/// How the console runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Required when listening beyond loopback; then every request must
    /// carry it.
    pub token: Option<String>,
    /// Who acts when the operator gave no name at sign-in.
    pub default_actor: String,
    /// Where exports of exception messages are written.
    pub export_dir: PathBuf,
    /// Seconds between refreshes of the live pages.
    pub refresh_secs: u32,
    /// The host names requests must use: the listen address, `localhost`,
    /// and the names given with `--allowed-host`.
    pub hosts: Hosts,
}

/// The console's shared state: the fleet it works on and its settings.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    auth: Auth,
    config: Config,
    exports: exceptions::Exports,
}

impl Console {
    pub fn new(target: Target, config: Config) -> Console {
        Console {
            inner: Arc::new(Inner {
                auth: Auth::new(config.token.clone()),
                target,
                config,
                exports: exceptions::Exports::default(),
            }),
        }
    }

    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The exports of exception queues running now.
    pub fn exports(&self) -> &exceptions::Exports {
        &self.inner.exports
    }

    /// Every page and action; `/healthz` answers without a token.
    pub fn router(&self) -> Router {
        let pages = Router::new()
            .route("/", get(fleet::page))
            .merge(charts::routes())
            .merge(exceptions::routes())
            .merge(orders::routes())
            .merge(layout::routes())
            .merge(auth::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                auth::guard,
            ));
        pages
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}

/// Why the console will not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {0} without an access token: anyone who can reach it could act on the fleet. Give --token (or ORDERFLOW_CONSOLE_TOKEN), or listen on 127.0.0.1"
    )]
    OpenWithoutToken(SocketAddr),
    #[error("the access token is empty: give a non-empty --token (or ORDERFLOW_CONSOLE_TOKEN)")]
    EmptyToken,
}

/// A non-loopback address needs a token.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), ListenError> {
    match token {
        Some(token) if token.trim().is_empty() => Err(ListenError::EmptyToken),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(ListenError::OpenWithoutToken(addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_listens_without_a_token() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_listen(local, None).is_ok());
        assert!(check_listen(v6, None).is_ok());
        assert!(matches!(
            check_listen(open, None),
            Err(ListenError::OpenWithoutToken(_))
        ));
        assert!(check_listen(open, Some("s3cret")).is_ok());
        assert!(matches!(
            check_listen(open, Some("  ")),
            Err(ListenError::EmptyToken)
        ));
    }
}
