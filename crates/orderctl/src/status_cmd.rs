//! `orderctl status`: the fleet at a glance.

use crate::fleet_args::{self, FleetArgs, ago, when};
use clap::Args;
use orderflow_console::table::{Table, or_dash};
use orderflow_ops::brokers::BrokerStatus;
use orderflow_ops::{RedisStatus, Status, StatusOptions};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Exception messages read per stage (and left in place) to count them
    /// by reason; 0 reads none.
    #[arg(long, default_value_t = 100)]
    pub sample: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

pub fn run(args: StatusArgs) -> ExitCode {
    let options = StatusOptions {
        exception_sample: args.sample,
    };
    fleet_args::run(&args.fleet, None, |target| async move {
        match orderflow_ops::status(&target, options).await {
            Ok(status) => {
                if args.json {
                    fleet_args::print_json(&status);
                } else {
                    print!("{}", render(&status));
                }
                ExitCode::SUCCESS
            }
            Err(err) => fleet_args::fail(&err),
        }
    })
}

/// The RabbitMQ nodes, then each work queue's leader and replicas.
fn render_broker(broker: &BrokerStatus) -> String {
    let mut nodes = Table::new(&["RABBITMQ NODE", "STATE"]);
    for node in &broker.nodes {
        nodes.row(vec![
            node.url.clone(),
            if node.up { "up" } else { "DOWN" }.to_owned(),
        ]);
    }
    let mut out = nodes.render();
    match &broker.replicas_unknown {
        Some(why) => out.push_str(&format!("queue leaders and replicas unknown: {why}\n")),
        None => {
            let mut queues = Table::new(&["QUEUE", "LEADER", "REPLICAS (online/members)"]);
            for queue in &broker.queues {
                queues.row(vec![
                    queue.queue.clone(),
                    queue.leader.clone().unwrap_or_else(|| "NONE".to_owned()),
                    format!("{}/{}", queue.online.len(), queue.members.len()),
                ]);
            }
            out.push('\n');
            out.push_str(&queues.render());
        }
    }
    out
}

fn render(status: &Status) -> String {
    let mut out = String::new();
    if status.policy_drift {
        let bar = "!".repeat(72);
        out.push_str(&format!("{bar}\n"));
        for warning in status
            .warnings
            .iter()
            .filter(|w| w.starts_with("CONFIGURATION DRIFT"))
        {
            out.push_str(&format!("!!! {warning}\n"));
        }
        out.push_str(&format!("{bar}\n\n"));
    }
    out.push_str(&format!(
        "namespace {} · read with policy {}\n\n",
        status.namespace, status.policy_id
    ));

    let mut stages = Table::new(&[
        "STAGE",
        "QUEUED",
        "CONSUMERS",
        "WORKERS",
        "DELAYED",
        "EXCEPTIONS",
        "PAUSED",
    ]);
    for stage in &status.stages {
        let delayed: u32 = stage.delays.iter().filter_map(|d| d.messages).sum();
        let tiers: Vec<String> = stage
            .delays
            .iter()
            .filter(|d| d.messages.is_some_and(|n| n > 0))
            .map(|d| format!("{}:{}", d.delay, d.messages.unwrap_or(0)))
            .collect();
        let delayed = if tiers.is_empty() {
            delayed.to_string()
        } else {
            format!("{delayed} ({})", tiers.join(" "))
        };
        let exceptions = match &stage.exceptions {
            None => "-".to_owned(),
            Some(e) if e.by_reason.is_empty() => e.messages.to_string(),
            Some(e) => {
                let reasons: Vec<String> = e
                    .by_reason
                    .iter()
                    .map(|(reason, n)| format!("{reason}:{n}"))
                    .collect();
                let sampled = if e.sampled < e.messages {
                    format!(" in the first {}", e.sampled)
                } else {
                    String::new()
                };
                format!("{} ({}{sampled})", e.messages, reasons.join(" "))
            }
        };
        let paused = match &stage.paused {
            Some(pause) => format!(
                "PAUSED {} ago by {}: {}",
                ago(pause.since),
                pause.actor,
                pause.reason
            ),
            None => "-".to_owned(),
        };
        stages.row(vec![
            stage.stage.to_string(),
            or_dash(stage.work.as_ref().map(|w| w.messages)),
            or_dash(stage.work.as_ref().map(|w| w.consumers)),
            stage.workers.to_string(),
            delayed,
            exceptions,
            paused,
        ]);
    }
    out.push_str(&stages.render());

    let orders: Vec<String> = status
        .orders
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(
            |(state, n)| match status.overdue.get(state).filter(|o| **o > 0) {
                Some(overdue) => format!("{state} {n} ({overdue} past deadline)"),
                None => format!("{state} {n}"),
            },
        )
        .collect();
    out.push_str(&format!(
        "\norders: {}\n\n",
        if orders.is_empty() {
            "none".to_owned()
        } else {
            orders.join(" · ")
        }
    ));

    let mut downstreams = Table::new(&["DOWNSTREAM", "RETRY BUDGET LEFT", "BREAKERS (workers)"]);
    for downstream in &status.downstreams {
        let breakers: Vec<String> = downstream
            .breakers
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        downstreams.row(vec![
            downstream.downstream.to_string(),
            downstream.retry_budget_left.to_string(),
            if breakers.is_empty() {
                "-".to_owned()
            } else {
                breakers.join(", ")
            },
        ]);
    }
    out.push_str(&downstreams.render());

    out.push('\n');
    out.push_str(&render_broker(&status.broker));

    out.push('\n');
    if status.workers.is_empty() {
        out.push_str("workers: none live\n");
    } else {
        let mut workers = Table::new(&["WORKER", "ROLE", "POLICY", "UP FOR", "SEEN", "PAUSED"]);
        for worker in &status.workers {
            workers.row(vec![
                worker.actor.clone(),
                worker.role.clone(),
                worker.policy_id.clone(),
                ago(worker.started_at),
                format!("{} ago", ago(worker.seen_at)),
                if worker.paused { "yes" } else { "no" }.to_owned(),
            ]);
        }
        out.push_str(&workers.render());
    }

    out.push('\n');
    out.push_str(&render_redis(&status.redis));

    let rest: Vec<&String> = status
        .warnings
        .iter()
        .filter(|w| !w.starts_with("CONFIGURATION DRIFT"))
        .collect();
    if !rest.is_empty() {
        out.push_str("\nneeds a look:\n");
        for warning in rest {
            out.push_str(&format!("  ! {warning}\n"));
        }
    }
    out.push_str(&format!("\n(read at {})\n", when(jiff::Timestamp::now())));
    out
}

/// The Redis under the fleet: one line for one node, a table of masters
/// for a cluster.
fn render_redis(redis: &RedisStatus) -> String {
    let up = |up: bool| if up { "up" } else { "DOWN" };
    match redis {
        RedisStatus::Single { connected_replicas } => {
            format!("redis: one node, {connected_replicas} replica(s) connected\n")
        }
        RedisStatus::Cluster {
            state,
            seen_from,
            masters,
        } => {
            let mut out = format!("redis cluster: {state} (as {seen_from} sees it)\n");
            let mut table = Table::new(&["MASTER", "STATE", "SLOTS", "REPLICAS"]);
            for master in masters {
                let replicas: Vec<String> = master
                    .replicas
                    .iter()
                    .map(|r| format!("{} {}", r.address, up(r.up)))
                    .collect();
                table.row(vec![
                    master.address.clone(),
                    up(master.up).to_owned(),
                    if master.slots.is_empty() {
                        "none".to_owned()
                    } else {
                        format!("{} ({})", master.slots.join(" "), master.slot_count)
                    },
                    or_dash_list(&replicas),
                ]);
            }
            out.push_str(&table.render());
            out
        }
    }
}

fn or_dash_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_ops::redis_status::{RedisMaster, RedisReplica};

    #[test]
    fn a_cluster_shows_each_master_with_its_slots_and_replicas() {
        let replica = |address: &str, up| RedisReplica {
            address: address.into(),
            id: "r".into(),
            up,
        };
        let shown = render_redis(&RedisStatus::Cluster {
            state: "ok".into(),
            seen_from: "127.0.0.1:7003".into(),
            masters: vec![
                RedisMaster {
                    address: "127.0.0.1:7001".into(),
                    id: "a".into(),
                    up: false,
                    slots: vec![],
                    slot_count: 0,
                    replicas: vec![],
                },
                RedisMaster {
                    address: "127.0.0.1:7005".into(),
                    id: "b".into(),
                    up: true,
                    slots: vec!["0-5460".into()],
                    slot_count: 5461,
                    replicas: vec![replica("127.0.0.1:7002", false)],
                },
            ],
        });
        assert!(
            shown.starts_with("redis cluster: ok (as 127.0.0.1:7003 sees it)\n"),
            "{shown}"
        );
        let row = |address: &str| {
            shown
                .lines()
                .find(|line| line.starts_with(address))
                .unwrap_or_else(|| panic!("no row for {address}: {shown}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("127.0.0.1:7001"), "127.0.0.1:7001 DOWN none -");
        assert_eq!(
            row("127.0.0.1:7005"),
            "127.0.0.1:7005 up 0-5460 (5461) 127.0.0.1:7002 DOWN"
        );
    }
}
