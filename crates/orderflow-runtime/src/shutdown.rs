//! Process shutdown for workers: the first SIGTERM or SIGINT drains (stop
//! taking deliveries, let in-flight ones finish within the grace period,
//! leave the rest to the broker); a second one exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// A token cancelled by the first SIGTERM/SIGINT; the second ends the
/// process with status 130.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let drain = token.clone();
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            if n == 0 {
                warn!("shutting down: finishing in-flight deliveries (signal again to exit now)");
                drain.cancel();
            } else {
                warn!(
                    "second signal: exiting now; unacknowledged deliveries go back to their queues"
                );
                std::process::exit(130);
            }
        }
    });
    Ok(token)
}
