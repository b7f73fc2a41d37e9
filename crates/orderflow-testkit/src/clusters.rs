//! The 3-node RabbitMQ cluster (AMQP on 127.0.0.1:5701–5703) and the
//! Redis Cluster (127.0.0.1:7001–7006) of `scripts/clusters.sh`, for the
//! cluster tests: their URLs, where each queue's replicas and leader are,
//! the master of an order's slot, and killing and starting a node.
//! `scripts/clusters.sh up` starts it (scripts/test.sh does, after the
//! build); a test finds it down and says so.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The cluster's nodes.
pub const RABBIT_NODES: [u8; 3] = [1, 2, 3];

/// The cluster's URL list, as `scripts/clusters.sh env` prints it;
/// `ORDERFLOW_TEST_CLUSTER_AMQP_URL` overrides it.
pub fn rabbit_urls() -> String {
    std::env::var("ORDERFLOW_TEST_CLUSTER_AMQP_URL").unwrap_or_else(|_| {
        RABBIT_NODES
            .iter()
            .map(|n| node_url(*n))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// One node's AMQP URL.
pub fn node_url(node: u8) -> String {
    format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        5700 + u16::from(node)
    )
}

/// The Erlang name of node `n`.
pub fn node_name(node: u8) -> String {
    format!("rabbit{node}@localhost")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/clusters.sh")
}

/// Runs `scripts/clusters.sh ARGS`; its stdout, or a panic with its stderr.
pub fn clusters_sh(args: &[&str]) -> String {
    let output = Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/clusters.sh: {e}"));
    assert!(
        output.status.success(),
        "scripts/clusters.sh {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Panics, saying how to start it, unless every RabbitMQ node of the
/// cluster is up.
pub fn require_rabbit_cluster() {
    let status = clusters_sh(&["status"]);
    for node in RABBIT_NODES {
        let name = node_name(node);
        assert!(
            status
                .lines()
                .any(|l| l.contains(&name) && l.ends_with(" up")),
            "the cluster tests need the 3-node RabbitMQ cluster and {name} is not up: \
             run `scripts/clusters.sh up`\n{status}"
        );
    }
}

/// Where a quorum queue's replicas are, as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    pub leader: String,
    pub members: Vec<String>,
    pub online: Vec<String>,
}

/// Every queue whose name starts with `prefix`, with its replicas, asked
/// of a node that answers.
pub fn replicas(prefix: &str) -> Vec<(String, Replicas)> {
    let mut last = String::new();
    for node in RABBIT_NODES {
        let output = Command::new(script())
            .args(["rabbit", "ctl", &node.to_string()])
            .args([
                "--no-table-headers",
                "list_queues",
                "name",
                "leader",
                "members",
                "online",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/clusters.sh: {e}"));
        if output.status.success() {
            return parse_replicas(&String::from_utf8_lossy(&output.stdout))
                .into_iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .collect();
        }
        last = String::from_utf8_lossy(&output.stderr).into_owned();
    }
    panic!("no RabbitMQ node of the cluster answered list_queues: {last}")
}

/// The replicas of one queue.
pub fn replicas_of(queue: &str) -> Replicas {
    replicas(queue)
        .into_iter()
        .find_map(|(name, r)| (name == queue).then_some(r))
        .unwrap_or_else(|| panic!("the cluster does not list queue {queue}"))
}

/// The node (1..3) leading `queue`.
pub fn leader_node(queue: &str) -> u8 {
    let leader = replicas_of(queue).leader;
    RABBIT_NODES
        .into_iter()
        .find(|&n| node_name(n) == leader)
        .unwrap_or_else(|| panic!("{queue} is led by {leader}, not a node of the cluster"))
}

/// `kill -9` node `n`; returns when it is gone.
pub fn kill9(node: u8) -> Instant {
    clusters_sh(&["rabbit", "kill9", &node.to_string()]);
    Instant::now()
}

/// Starts node `n` again and waits until it serves and every queue with
/// `prefix` has all its members online again.
pub async fn start(node: u8, prefix: &str) {
    let n = node.to_string();
    tokio::task::spawn_blocking(move || clusters_sh(&["rabbit", "start", &n]))
        .await
        .expect("clusters.sh ran");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let prefix = prefix.to_owned();
        let all = tokio::task::spawn_blocking(move || replicas(&prefix))
            .await
            .expect("rabbitmqctl ran");
        if all.iter().all(|(_, r)| r.online.len() == r.members.len()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} came back, but not every replica is online after 60s: {all:?}",
            node_name(node)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The cluster tests of one binary take turns: a test that kills a node
/// must not pull it from under another's assertions.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Rows of `list_queues name leader members online`: tab-separated, the
/// lists as `[rabbit1@localhost,rabbit2@localhost]` (with or without
/// spaces).
fn parse_replicas(text: &str) -> Vec<(String, Replicas)> {
    let list = |column: &str| -> Vec<String> {
        column
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|n| n.trim().trim_matches('\'').to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    };
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let name = columns.next()?.trim().to_owned();
            let leader = columns.next()?.trim().to_owned();
            let members = list(columns.next()?);
            let online = list(columns.next().unwrap_or(""));
            Some((
                name,
                Replicas {
                    leader,
                    members,
                    online,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_rows_are_parsed() {
        let text = "ns.payment\trabbit1@localhost\t[rabbit1@localhost, rabbit2@localhost, rabbit3@localhost]\t[rabbit1@localhost, rabbit3@localhost]\n";
        let rows = parse_replicas(text);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "ns.payment");
        assert_eq!(rows[0].1.leader, "rabbit1@localhost");
        assert_eq!(rows[0].1.members.len(), 3);
        assert_eq!(rows[0].1.online, ["rabbit1@localhost", "rabbit3@localhost"]);
    }

    #[test]
    fn docs_scaling_shows_what_clusters_sh_env_prints() {
        let env = clusters_sh(&["env"]);
        let doc = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/scaling.md"),
        )
        .expect("docs/scaling.md");
        assert!(
            doc.contains(&format!("```sh\n{env}```")),
            "docs/scaling.md does not show `scripts/clusters.sh env` as it prints:\n{env}"
        );
    }

    #[test]
    fn the_url_list_is_the_one_clusters_sh_prints() {
        if std::env::var_os("ORDERFLOW_TEST_CLUSTER_AMQP_URL").is_none() {
            let env = clusters_sh(&["env"]);
            assert!(
                env.lines()
                    .any(|l| l == format!("ORDERFLOW_AMQP_URL={}", rabbit_urls())),
                "{env}"
            );
        }
    }
}

/// The Redis Cluster's seeds, as `scripts/clusters.sh env` prints them;
/// `ORDERFLOW_TEST_REDIS_CLUSTER_URL` overrides it.
pub fn redis_cluster_url() -> String {
    std::env::var("ORDERFLOW_TEST_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".into())
}

/// The Redis Cluster's nodes.
pub const REDIS_PORTS: [u16; 6] = [7001, 7002, 7003, 7004, 7005, 7006];

/// `redis-cli -p PORT ARGS`: its output, empty when the node does not
/// answer.
fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// The port of the live master that serves `key`'s hash slot, as the
/// first node that answers sees the cluster.
pub fn redis_master_of(key: &str) -> u16 {
    let (port, slot) = REDIS_PORTS
        .into_iter()
        .find_map(|port| {
            let slot = redis_cli(port, &["cluster", "keyslot", key]);
            slot.trim().parse::<u16>().ok().map(|slot| (port, slot))
        })
        .expect("no node of the Redis Cluster answers; run `scripts/clusters.sh up`");
    let nodes = redis_cli(port, &["cluster", "nodes"]);
    master_of_slot(&nodes, slot)
        .unwrap_or_else(|| panic!("no live master serves slot {slot}:\n{nodes}"))
}

/// In `CLUSTER NODES` output, the port of the live master whose ranges
/// hold `slot`.
fn master_of_slot(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let live_master = fields.get(2).is_some_and(|flags| {
            flags.contains("master") && !flags.contains("fail") && !flags.contains("noaddr")
        });
        let serves = fields.iter().skip(8).any(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
        });
        (live_master && serves)
            .then(|| fields[1].split(['@', ':']).nth(1)?.parse().ok())
            .flatten()
    })
}

/// Whether the Redis Cluster is whole: every node answers and sees the
/// cluster ok with three live masters and no failed node, and every
/// replica's link to its master is up.
fn redis_whole() -> bool {
    REDIS_PORTS.into_iter().all(|port| {
        let info = redis_cli(port, &["cluster", "info"]);
        let nodes = redis_cli(port, &["cluster", "nodes"]);
        let masters = nodes
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|f| f.contains("master"))
            })
            .count();
        let replication = redis_cli(port, &["info", "replication"]);
        info.contains("cluster_state:ok")
            && masters == 3
            && !nodes.contains("fail")
            && (replication.contains("role:master")
                || replication.contains("master_link_status:up"))
    })
}

/// `kill -9` the Redis node on `port`; returns when it is gone.
pub fn redis_kill9(port: u16) -> Instant {
    clusters_sh(&["redis", "kill9", &port.to_string()]);
    Instant::now()
}

/// Starts the Redis node on `port` again (it comes back as a replica of
/// the master promoted in its place) and waits until the cluster is whole.
pub fn redis_start(port: u16) {
    clusters_sh(&["redis", "start", &port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !redis_whole() {
        assert!(
            Instant::now() < deadline,
            "redis {port} came back, but the Redis Cluster is not whole after 60s; see `scripts/clusters.sh status`"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod redis_tests {
    use super::master_of_slot;

    #[test]
    fn the_master_of_a_slot_is_the_live_one_serving_its_range() {
        let nodes = "\
a1 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected
a5 127.0.0.1:7005@17005 master - 0 0 7 connected 0-5460
b2 127.0.0.1:7002@17002 myself,master - 0 0 2 connected 5461-10922
c4 127.0.0.1:7004@17004 slave b2 0 0 2 connected
c3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383 [16001->-abc]
";
        assert_eq!(master_of_slot(nodes, 0), Some(7005));
        assert_eq!(master_of_slot(nodes, 5461), Some(7002));
        assert_eq!(master_of_slot(nodes, 16383), Some(7003));
        assert_eq!(master_of_slot(nodes, 16384), None);
    }
}
