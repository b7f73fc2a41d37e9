//! What the store runs on, for operators: one Redis, or a Redis Cluster's
//! state and each master with its slots and replicas, up or down. Read from
//! `CLUSTER INFO` and `CLUSTER NODES` of whichever node answers.
//!
//! Also the walk over every master that a keyspace `SCAN` needs on a
//! cluster, where each node scans only its own keys.

use crate::Store;
use crate::error::Error;
use std::collections::BTreeMap;

/// What the store runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One Redis, with how many replicas are connected to it.
    Single {
        connected_replicas: u64,
    },
    Cluster(ClusterTopology),
}

/// A Redis Cluster as one of its nodes sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopology {
    /// `cluster_state` of `CLUSTER INFO`: `ok` while every slot is served.
    pub state: String,
    /// `host:port` of the node that answered.
    pub seen_from: String,
    /// Masters by address, each with its replicas; a master that failed and
    /// lost its slots is listed without them.
    pub masters: Vec<ClusterMaster>,
}

impl ClusterTopology {
    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }

    /// The master serving `slot`, if any.
    pub fn master_of(&self, slot: u16) -> Option<&ClusterMaster> {
        self.masters.iter().find(|master| {
            master
                .slots
                .iter()
                .any(|&(from, to)| (from..=to).contains(&slot))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMaster {
    pub node: ClusterNode,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
    pub replicas: Vec<ClusterNode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    /// `host:port` (clients' port, not the bus).
    pub address: String,
    /// Not flagged `fail`/`fail?` and its link connected.
    pub up: bool,
}

impl ClusterNode {
    /// Host and port, for routing a command to this node.
    fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    }
}

/// Reads `CLUSTER NODES` (one line per node:
/// `id host:port@bus[,hostname] flags master-id ping pong epoch link slots…`).
pub(crate) fn parse_cluster_nodes(
    text: &str,
) -> Result<(Vec<ClusterMaster>, Option<String>), String> {
    let mut masters: BTreeMap<String, ClusterMaster> = BTreeMap::new();
    let mut replicas: Vec<(String, ClusterNode)> = Vec::new();
    let mut myself = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("short CLUSTER NODES line `{line}`"));
        }
        let address = fields[1]
            .split(['@', ','])
            .next()
            .unwrap_or_default()
            .to_owned();
        let flags: Vec<&str> = fields[2].split(',').collect();
        let up = !flags.iter().any(|f| *f == "fail" || *f == "fail?")
            && !flags.contains(&"noaddr")
            && fields[7] == "connected";
        let node = ClusterNode {
            id: fields[0].to_owned(),
            address,
            up,
        };
        if flags.contains(&"myself") {
            myself = Some(node.address.clone());
        }
        if flags.contains(&"master") {
            let mut slots = Vec::new();
            // Importing/migrating markers (`[…]`) are not served slots.
            for range in fields[8..].iter().filter(|r| !r.starts_with('[')) {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                let parse = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| format!("bad slot range `{range}`"))
                };
                slots.push((parse(from)?, parse(to)?));
            }
            slots.sort_unstable();
            masters.insert(
                node.id.clone(),
                ClusterMaster {
                    node,
                    slots,
                    replicas: Vec::new(),
                },
            );
        } else {
            replicas.push((fields[3].to_owned(), node));
        }
    }
    for (master_id, replica) in replicas {
        // A replica whose master this node does not know yet is left out.
        if let Some(master) = masters.get_mut(&master_id) {
            master.replicas.push(replica);
        }
    }
    let mut masters: Vec<ClusterMaster> = masters.into_values().collect();
    for master in &mut masters {
        master.replicas.sort_by(|a, b| a.address.cmp(&b.address));
    }
    masters.sort_by(|a, b| a.node.address.cmp(&b.node.address));
    Ok((masters, myself))
}

/// `field:value` of an `INFO`-style text.
fn info_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(field)?.strip_prefix(':'))
}

impl Store {
    /// The store's Redis as operators see it.
    pub async fn redis_topology(&self) -> Result<RedisTopology, Error> {
        if !self.conn.is_cluster() {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut self.conn())
                .await?;
            let connected_replicas = info_field(&info, "connected_slaves")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Ok(RedisTopology::Single { connected_replicas });
        }
        // Both from one node, so state and nodes agree.
        let mut pipe = redis::pipe();
        pipe.cmd("CLUSTER").arg("INFO").cmd("CLUSTER").arg("NODES");
        let (info, nodes): (String, String) = pipe.query_async(&mut self.conn()).await?;
        let corrupt = |detail: String| Error::corrupt("CLUSTER NODES", detail);
        let (masters, myself) = parse_cluster_nodes(&nodes).map_err(corrupt)?;
        Ok(RedisTopology::Cluster(ClusterTopology {
            state: info_field(&info, "cluster_state")
                .unwrap_or("unknown")
                .to_owned(),
            seen_from: myself.unwrap_or_default(),
            masters,
        }))
    }

    /// Every key matching `pattern`, sorted. On a cluster each master scans
    /// only its own slots, so every master that serves slots is asked.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        if !self.conn.is_cluster() {
            self.scan_node(None, pattern, &mut found).await?;
        } else if let RedisTopology::Cluster(cluster) = self.redis_topology().await? {
            for master in cluster.masters.iter().filter(|m| !m.slots.is_empty()) {
                let node = master.node.host_port().ok_or_else(|| {
                    Error::corrupt(
                        "CLUSTER NODES",
                        format!("bad address {}", master.node.address),
                    )
                })?;
                self.scan_node(Some(node), pattern, &mut found).await?;
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn scan_node(
        &self,
        node: Option<(&str, u16)>,
        pattern: &str,
        found: &mut Vec<String>,
    ) -> Result<(), Error> {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let reply = match node {
                Some((host, port)) => self.conn.on_node(host, port, scan).await?,
                None => scan.query_async(&mut self.conn()).await?,
            };
            let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                .map_err(|err| Error::corrupt(pattern, format!("SCAN reply: {err}")))?;
            found.extend(keys);
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
f854 127.0.0.1:7006@17006 master - 0 1796225571000 7 connected 5461-10922
eba4 127.0.0.1:7004@17004 slave 15cd 0 1796225571062 3 connected
5f70 127.0.0.1:7001@17001 myself,master - 0 1796225571000 1 connected 0-5460
b269 127.0.0.1:7002@17002 master,fail - 1796225570000 1796225569000 2 disconnected
d8dd 127.0.0.1:7005@17005 slave 5f70 0 1796225571263 1 connected
15cd 127.0.0.1:7003@17003 master - 0 1796225571062 3 connected 10923-16000 16001 16002-16383 [16001->-abc]
";

    #[test]
    fn cluster_nodes_give_masters_with_slots_and_replicas() {
        let (masters, myself) = parse_cluster_nodes(NODES).unwrap();
        assert_eq!(myself.as_deref(), Some("127.0.0.1:7001"));
        let shown: Vec<_> = masters
            .iter()
            .map(|m| {
                (
                    m.node.address.as_str(),
                    m.node.up,
                    m.slots.clone(),
                    m.replicas
                        .iter()
                        .map(|r| r.address.as_str())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "127.0.0.1:7001",
                    true,
                    vec![(0, 5460)],
                    vec!["127.0.0.1:7005"]
                ),
                ("127.0.0.1:7002", false, vec![], vec![]),
                (
                    "127.0.0.1:7003",
                    true,
                    vec![(10923, 16000), (16001, 16001), (16002, 16383)],
                    vec!["127.0.0.1:7004"]
                ),
                ("127.0.0.1:7006", true, vec![(5461, 10922)], vec![]),
            ]
        );
        let topology = ClusterTopology {
            state: "ok".into(),
            seen_from: "127.0.0.1:7001".into(),
            masters,
        };
        assert_eq!(
            topology.master_of(6000).unwrap().node.address,
            "127.0.0.1:7006"
        );
        assert_eq!(
            topology.master_of(16001).unwrap().node.address,
            "127.0.0.1:7003"
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_cluster_nodes("abc 127.0.0.1:1 master").is_err());
        assert!(parse_cluster_nodes("a 127.0.0.1:1@2 master - 0 0 1 connected x-y").is_err());
    }
}
