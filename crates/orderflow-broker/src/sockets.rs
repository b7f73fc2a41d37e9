//! Which TCP connections processes hold to the broker, read from `/proc`:
//! what tools that drop a fleet's connections on purpose (`orderflow-fleet chaos`,
//! the end-to-end fault tests) need to pick out its connections from the
//! broker's list. Linux only; elsewhere no port is found.

use std::collections::BTreeSet;

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
pub fn client_ports(pids: &[u32], remote_port: u16) -> BTreeSet<u16> {
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
        assert_eq!(amqp_port(orderflow_settings::DEFAULT_AMQP_URL), 5672);
        assert_eq!(amqp_port("amqp://u:p@host:5673"), 5673);
        assert_eq!(amqp_port("amqp://host/vh"), 5672);
    }

    #[test]
    fn this_process_holds_no_connection_to_an_unused_port() {
        assert!(client_ports(&[std::process::id()], 1).is_empty());
    }
}
