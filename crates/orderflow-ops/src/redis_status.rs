//! The Redis under the fleet, for [`crate::status`]: one node with its
//! replicas, or a Redis Cluster's state with each master's slots and
//! replicas, up or down, and what of it needs a look.

use crate::error::{Error, Result};
use orderflow_store::{ClusterNode, RedisTopology, Store};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RedisStatus {
    /// One Redis.
    Single { connected_replicas: u64 },
    Cluster {
        /// `ok` while every slot is served (`cluster_state`).
        state: String,
        /// The node that answered.
        seen_from: String,
        masters: Vec<RedisMaster>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisMaster {
    pub address: String,
    pub id: String,
    pub up: bool,
    /// Slot ranges, `from-to`; none for a failed master whose slots moved.
    pub slots: Vec<String>,
    pub slot_count: u32,
    pub replicas: Vec<RedisReplica>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisReplica {
    pub address: String,
    pub id: String,
    pub up: bool,
}

impl From<&ClusterNode> for RedisReplica {
    fn from(node: &ClusterNode) -> RedisReplica {
        RedisReplica {
            address: node.address.clone(),
            id: node.id.clone(),
            up: node.up,
        }
    }
}

impl From<RedisTopology> for RedisStatus {
    fn from(topology: RedisTopology) -> RedisStatus {
        match topology {
            RedisTopology::Single { connected_replicas } => {
                RedisStatus::Single { connected_replicas }
            }
            RedisTopology::Cluster(cluster) => RedisStatus::Cluster {
                state: cluster.state,
                seen_from: cluster.seen_from,
                masters: cluster
                    .masters
                    .iter()
                    .map(|master| RedisMaster {
                        address: master.node.address.clone(),
                        id: master.node.id.clone(),
                        up: master.node.up,
                        slots: master
                            .slots
                            .iter()
                            .map(|(from, to)| {
                                if from == to {
                                    from.to_string()
                                } else {
                                    format!("{from}-{to}")
                                }
                            })
                            .collect(),
                        slot_count: master
                            .slots
                            .iter()
                            .map(|(from, to)| u32::from(to - from) + 1)
                            .sum(),
                        replicas: master.replicas.iter().map(RedisReplica::from).collect(),
                    })
                    .collect(),
            },
        }
    }
}

/// Reads the store's Redis topology.
pub async fn read(store: &Store) -> Result<RedisStatus> {
    store
        .redis_topology()
        .await
        .map(RedisStatus::from)
        .map_err(Error::store("cannot read the Redis topology"))
}

/// What of the Redis needs a look, worst first.
pub fn warnings(redis: &RedisStatus) -> Vec<String> {
    let RedisStatus::Cluster { state, masters, .. } = redis else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if state != "ok" {
        warnings.push(format!(
            "the Redis Cluster is in state `{state}`: some slots are not served, and writes of their orders wait until they are"
        ));
    }
    for master in masters {
        let live_replicas = master.replicas.iter().filter(|r| r.up).count();
        match (master.slot_count > 0, master.up) {
            (true, false) => warnings.push(format!(
                "Redis master {} (slots {}) is down: a replica takes over after cluster-node-timeout, writes of its orders wait until then",
                master.address,
                master.slots.join(" ")
            )),
            (true, true) if live_replicas == 0 => warnings.push(format!(
                "Redis master {} (slots {}) has no live replica: should it fail, its orders stop until it is back",
                master.address,
                master.slots.join(" ")
            )),
            (false, false) => warnings.push(format!(
                "Redis node {} is down (it was a master; its slots moved to a replica): start it again to restore a replica",
                master.address
            )),
            _ => {}
        }
        for replica in master.replicas.iter().filter(|r| !r.up) {
            warnings.push(format!(
                "Redis replica {} of {} is down",
                replica.address, master.address
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, up: bool) -> RedisReplica {
        RedisReplica {
            address: address.into(),
            id: format!("id-{address}"),
            up,
        }
    }

    fn master(address: &str, up: bool, slots: &[&str], replicas: Vec<RedisReplica>) -> RedisMaster {
        RedisMaster {
            address: address.into(),
            id: format!("id-{address}"),
            up,
            slots: slots.iter().map(|s| s.to_string()).collect(),
            slot_count: if slots.is_empty() { 0 } else { 100 },
            replicas,
        }
    }

    #[test]
    fn a_whole_cluster_and_one_node_need_no_look() {
        let whole = RedisStatus::Cluster {
            state: "ok".into(),
            seen_from: "a:1".into(),
            masters: vec![master("a:1", true, &["0-5460"], vec![node("b:1", true)])],
        };
        assert!(warnings(&whole).is_empty());
        assert!(
            warnings(&RedisStatus::Single {
                connected_replicas: 0
            })
            .is_empty()
        );
    }

    #[test]
    fn a_failover_in_progress_and_its_aftermath_are_named() {
        let failing = RedisStatus::Cluster {
            state: "fail".into(),
            seen_from: "a:1".into(),
            masters: vec![
                master("a:1", false, &["0-5460"], vec![node("b:1", true)]),
                master("c:1", true, &["5461-16383"], vec![node("d:1", false)]),
            ],
        };
        let text = warnings(&failing);
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(text[0].contains("state `fail`"), "{text:?}");
        assert!(
            text[1].contains("a:1") && text[1].contains("is down"),
            "{text:?}"
        );
        assert!(text[2].contains("c:1") && text[2].contains("no live replica"));
        assert!(text[3].contains("replica d:1"), "{text:?}");

        let after = RedisStatus::Cluster {
            state: "ok".into(),
            seen_from: "b:1".into(),
            masters: vec![
                master("a:1", false, &[], vec![]),
                master("b:1", true, &["0-5460"], vec![]),
            ],
        };
        let text = warnings(&after);
        assert!(
            text.iter()
                .any(|w| w.contains("node a:1 is down") && w.contains("was a master"))
        );
        assert!(
            text.iter()
                .any(|w| w.contains("b:1") && w.contains("no live replica"))
        );
    }
}
