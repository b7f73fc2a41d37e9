//! Opening connections, with an error that says where and why.

use crate::Error;
use lapin::{Connection, ConnectionProperties};
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
/// client_properties` and in the management UI.
pub async fn connect_named(url: &str, name: &str) -> Result<Connection, Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let unreachable = |source| Error::Unreachable {
        url: without_password(url),
        source,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(result) => result.map_err(unreachable),
        Err(_) => Err(unreachable(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
            .into(),
        )),
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
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
