//! Dropping a fleet's broker connections: its worker processes' client
//! ports are read from `/proc`, the broker's connections are listed with
//! `rabbitmqctl list_connections`, and the matching ones are closed with
//! `rabbitmqctl close_connection`; no other connection is touched.

use orderflow_broker::sockets::client_ports;
use std::process::{Command, Stdio};

/// Closes every broker connection that processes `pids` hold to the broker
/// on `broker_port`; returns how many were closed.
pub fn close_connections_of(pids: &[u32], broker_port: u16) -> Result<usize, String> {
    let ports = client_ports(pids, broker_port);
    let output = Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "peer_port",
        ])
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl (it must be on PATH): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rabbitmqctl list_connections failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mine: Vec<String> = connections(&String::from_utf8_lossy(&output.stdout))
        .into_iter()
        .filter(|(_, port)| ports.contains(port))
        .map(|(pid, _)| pid)
        .collect();
    // All at once: each rabbitmqctl takes about a second to start.
    let closing: Vec<_> = mine
        .iter()
        .filter_map(|pid| {
            Command::new("rabbitmqctl")
                .args([
                    "-q",
                    "close_connection",
                    pid,
                    "orderflow-fleet chaos: connection loss",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for mut child in closing {
        let _ = child.wait();
    }
    Ok(mine.len())
}

/// `(connection pid, peer port)` rows of `list_connections pid peer_port`.
fn connections(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let pid = columns.next()?.trim();
            let port = columns.next()?.trim().parse().ok()?;
            pid.starts_with('<').then(|| (pid.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_rows_are_read_and_anything_else_skipped() {
        let text = "<rabbit@h.1.2.0>\t51234\n<rabbit@h.1.3.0>\t51235\nnot a row\n";
        assert_eq!(
            connections(text),
            [
                ("<rabbit@h.1.2.0>".to_owned(), 51234),
                ("<rabbit@h.1.3.0>".to_owned(), 51235)
            ]
        );
    }

    #[test]
    fn this_process_has_no_connection_to_a_port_nobody_uses() {
        assert!(client_ports(&[std::process::id()], 1).is_empty());
    }
}
