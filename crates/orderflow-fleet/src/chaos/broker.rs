//! Dropping a fleet's broker connections: its worker processes' client
//! ports are read from `/proc`, and the broker's connections from those
//! ports are closed with `rabbitmqctl`; no other connection is touched.

use orderflow_broker::rabbitmqctl::{self, ClientConnection};
use orderflow_broker::sockets::client_ports;

/// Closes every broker connection that processes `pids` hold to the broker
/// on `broker_port`; returns how many were closed.
pub fn close_connections_of(pids: &[u32], broker_port: u16) -> Result<usize, String> {
    let ports = client_ports(pids, broker_port);
    let mine: Vec<ClientConnection> = rabbitmqctl::list_connections()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| ports.contains(&c.peer_port))
        .collect();
    Ok(rabbitmqctl::close_connections(
        &mine,
        "orderflow-fleet chaos: connection loss",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_no_connection_to_a_port_nobody_uses() {
        assert!(client_ports(&[std::process::id()], 1).is_empty());
    }
}
