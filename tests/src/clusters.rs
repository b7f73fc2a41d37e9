//! The 3-node RabbitMQ cluster of `scripts/clusters.sh` (AMQP on
//! 127.0.0.1:5701–5703), for the cluster tests: its URL list, where each
//! queue's replicas and leader are, and killing and starting a node.
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/clusters.sh")
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
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/scaling.md"),
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
