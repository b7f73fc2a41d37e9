//! What tools and tests ask the local node's `rabbitmqctl` (on PATH, run by
//! a user allowed to use it): its client connections, to drop a fleet's on
//! purpose the way a broker restart would (`orderflow-fleet chaos`, the
//! tests' fault drills), and its queues' ready and unacknowledged counts
//! (AMQP tells only the ready count).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// Why `rabbitmqctl` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot run rabbitmqctl (it must be on PATH): {0}")]
    NotRun(#[source] std::io::Error),
    #[error("rabbitmqctl {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// A client connection, as `list_connections` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnection {
    /// The broker's id of the connection (`<rabbit@host.1.2.0>`).
    pub pid: String,
    /// The client's port: with [`crate::sockets::client_ports`], whose it is.
    pub peer_port: u16,
    pub channels: u64,
    /// The name the client gave its connection (`connection_name` in its
    /// client properties; the broker's own `name` is only the addresses).
    pub name: String,
}

/// Ready and unacknowledged messages of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub ready: u64,
    pub unacked: u64,
}

/// Every client connection of the node.
pub fn list_connections() -> Result<Vec<ClientConnection>, CtlError> {
    let text = run(&[
        "list_connections",
        "pid",
        "peer_port",
        "channels",
        "client_properties",
    ])?;
    Ok(parse_connections(&text))
}

/// Closes `connections`, all at once (each `rabbitmqctl` takes about a
/// second to start), and waits for them to be closed; returns how many
/// were asked to close.
pub fn close_connections(connections: &[ClientConnection], reason: &str) -> usize {
    let closing: Vec<_> = connections
        .iter()
        .filter_map(|connection| {
            Command::new("rabbitmqctl")
                .args(["-q", "close_connection", &connection.pid, reason])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        })
        .collect();
    for mut child in closing {
        let _ = child.wait();
    }
    connections.len()
}

/// Every queue of the node, by name.
pub fn queue_counts() -> Result<BTreeMap<String, QueueCounts>, CtlError> {
    let text = run(&[
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ])?;
    Ok(parse_queues(&text))
}

fn run(args: &[&str]) -> Result<String, CtlError> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "--no-table-headers"])
        .args(args)
        .output()
        .map_err(CtlError::NotRun)?;
    if !output.status.success() {
        return Err(CtlError::Failed {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Rows of `list_connections pid peer_port channels client_properties`;
/// anything else (a header) is skipped.
fn parse_connections(text: &str) -> Vec<ClientConnection> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.splitn(4, '\t');
            let pid = columns.next()?.trim();
            let peer_port = columns.next()?.trim().parse().ok()?;
            let channels = columns.next()?.trim().parse().ok()?;
            let properties = columns.next().unwrap_or("");
            pid.starts_with('<').then(|| ClientConnection {
                pid: pid.to_owned(),
                peer_port,
                channels,
                name: connection_name(properties).unwrap_or_default(),
            })
        })
        .collect()
}

/// `..."connection_name",longstr,"e2e-x.payment-worker"}...` →
/// `e2e-x.payment-worker` (the type tag may or may not be shown).
fn connection_name(properties: &str) -> Option<String> {
    let rest = properties.split("\"connection_name\"").nth(1)?;
    let end = rest.find('}').unwrap_or(rest.len());
    let entry = &rest[..end];
    let value_end = entry.rfind('"')?;
    let value_start = entry[..value_end].rfind('"')? + 1;
    Some(entry[value_start..value_end].to_owned())
}

/// Rows of `list_queues name messages_ready messages_unacknowledged`.
fn parse_queues(text: &str) -> BTreeMap<String, QueueCounts> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let name = columns.next()?.trim().to_owned();
            let ready = columns.next()?.trim().parse().ok()?;
            let unacked = columns.next()?.trim().parse().ok()?;
            Some((name, QueueCounts { ready, unacked }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_rows_are_parsed_and_headers_skipped() {
        let text = "pid\tpeer_port\tchannels\tclient_properties\n<rabbit@h.1.2.0>\t51234\t2\t[{\"capabilities\",table,[{\"basic.nack\",bool,true}]},{\"connection_name\",longstr,\"e2e-x.inventory-worker\"},{\"product\",longstr,\"lapin\"}]\n<rabbit@h.1.3.0>\t51235\t1\t[{\"connection_name\",\"e2e-y.reconciler.publisher\"}]\n<rabbit@h.1.4.0>\t51236\t0\t[]\n";
        let rows = parse_connections(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].peer_port, 51234);
        assert_eq!(rows[0].channels, 2);
        assert_eq!(rows[0].name, "e2e-x.inventory-worker");
        assert_eq!(rows[1].pid, "<rabbit@h.1.3.0>");
        assert_eq!(rows[1].name, "e2e-y.reconciler.publisher");
        assert_eq!(rows[2].name, "");
    }

    #[test]
    fn queue_rows_are_parsed_and_anything_else_skipped() {
        let text = "name\tmessages_ready\tmessages_unacknowledged\nns.payment\t3\t1\nnot a row\n";
        assert_eq!(
            parse_queues(text),
            BTreeMap::from([(
                "ns.payment".to_owned(),
                QueueCounts {
                    ready: 3,
                    unacked: 1
                }
            )])
        );
    }
}
