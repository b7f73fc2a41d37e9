//! The connection under a [`crate::Store`]: one Redis, or a Redis Cluster.
//!
//! `ORDERFLOW_REDIS_URL` names either. The redis crate's own URLs
//! (`redis://host:port/db`) name one server; its cluster client takes a
//! list of such URLs, the seed nodes it learns the cluster from. One
//! setting holds that list as `redis+cluster://[user[:password]@]host:port[,host:port…]`
//! (the `+` form of the crate's own `redis+unix://`): each `host:port` is
//! a seed, the credentials and anything after the hosts (`?protocol=3`)
//! apply to every node. A cluster needs only one reachable seed; several
//! let a process start while one of them is down.
//!
//! Both connections reconnect by themselves. The cluster client also
//! follows `MOVED`/`ASK` redirects, refreshes its slot map, and retries a
//! command through a failover for up to `StoreOptions::cluster_patience`.

use crate::error::Error;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisFuture, Value,
};

/// The scheme of a cluster's seed list.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// What a URL names.
#[derive(Debug)]
pub(crate) enum Target {
    Node(redis::Client),
    /// The seed nodes, at least one.
    Cluster(Vec<ConnectionInfo>),
}

impl Target {
    /// A malformed URL is [`Error::InvalidArgument`].
    pub(crate) fn parse(url: &str) -> Result<Target, Error> {
        let invalid =
            |why: String| Error::InvalidArgument(format!("redis url `{}`: {why}", masked(url)));
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            return redis::Client::open(url)
                .map(Target::Node)
                .map_err(|err| invalid(err.to_string()));
        };
        // The hosts end where a path or query starts; credentials end at
        // the last `@` before that.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, suffix) = rest.split_at(end);
        let (credentials, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let mut seeds = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(invalid(
                    "name at least one host:port, separated by commas".into(),
                ));
            }
            let seed = format!("redis://{credentials}{host}{suffix}");
            seeds.push(
                seed.as_str()
                    .into_connection_info()
                    .map_err(|err| invalid(format!("`{host}`: {err}")))?,
            );
        }
        Ok(Target::Cluster(seeds))
    }
}

/// The URL with its password replaced, for error texts.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[at + 1..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// One connection handle, cheap to clone; clones share the connection(s).
#[derive(Clone)]
pub(crate) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Independent commands in one round trip: a pipeline on one node. On a
    /// cluster their keys may live in different slots, which no pipeline
    /// may span, so each goes on its own to its slot's master, all at once.
    /// Not atomic either way. Fails with the first error.
    pub(crate) async fn batch<T: FromRedisValue>(&self, cmds: Vec<Cmd>) -> Result<Vec<T>, Error> {
        match self {
            Conn::Node(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                Ok(pipe.query_async(&mut conn.clone()).await?)
            }
            Conn::Cluster(conn) => {
                let replies = futures_util::future::join_all(cmds.iter().map(|cmd| {
                    let mut conn = conn.clone();
                    async move { cmd.query_async::<T>(&mut conn).await }
                }))
                .await;
                Ok(replies.into_iter().collect::<Result<Vec<_>, _>>()?)
            }
        }
    }

    /// `cmd` on the master that holds `key`'s slot (on one node: that
    /// node). For a keyless command that must reach that node, as `WAIT`
    /// after a write there.
    pub(crate) async fn on_master_of(&self, key: &str, cmd: Cmd) -> Result<Value, Error> {
        match self {
            Conn::Node(conn) => Ok(cmd.query_async(&mut conn.clone()).await?),
            Conn::Cluster(conn) => Ok(conn
                .clone()
                .route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                        key,
                        SlotAddr::Master,
                    ))),
                )
                .await?),
        }
    }

    /// `cmd` on the node at `host:port` (cluster only; on one node: that
    /// node).
    pub(crate) async fn on_node(&self, host: &str, port: u16, cmd: Cmd) -> Result<Value, Error> {
        match self {
            Conn::Node(conn) => Ok(cmd.query_async(&mut conn.clone()).await?),
            Conn::Cluster(conn) => Ok(conn
                .clone()
                .route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port,
                    }),
                )
                .await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(url: &str) -> Vec<String> {
        match Target::parse(url).unwrap() {
            Target::Cluster(seeds) => seeds.iter().map(|s| s.addr().to_string()).collect(),
            Target::Node(_) => panic!("{url} is not a cluster"),
        }
    }

    #[test]
    fn a_cluster_url_lists_its_seed_nodes() {
        assert_eq!(
            seeds("redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        );
        assert_eq!(seeds("redis+cluster://redis-0:6379"), ["redis-0:6379"]);
        let Target::Cluster(seeds) =
            Target::parse("redis+cluster://app:s3cret@a:7001,b:7002/?protocol=3").unwrap()
        else {
            panic!("a cluster")
        };
        for seed in &seeds {
            assert_eq!(seed.redis_settings().username(), Some("app"));
            assert_eq!(seed.redis_settings().password(), Some("s3cret"));
        }
    }

    #[test]
    fn a_plain_url_is_one_node() {
        assert!(matches!(
            Target::parse(orderflow_settings::DEFAULT_REDIS_URL).unwrap(),
            Target::Node(_)
        ));
    }

    #[test]
    fn malformed_cluster_urls_are_refused_without_their_password() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://u:pw@a:notaport",
        ] {
            let err = Target::parse(bad).expect_err(bad).to_string();
            assert!(!err.contains("pw@"), "{err}");
        }
    }
}
