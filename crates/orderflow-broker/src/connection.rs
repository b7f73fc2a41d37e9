//! Opening connections, with an error that says where and why.
//!
//! A broker URL names one node or, comma-separated, several nodes of one
//! cluster (`amqp://…:5701/%2f,amqp://…:5702/%2f`): lapin takes one URI, so
//! connecting to "the broker" means trying its nodes in turn.

use crate::Error;
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A broker that does not answer the TCP handshake in this time is treated
/// as unreachable instead of hanging the caller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to RabbitMQ: a start-up check and the handle for [`crate::declare`]
/// and the [`crate::admin`] calls.
pub async fn connect(url: &str) -> Result<Connection, Error> {
    connect_named(url, "orderflow").await
}

/// Connects with a connection name, shown by `rabbitmqctl list_connections
/// client_properties` and in the management UI: to the first node of the
/// list that answers.
pub async fn connect_named(url: &str, name: &str) -> Result<Connection, Error> {
    Nodes::new(url).connect(name).await
}

/// The node URLs of a broker URL: one, or each of a comma-separated list.
/// A comma starts a new node only where an `amqp://` or `amqps://` URL
/// follows, so a password may hold a comma.
pub fn node_urls(url: &str) -> Vec<&str> {
    let mut nodes = Vec::new();
    let mut start = 0;
    for (comma, _) in url.match_indices(',') {
        let rest = url[comma + 1..].trim_start();
        if rest.starts_with("amqp://") || rest.starts_with("amqps://") {
            nodes.push(url[start..comma].trim());
            start = comma + 1;
        }
    }
    nodes.push(url[start..].trim());
    nodes
}

/// The nodes of one broker, for a client that reconnects: each connect
/// starts at the node it used last, and after a loss at the next one
/// (round-robin), so a dead node is not tried first again and again.
#[derive(Debug)]
pub(crate) struct Nodes {
    urls: Vec<String>,
    /// Index of the node to try first.
    next: AtomicUsize,
}

impl Nodes {
    pub(crate) fn new(url: &str) -> Nodes {
        Nodes {
            urls: node_urls(url).into_iter().map(str::to_owned).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the first node that answers, from the one to try first
    /// round the list; the error of the last one tried if none does.
    pub(crate) async fn connect(&self, name: &str) -> Result<Connection, Error> {
        let first = self.next.load(Ordering::SeqCst);
        let mut failed = None;
        for offset in 0..self.urls.len() {
            let index = (first + offset) % self.urls.len();
            match connect_node(&self.urls[index], name).await {
                Ok(connection) => {
                    self.next.store(index, Ordering::SeqCst);
                    return Ok(connection);
                }
                Err(source) => failed = Some(source),
            }
        }
        Err(Error::Unreachable {
            url: without_password(&self.urls.join(",")),
            source: failed.expect("a broker URL names at least one node"),
        })
    }

    /// The connection was lost: the next connect starts at the next node.
    pub(crate) fn lost(&self) {
        let after = (self.next.load(Ordering::SeqCst) + 1) % self.urls.len();
        self.next.store(after, Ordering::SeqCst);
    }
}

/// How long [`close`] waits for the broker's `close-ok`.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// Closes the connection, waiting at most [`CLOSE_WITHIN`] for the broker to
/// answer. lapin's close awaits a `close-ok` that was seen never to come
/// (the bench's driver, after a run with mandatory publishes on a
/// confirming channel, once in four runs): a tool must not hang on its way
/// out, nor a worker in its start-up checks. What is left of a connection
/// that did not answer goes when its process does, or the broker's
/// heartbeat ends it.
pub async fn close(connection: &Connection, why: &str) {
    if connection.status().connected() {
        let _ = tokio::time::timeout(CLOSE_WITHIN, connection.close(200, why.into())).await;
    }
}

async fn connect_node(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "{} did not answer within {CONNECT_TIMEOUT:?}",
                without_password(url)
            ),
        )
        .into()),
    }
}

/// The URL with its password replaced by `***`, for messages and logs,
/// each node's of a list; also a value that is not a URL at all
/// (`amqp//user:secret@host`). A password may hold `/`, `?`, `#` or `@`, so
/// the authority cannot be found by the first of them: everything from the
/// first `:` after the scheme to the last `@` is masked, which hides more
/// than the password rather than less.
pub fn without_password(url: &str) -> String {
    let nodes = node_urls(url);
    if nodes.len() > 1 {
        return nodes
            .into_iter()
            .map(without_password)
            .collect::<Vec<_>>()
            .join(",");
    }
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url.rfind('@').filter(|&at| at >= start) else {
        return url.to_owned();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            without_password("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            without_password("amqps://u:p@ss@host/vh?heartbeat=10"),
            "amqps://u:***@host/vh?heartbeat=10"
        );
        assert_eq!(
            without_password("amqp://127.0.0.1:5672"),
            "amqp://127.0.0.1:5672"
        );
        assert_eq!(without_password("amqp://user@host"), "amqp://user@host");
        assert_eq!(without_password("not a url"), "not a url");
        assert_eq!(
            without_password("amqp//guest:secret@localhost"),
            "amqp//guest:***@localhost"
        );
    }

    #[test]
    fn a_password_with_url_special_characters_is_masked_whole() {
        for password in ["se/cret", "se?cret", "se#cret", "se@cret/x", "a:b"] {
            for url in [
                format!("amqp://guest:{password}@127.0.0.1:5672/%2f"),
                format!("redis://:{password}@127.0.0.1:6379"),
            ] {
                let shown = without_password(&url);
                assert!(
                    !shown.contains("cret") && !shown.contains(":b@"),
                    "{url} → {shown}"
                );
                assert!(
                    shown.ends_with("@127.0.0.1:5672/%2f") || shown.ends_with("@127.0.0.1:6379"),
                    "{shown}"
                );
            }
        }
    }

    #[test]
    fn a_list_names_each_node_and_masks_each_password() {
        let list = "amqp://guest:s1@127.0.0.1:5701/%2f, amqp://guest:s,2@127.0.0.1:5702/%2f,amqps://u:s3@h:5703";
        assert_eq!(
            node_urls(list),
            [
                "amqp://guest:s1@127.0.0.1:5701/%2f",
                "amqp://guest:s,2@127.0.0.1:5702/%2f",
                "amqps://u:s3@h:5703"
            ]
        );
        assert_eq!(
            without_password(list),
            "amqp://guest:***@127.0.0.1:5701/%2f,amqp://guest:***@127.0.0.1:5702/%2f,amqps://u:***@h:5703"
        );
        assert_eq!(node_urls("amqp://h:5672"), ["amqp://h:5672"]);
    }

    #[tokio::test]
    async fn a_list_is_unreachable_only_when_every_node_is_and_says_so_masked() {
        let err = connect("amqp://guest:secret@127.0.0.1:1/%2f,amqp://guest:other@127.0.0.1:2/%2f")
            .await
            .unwrap_err();
        let text = crate::error::chain(&err);
        assert!(matches!(err, Error::Unreachable { .. }), "{text}");
        assert!(
            text.contains("amqp://guest:***@127.0.0.1:1/%2f,amqp://guest:***@127.0.0.1:2/%2f"),
            "{text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("other"),
            "{text}"
        );
    }

    #[test]
    fn after_a_loss_the_next_node_is_tried_first() {
        let nodes = Nodes::new("amqp://a,amqp://b,amqp://c");
        nodes.next.store(2, Ordering::SeqCst);
        nodes.lost();
        assert_eq!(nodes.next.load(Ordering::SeqCst), 0);
        nodes.lost();
        assert_eq!(nodes.next.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named_without_its_password() {
        // Port 1 on loopback refuses at once.
        let err = connect("amqp://guest:secret@127.0.0.1:1/%2f")
            .await
            .unwrap_err();
        let text = crate::error::chain(&err);
        assert!(matches!(err, Error::Unreachable { .. }), "{text}");
        assert!(text.contains("amqp://guest:***@127.0.0.1:1/%2f"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
