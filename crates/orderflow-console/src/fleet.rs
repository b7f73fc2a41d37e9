//! The fleet page: what `orderctl status` prints, laid out to be seen at a
//! glance and refreshed by itself — per stage its queues, delay tiers,
//! exceptions by reason, consumers and pause; breakers and retry budget
//! per downstream; orders by state with those past their stage's
//! deadline; the policies live, drift in red; the last hour's charts; the
//! RabbitMQ nodes with each work queue's leader and replicas, and the
//! Redis (cluster) under it all.

use crate::Console;
use crate::auth::Session;
use crate::layout::{self, PageResult};
use axum::extract::State;
use maud::{Markup, html};
use orderflow_core::OrderState;
use orderflow_ops::brokers::BrokerStatus;
use orderflow_ops::status::{StageStatus, Status};
use orderflow_ops::{RedisStatus, StatusOptions, status};

pub async fn page(State(console): State<Console>, session: Session) -> PageResult {
    let status = status(console.target(), StatusOptions::default()).await?;
    let refresh = console.config().refresh_secs;
    let body = html! {
        h1 { "Fleet" }
        div #live data-refresh=(refresh) {
            (live(&status))
        }
    };
    Ok(layout::page(&console, &session, "Fleet", body))
}

/// The part that refreshes.
fn live(status: &Status) -> Markup {
    let now = jiff::Timestamp::now();
    html! {
        p.refresh-note { "read " (layout::time(now)) " · policy " code { (status.policy_id) } }
        @if status.policy_drift {
            p.drift #drift {
                "Configuration drift: " (status.policies.len()) " policies are live at once — workers decide by different rules. Roll every worker onto one policy."
            }
        }
        @if !status.warnings.is_empty() {
            div.flash.warn #warnings {
                strong { "Needs a look" }
                ul.warnings { @for warning in &status.warnings { li { (warning) } } }
            }
        }
        h2 { "Stages" }
        table #stages {
            thead { tr {
                th { "stage" } th.n { "work queue" } th.n { "consumers" } th.n { "workers" }
                th { "delay tiers" } th { "exceptions" } th { "paused" }
            } }
            tbody { @for stage in &status.stages { (stage_row(stage)) } }
        }
        div.grid {
            div {
                h2 { "Orders by state" }
                table #orders {
                    thead { tr { th { "state" } th.n { "orders" } th.n { "past the stage's deadline" } } }
                    tbody {
                        @for state in OrderState::ALL {
                            @let n = status.orders.get(&state).copied().unwrap_or(0);
                            @let overdue = status.overdue.get(&state).copied().unwrap_or(0);
                            tr data-state=(state.as_str()) {
                                td { a href=(orders_link(state)) { (layout::state_badge(state)) } }
                                td.n { (n) }
                                td.n class=[(overdue > 0).then_some("bad")] {
                                    @if state.owner().is_some() { (overdue) } @else { span.muted { "—" } }
                                }
                            }
                        }
                    }
                }
            }
            div {
                h2 { "Downstreams" }
                table #downstreams {
                    thead { tr { th { "downstream" } th.n { "retry budget left" } th { "breakers (workers)" } } }
                    tbody {
                        @for downstream in &status.downstreams {
                            tr data-downstream=(downstream.downstream.as_str()) {
                                td { (downstream.downstream.as_str()) }
                                td.n { (downstream.retry_budget_left) }
                                td {
                                    @if downstream.breakers.is_empty() { span.muted { "no live worker" } }
                                    @for (state, n) in &downstream.breakers {
                                        span class=(format!("badge {state}")) { (state) " ×" (n) } " "
                                    }
                                }
                            }
                        }
                    }
                }
                h2 { "Policies live" }
                table #policies {
                    thead { tr { th { "policy" } th { "workers" } } }
                    tbody {
                        @if status.policies.is_empty() { tr { td colspan="2" { span.muted { "no live worker" } } } }
                        @for (id, workers) in &status.policies {
                            tr class=[status.policy_drift.then_some("bad")] {
                                td { code { (id) } @if *id == status.policy_id { " (this console's)" } }
                                td { (workers.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "The last hour" }
        div.grid {
            img.chart #chart-orders src=(format!("/charts/orders.svg?at={}", now.as_second())) alt="orders by state over the last hour";
            img.chart #chart-decisions src=(format!("/charts/decisions.svg?at={}", now.as_second())) alt="decisions by class over the last hour";
        }
        h2 { "Workers" }
        table #workers {
            thead { tr { th { "worker" } th { "role" } th { "policy" } th { "up since" } th { "seen" } th { "paused" } } }
            tbody {
                @if status.workers.is_empty() { tr { td colspan="6" { span.muted { "no live worker" } } } }
                @for worker in &status.workers {
                    tr {
                        td { (worker.actor) } td { (worker.role) } td { code { (worker.policy_id) } }
                        td { (layout::time(worker.started_at)) }
                        td { (layout::age(now.duration_since(worker.seen_at).as_secs().max(0).unsigned_abs())) " ago" }
                        td { @if worker.paused { "paused" } }
                    }
                }
            }
        }
        (broker(&status.broker))
        (redis(&status.redis))
    }
}

/// The RabbitMQ nodes and each work queue's leader and replicas.
fn broker(broker: &BrokerStatus) -> Markup {
    html! {
        h2 { "RabbitMQ" }
        table #broker-nodes {
            thead { tr { th { "node" } th { "state" } } }
            tbody {
                @for node in &broker.nodes {
                    tr class=[(!node.up).then_some("bad")] {
                        td { code { (node.url) } }
                        td { @if node.up { "up" } @else { "down" } }
                    }
                }
            }
        }
        @match &broker.replicas_unknown {
            Some(why) => { p.muted { "Queue leaders and replicas unknown: " (why) } }
            None => {
                table #broker-queues {
                    thead { tr { th { "work queue" } th { "leader" } th { "replicas online" } } }
                    tbody {
                        @for queue in &broker.queues {
                            tr class=[(queue.leader.is_none() || queue.online.len() < queue.members.len()).then_some("bad")] {
                                td { code { (queue.queue) } }
                                td { (queue.leader.as_deref().unwrap_or("none")) }
                                td.n { (queue.online.len()) " / " (queue.members.len()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The Redis under the fleet: one node, or the cluster's masters with their
/// slots and replicas.
fn redis(redis: &RedisStatus) -> Markup {
    let up = |up: bool| if up { "up" } else { "down" };
    html! {
        h2 { "Redis" }
        @match redis {
            RedisStatus::Single { connected_replicas } => {
                p #redis { "One node, " (connected_replicas) " replica(s) connected." }
            }
            RedisStatus::Cluster { state, seen_from, masters } => {
                p { "Cluster state " strong class=[(state != "ok").then_some("bad")] { (state) }
                    " (as " code { (seen_from) } " sees it)" }
                table #redis {
                    thead { tr { th { "master" } th { "state" } th { "slots" } th { "replicas" } } }
                    tbody {
                        @for master in masters {
                            tr class=[(!master.up).then_some("bad")] {
                                td { code { (master.address) } }
                                td { (up(master.up)) }
                                td { @if master.slots.is_empty() { span.muted { "none" } }
                                     @else { (master.slots.join(" ")) " (" (master.slot_count) ")" } }
                                td {
                                    @if master.replicas.is_empty() { span.muted { "none" } }
                                    @for replica in &master.replicas {
                                        code { (replica.address) } " " (up(replica.up)) " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn stage_row(stage: &StageStatus) -> Markup {
    let name = stage.stage.as_str();
    html! {
        tr data-stage=(name) {
            td { strong { (name) } }
            @match &stage.work {
                Some(work) => {
                    td.n { (work.messages) }
                    td.n class=[(work.consumers == 0).then_some("bad")] { (work.consumers) }
                }
                None => { td.bad colspan="2" { "no queue: no worker started in this namespace" } }
            }
            td.n { (stage.workers) }
            td {
                @for delay in &stage.delays {
                    span.badge title=(delay.queue) {
                        (delay.delay) ": " (delay.messages.map_or("—".to_owned(), |n| n.to_string()))
                    } " "
                }
            }
            td {
                @match &stage.exceptions {
                    Some(exceptions) if exceptions.messages > 0 => {
                        a.bad href=(format!("/exceptions/{name}")) { strong { (exceptions.messages) } }
                        @for (reason, n) in &exceptions.by_reason {
                            " " a.badge href=(format!("/exceptions/{name}?reason={}", layout::url_component(reason))) { (reason) " ×" (n) }
                        }
                        @if (exceptions.sampled) < exceptions.messages {
                            span.muted { " (reasons of the first " (exceptions.sampled) ")" }
                        }
                    }
                    Some(_) => { span.good { "0" } }
                    None => { span.muted { "—" } }
                }
            }
            td {
                @if let Some(pause) = &stage.paused {
                    span.badge.open { "paused" } " " (pause.reason) span.muted { " — " (pause.actor) ", " (layout::time(pause.since)) }
                } @else { span.muted { "running" } }
            }
        }
    }
}

fn orders_link(state: OrderState) -> String {
    format!("/orders?state={}", state.as_str())
}
