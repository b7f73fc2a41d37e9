//! Integration tests against a real Redis (`ORDERFLOW_TEST_REDIS_URL`,
//! default the local one, `orderflow_settings::DEFAULT_REDIS_URL`) and a real Redis Cluster
//! (`ORDERFLOW_TEST_REDIS_CLUSTER_URL`, default the one
//! `scripts/clusters.sh up` starts on 127.0.0.1:7001–7006): each test runs
//! once on each (`both!`), as `<test>::single_node` and `<test>::cluster`.
//! Each test works in its own random namespace and deletes its keys when
//! done; without Redis or the cluster a test fails and says how to start
//! it.

#[macro_use]
mod common;

mod audit_index;
mod budget;
mod cancel;
mod connection;
mod durability;
mod fleet;
mod leases;
mod orders;
mod replay;
mod retention;
mod schedules;
