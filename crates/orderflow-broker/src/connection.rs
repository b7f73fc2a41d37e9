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

/// The URL with its password replaced by `***`, for messages and logs;
/// also a value that is not a URL at all (`amqp//user:secret@host`). A
/// password may hold `/`, `?`, `#` or `@`, so the authority cannot be found
/// by the first of them: everything from the first `:` after the scheme to
/// the last `@` is masked, which hides more than the password rather than
/// less.
pub fn without_password(url: &str) -> String {
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
