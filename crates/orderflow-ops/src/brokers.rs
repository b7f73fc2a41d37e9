//! The RabbitMQ nodes behind the fleet's broker URL and where each work
//! queue's replicas are: what an operator needs to see on a cluster
//! (`orderctl status`, the console's fleet page).
//!
//! A node is up when it takes an AMQP connection (every node of the URL
//! list is tried). Leaders and replicas are not in AMQP: they are read from
//! the management HTTP API (the `rabbitmq_management` plugin, on in the
//! RabbitMQ Cluster Operator's clusters) of the first node that answers,
//! at the node's AMQP port + 10000 — RabbitMQ's own pairing, 5672 and
//! 15672 — with the AMQP URL's user and password. Without the API the view
//! says why the replicas are unknown instead of failing the status.

use orderflow_broker::{node_urls, without_password};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A node that has not answered by then is shown down.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// The management API's ports are the AMQP ports plus this.
const API_PORT_OFFSET: u16 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    pub nodes: Vec<BrokerNode>,
    /// The work queues' replicas; empty when `replicas_unknown` says why.
    pub queues: Vec<QueueReplicas>,
    pub replicas_unknown: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerNode {
    /// The node's URL, its password masked.
    pub url: String,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueReplicas {
    #[serde(rename(deserialize = "name"))]
    pub queue: String,
    /// The node leading the queue (`None` while it has no leader).
    #[serde(default)]
    pub leader: Option<String>,
    /// The nodes holding a replica, and those of them online.
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub online: Vec<String>,
}

impl BrokerStatus {
    /// What needs a look: nodes down, queues short of replicas or leaderless.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.up)
            .map(|n| format!("RabbitMQ node {} does not answer", n.url))
            .collect();
        for q in &self.queues {
            if q.leader.is_none() {
                warnings.push(format!("queue {} has no leader", q.queue));
            } else if q.online.len() < q.members.len() {
                warnings.push(format!(
                    "queue {} has {} of its {} replicas online",
                    q.queue,
                    q.online.len(),
                    q.members.len()
                ));
            }
        }
        warnings
    }
}

/// The nodes of `amqp_url` (one URL or a list) and the replicas of
/// `queues`.
pub async fn broker_status(amqp_url: &str, queues: &[String]) -> BrokerStatus {
    let mut nodes = Vec::new();
    let mut up = Vec::new();
    for url in node_urls(amqp_url) {
        let connected = tokio::time::timeout(
            NODE_TIMEOUT,
            orderflow_broker::connect_named(url, "orderctl.status"),
        )
        .await;
        let answered = match connected {
            Ok(Ok(connection)) => {
                orderflow_broker::close(&connection, "node checked").await;
                up.push(url);
                true
            }
            _ => false,
        };
        nodes.push(BrokerNode {
            url: without_password(url),
            up: answered,
        });
    }
    let (queues, replicas_unknown) = match replicas(&up, queues).await {
        Ok(found) => (found, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    BrokerStatus {
        nodes,
        queues,
        replicas_unknown,
    }
}

/// Asks the management API of each node in turn.
async fn replicas(nodes: &[&str], queues: &[String]) -> Result<Vec<QueueReplicas>, String> {
    let client = reqwest::Client::builder()
        .timeout(NODE_TIMEOUT)
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let mut why = "no RabbitMQ node answers".to_owned();
    for node in nodes {
        let Some(api) = queues_api(node) else {
            why = format!("{} is not a URL", without_password(node));
            continue;
        };
        let answer = match client.get(&api).send().await {
            Ok(answer) => answer,
            Err(e) => {
                why = format!(
                    "the management API ({}) does not answer: {e}; enable it with `rabbitmq-plugins enable rabbitmq_management`",
                    without_password(&api)
                );
                continue;
            }
        };
        if !answer.status().is_success() {
            why = format!(
                "the management API ({}) answers {}",
                without_password(&api),
                answer.status()
            );
            continue;
        }
        let all: Vec<QueueReplicas> = answer
            .json()
            .await
            .map_err(|e| format!("the management API's queue list is unreadable: {e}"))?;
        return Ok(queues
            .iter()
            .filter_map(|name| all.iter().find(|q| &q.queue == name).cloned())
            .collect());
    }
    Err(why)
}

/// `amqp://u:p@host:5701/%2f` → `http://u:p@host:15701/api/queues/%2f?columns=…`
/// (`disable_stats`: without it RabbitMQ 3.10 answers 500 for as long as
/// a node of the cluster is down — exactly when an operator looks):
/// the same host, user and password (still percent-encoded) and virtual
/// host; `amqps` pairs with `https`.
fn queues_api(amqp: &str) -> Option<String> {
    let (scheme, rest) = amqp.split_once("://")?;
    let (web, default_port) = match scheme {
        "amqp" => ("http", 5672),
        "amqps" => ("https", 5671),
        _ => return None,
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse::<u16>().ok()?)
        }
        _ => (host_port, default_port),
    };
    let vhost = path.split(['?', '#']).next().unwrap_or("");
    let vhost = if vhost.is_empty() { "%2f" } else { vhost };
    let api_port = port.checked_add(API_PORT_OFFSET)?;
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Some(format!(
        "{web}://{userinfo}{host}:{api_port}/api/queues/{vhost}?columns=name,leader,members,online&disable_stats=true"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_the_amqp_node_plus_ten_thousand() {
        assert_eq!(
            queues_api("amqp://guest:guest@127.0.0.1:5701/%2f").unwrap(),
            "http://guest:guest@127.0.0.1:15701/api/queues/%2f?columns=name,leader,members,online&disable_stats=true"
        );
        assert_eq!(
            queues_api("amqps://u:p%40ss@rabbit.example/prod").unwrap(),
            "https://u:p%40ss@rabbit.example:15671/api/queues/prod?columns=name,leader,members,online&disable_stats=true"
        );
        assert_eq!(
            queues_api("amqp://localhost").unwrap(),
            "http://localhost:15672/api/queues/%2f?columns=name,leader,members,online&disable_stats=true"
        );
        assert_eq!(queues_api("http://x"), None);
    }

    #[test]
    fn nodes_down_and_replicas_offline_are_warned_about() {
        let status = BrokerStatus {
            nodes: vec![
                BrokerNode {
                    url: "amqp://g:***@h:5701/%2f".into(),
                    up: true,
                },
                BrokerNode {
                    url: "amqp://g:***@h:5702/%2f".into(),
                    up: false,
                },
            ],
            queues: vec![QueueReplicas {
                queue: "ns.payment".into(),
                leader: Some("rabbit1@h".into()),
                members: vec!["rabbit1@h".into(), "rabbit2@h".into()],
                online: vec!["rabbit1@h".into()],
            }],
            replicas_unknown: None,
        };
        assert_eq!(
            status.warnings(),
            [
                "RabbitMQ node amqp://g:***@h:5702/%2f does not answer",
                "queue ns.payment has 1 of its 2 replicas online"
            ]
        );
    }
}
