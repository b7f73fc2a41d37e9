//! `orderctl console`: the operator console in the browser, on the same
//! library (and so the same rules) as every other command.

use crate::fleet_args::{self, ApiArgs, FleetArgs};
use clap::Args;
use orderflow_console::{Config, Console, Hosts, check_listen};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub apis: ApiArgs,
    /// Where to listen. Beyond loopback only with --token.
    #[arg(
        long,
        env = "ORDERFLOW_CONSOLE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// The access token every request must carry (the sign-in page asks
    /// for it); required to listen beyond loopback.
    #[arg(long, env = "ORDERFLOW_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A host name the console also answers to (repeatable): the name of a
    /// proxy or Ingress in front of it. The listen address and localhost
    /// always work; any other name is refused (421), against DNS rebinding.
    #[arg(
        long = "allowed-host",
        value_name = "NAME",
        env = "ORDERFLOW_CONSOLE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Who acts until an operator signs in with their name [default: $USER].
    #[arg(long, env = "ORDERFLOW_ACTOR")]
    pub actor: Option<String>,
    /// Where exported exception messages are written.
    #[arg(long, default_value = "exports")]
    pub export_dir: PathBuf,
    /// Seconds between refreshes of the live pages.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub refresh: u32,
}

pub fn run(args: ConsoleArgs) -> ExitCode {
    if let Err(err) = check_listen(args.listen, args.token.as_deref()) {
        eprintln!("orderctl: {err}");
        return ExitCode::from(2);
    }
    let hosts = match Hosts::new(args.listen.ip(), &args.allowed_hosts) {
        Ok(hosts) => hosts,
        Err(err) => {
            eprintln!("orderctl: {err}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        token: args.token.clone(),
        default_actor: fleet_args::operator(args.actor.as_deref()),
        export_dir: args.export_dir.clone(),
        refresh_secs: args.refresh,
        hosts,
    };
    let listen = args.listen;
    fleet_args::run(&args.fleet, Some(&args.apis), |target| async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("orderctl: cannot listen on {listen}: {err}");
                return ExitCode::from(2);
            }
        };
        let namespace = target.namespace().to_owned();
        let console = Console::new(target, config);
        let shown = listener.local_addr().map_or(listen, |addr| addr);
        eprintln!(
            "orderflow console for namespace `{namespace}` listening on {shown} (http://{shown}/; Ctrl-C stops it)"
        );
        let served = axum::serve(listener, console.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("orderctl: the console stopped: {err}");
                ExitCode::from(1)
            }
        }
    })
}
