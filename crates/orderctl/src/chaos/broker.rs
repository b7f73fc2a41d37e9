//! Dropping a fleet's broker connections: its worker processes' client
//! ports are read from `/proc`, the broker's connections are listed with
//! `rabbitmqctl list_connections`, and the matching ones are closed with
//! `rabbitmqctl close_connection`; no other connection is touched.

use std::collections::BTreeSet;
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
                    "orderctl chaos: connection loss",
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

/// The port of an AMQP URL (5672 when it names none).
pub fn amqp_port(url: &str) -> u16 {
    let after_scheme = url.split("://").nth(1).unwrap_or(url);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    host_port
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5672)
}

/// Local ports of the TCP connections that processes `pids` hold to
/// `remote_port`: the socket inodes of their descriptors, matched in the
/// network namespace's socket tables.
fn client_ports(pids: &[u32], remote_port: u16) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            let port = |addr: &str| {
                addr.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if inodes.contains(*inode)
                && port(remote) == Some(remote_port)
                && let Some(local_port) = port(local)
            {
                ports.insert(local_port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_amqp_port_is_read_from_the_url() {
        assert_eq!(amqp_port("amqp://guest:guest@127.0.0.1:5672/%2f"), 5672);
        assert_eq!(amqp_port("amqp://u:p@host:5673"), 5673);
        assert_eq!(amqp_port("amqp://host/vh"), 5672);
    }

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
