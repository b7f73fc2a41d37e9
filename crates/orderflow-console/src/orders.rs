//! Orders: what needs a person, one order in full (state, downstream ids,
//! the audit timeline) and the actions its state allows.
//!
//! Every read and action goes through `orderflow-ops`, exactly as
//! `orderctl order …` does: a reason is required, an action is idempotent
//! by its action id (a fresh one is rendered into each form, so a double
//! submit or a browser re-post acts once), it is refused when the order's
//! state makes it unsafe, and it is audited as `operator:<name>@console`.
//! Nothing here decides what is allowed: the pages show what the library
//! says (`OrderView::allowed`, `CancelPlan`) and the library refuses the
//! rest.

use crate::Console;
use crate::auth::Session;
use crate::layout::{self, PageError, PageResult, state_badge, time};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use jiff::Timestamp;
use maud::{Markup, html};
use orderflow_core::{OrderState, Stage};
use orderflow_ops::target::parse_order_id;
use orderflow_ops::{
    ActionInput, ActionKind, ActionReport, CancelBy, CancelPlan, Decision, Done, ListFilter,
    NextStep, OrderList, OrderView, PaymentOutcome,
};
use serde::Deserialize;
use std::time::Duration;

/// A charge normally settles in seconds: an order `payment_pending` for
/// longer has an outcome the fleet does not know yet, and a person may
/// want to check with the provider before the stage's deadline escalates
/// it.
const SLOW_PAYMENT: Duration = Duration::from_secs(5 * 60);

/// Orders shown per list; `orderctl order list` pages through more.
const LISTED: usize = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/orders", get(index))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/resolve", post(resolve))
        .route("/orders/{id}/retry", post(retry))
        .route("/orders/{id}/unblock", post(unblock))
        .route("/orders/{id}/cancel", get(cancel_page).post(cancel))
}

// ----- what needs a person -----

#[derive(Debug, Deserialize)]
struct Search {
    id: Option<String>,
    /// Orders in this state instead of those waiting for a person (the
    /// fleet page links each state here).
    state: Option<String>,
}

/// One list of orders waiting for a person.
struct Waiting {
    /// The element id of its section.
    section: &'static str,
    title: String,
    what: &'static str,
    filter: ListFilter,
}

async fn index(
    State(console): State<Console>,
    session: Session,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    if let Some(raw) = search.id.as_deref().map(str::trim)
        && !raw.is_empty()
    {
        // The library's rule for order ids: anything it accepts is safe
        // in a path.
        let order_id = parse_order_id(raw)?;
        return Ok(Redirect::to(&format!("/orders/{order_id}")).into_response());
    }
    let in_state = match search.state.as_deref().map(str::trim) {
        Some(raw) if !raw.is_empty() => Some(raw.parse::<OrderState>().map_err(|_| {
            PageError::bad_request(format!(
                "`{raw}` is not an order state; one of: {}",
                OrderState::ALL.map(OrderState::as_str).join(", ")
            ))
        })?),
        _ => None,
    };
    let waiting = match in_state {
        Some(state) => vec![Waiting {
            section: "in-state",
            title: format!("In {state}"),
            what: "longest there first",
            filter: filter(state, None),
        }],
        None => vec![
            Waiting {
                section: "needs-blocked",
                title: "Blocked".to_owned(),
                what: "the fleet stopped and waits for a decision: ship or refund",
                filter: filter(OrderState::Blocked, None),
            },
            Waiting {
                section: "needs-escalated",
                title: "Escalated".to_owned(),
                what: "a stage gave up; the state it left says whose problem it is",
                filter: filter(OrderState::Escalated, None),
            },
            Waiting {
                section: "needs-slow-payment",
                title: format!(
                    "Payment pending for over {} minutes",
                    SLOW_PAYMENT.as_secs() / 60
                ),
                what: "the charge's outcome is not known yet: check with the provider, then resolve",
                filter: filter(OrderState::PaymentPending, Some(SLOW_PAYMENT)),
            },
        ],
    };
    let mut lists = Vec::new();
    for waiting in waiting {
        let list = orderflow_ops::list_orders(console.target(), &waiting.filter).await?;
        lists.push((waiting, list));
    }
    let hint = lists.iter().find_map(|(_, list)| list.hint.clone());
    let body = html! {
        h1 { "Orders" }
        form #order-search .card method="get" action="/orders" {
            label { "Order id"
                input #order-id name="id" type="text" required autocomplete="off" placeholder="ord-123";
            }
            button #search type="submit" { "Open" }
        }
        @match in_state {
            Some(state) => { h2 { "Orders in " (state.as_str()) " " a.muted href="/orders" { "(what needs a person)" } } }
            None => { h2 { "What needs a person" } }
        }
        @if let Some(hint) = hint { p #namespace-hint .flash.warn { (hint) } }
        div #needs-person data-refresh=(console.config().refresh_secs) {
            @for (waiting, list) in &lists { (waiting_list(waiting, list)) }
        }
    };
    Ok(layout::page(&console, &session, "Orders", body).into_response())
}

fn filter(state: OrderState, older_than: Option<Duration>) -> ListFilter {
    ListFilter {
        state,
        reason: None,
        older_than,
        limit: LISTED,
    }
}

fn waiting_list(waiting: &Waiting, list: &OrderList) -> Markup {
    html! {
        section .card id=(waiting.section) {
            h3 { (waiting.title) " " span.muted { "(" (list.orders.len()) @if list.truncated { "+" } ")" } }
            p.muted { (waiting.what) }
            @if list.orders.is_empty() {
                p.muted.none { "none" }
            } @else {
                table {
                    thead { tr { th { "Order" } th { "Reason" } th.n { "For" } th { "Since" } th { "Cancel requested" } } }
                    tbody {
                        @for order in &list.orders {
                            tr.order data-order=(order.order_id) {
                                td { a href=(order_path(&order.order_id)) { (order.order_id) } }
                                td.reason { (or_dash(order.reason.as_deref())) }
                                td.n.age { (ago(order.since)) }
                                td { (time(order.since)) }
                                td { (or_dash(order.cancel_requested.as_deref())) }
                            }
                        }
                    }
                }
                @if list.truncated {
                    p.muted { "More match: " code { "orderctl order list --state " (list.state.as_str()) " --limit 1000" } }
                }
            }
        }
    }
}

// ----- one order -----

async fn show(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let view = orderflow_ops::show_order(console.target(), &id).await?;
    let refresh = console.config().refresh_secs;
    let body = html! {
        h1 { "Order " code #order { (view.order_id) } }
        // Live parts only: refreshing the forms would replace their
        // action ids and whatever the operator has typed.
        div #order-live data-refresh=(refresh) { (summary(&view)) (stages(&view)) }
        (actions(&view))
        h2 { "Timeline" }
        div #order-timeline data-refresh=(refresh) { (timeline(&view)) }
    };
    Ok(layout::page(&console, &session, "Orders", body))
}

fn summary(view: &OrderView) -> Markup {
    html! {
        p.state {
            span #state { (state_badge(view.state)) }
            @if let Some(reason) = &view.reason { " " span #reason { (reason) } }
        }
        @if let Some(cancel) = &view.cancel_requested {
            p.flash.warn { "A cancellation is requested: " (cancel) }
        }
        table #summary {
            tr { th { "Version" } td #version { (view.version) } }
            tr { th { "Correlation id" } td #correlation-id { code { (view.correlation_id) } } }
            tr { th { "Policy id" } td #policy-id { code { (view.policy_id) } } }
            tr { th { "Created" } td #created { (time(view.created_at)) } }
            tr { th { "In this state since" } td #updated { (time(view.updated_at)) " (" (ago(view.updated_at)) " ago)" } }
            tr { th { "Cancel requested" } td #cancel-requested { (or_dash(view.cancel_requested.as_deref())) } }
            tr { th { "Escalated from" } td #escalated-from {
                @match view.escalated_from {
                    Some(from) => {
                        (from.as_str())
                        @if let Some(stage) = from.owner() { span.muted { " (the " (stage.as_str()) " stage's problem)" } }
                    }
                    None => "-",
                }
            } }
        }
    }
}

fn stages(view: &OrderView) -> Markup {
    html! {
        h2 { "Stages" }
        table #stages {
            thead { tr { th { "Stage" } th { "Last outcome" } th { "Certainty" } th { "Downstream id" } th.n { "Runs" } } }
            tbody {
                @for stage in &view.stages {
                    tr.stage data-stage=(stage.stage.as_str()) {
                        td { (stage.stage.as_str()) }
                        td.class { (or_dash(stage.class.map(|c| c.as_str()))) }
                        td.certainty { (or_dash(stage.certainty.map(|c| c.as_str()))) }
                        td.downstream-id { @match &stage.downstream_id { Some(id) => code { (id) }, None => "-" } }
                        td.n.runs { (stage.runs) }
                    }
                }
            }
        }
    }
}

fn timeline(view: &OrderView) -> Markup {
    html! {
        table #timeline {
            thead { tr {
                th { "At" } th { "Actor (who)" } th { "Move" } th { "Event" }
                th { "Reason (why)" } th { "Rule" } th { "Policy" }
            } }
            tbody {
                @for entry in &view.timeline {
                    tr.entry data-version=(entry.version) {
                        td.at { (time(entry.at)) }
                        td.actor { (entry.actor) }
                        td.move { (movement(entry.from, entry.to)) }
                        td.event { (entry.event) }
                        td.reason { (or_dash(entry.reason.as_deref())) }
                        td.rule { (or_dash(entry.rule.as_deref())) }
                        td.policy { code { (entry.policy_id) } }
                    }
                }
            }
        }
    }
}

/// `from → to`; the creation has no `from`; a note moved nothing.
fn movement(from: Option<OrderState>, to: OrderState) -> String {
    match from {
        None => format!("→ {to}"),
        Some(from) if from == to => format!("({from})"),
        Some(from) => format!("{from} → {to}"),
    }
}

fn actions(view: &OrderView) -> Markup {
    html! {
        section #actions {
            h2 { "Actions" }
            @if view.allowed.is_empty() {
                p #no-actions .muted { "None: order " (view.order_id) " has ended (" (view.state.as_str()) ")." }
            } @else {
                div.actions {
                    @for step in &view.allowed { (action(view, *step)) }
                }
            }
        }
    }
}

/// The form of one allowed step, with an action id of its own.
fn action(view: &OrderView, step: NextStep) -> Markup {
    let path = order_path(&view.order_id);
    match step {
        NextStep::ResolvePayment => html! {
            form #resolve-form .card method="post" action=(format!("{path}/resolve")) {
                h3 { "Resolve the payment" }
                p.muted {
                    "Check the charge with the payment provider first; the console asks it too, by the order's charge key, and refuses when it contradicts you. "
                    "Succeeded → paid, on to shipping. Failed → the reservation released → rejected."
                }
                (action_id())
                fieldset {
                    legend { "How did the charge end?" }
                    label.check { input #resolve-succeeded type="radio" name="outcome" value="succeeded" required; "succeeded" }
                    label.check { input #resolve-failed type="radio" name="outcome" value="failed"; "failed" }
                }
                label { "Payment id (succeeded only, optional: the charge you checked, when the provider has none under the order's key)"
                    input #resolve-payment-id name="payment_id" type="text" autocomplete="off";
                }
                (reason("resolve"))
                button #resolve type="submit" { "Resolve" }
            }
        },
        NextStep::Retry { stage } => html! {
            form #retry-form .card method="post" action=(format!("{path}/retry")) {
                h3 { "Retry the " (stage.as_str()) " stage" }
                p.muted {
                    "Back to the stage's entry state with its run counter reset; "
                    "the stage asks the provider by key before it sends anything again."
                }
                (action_id())
                input type="hidden" name="stage" value=(stage.as_str());
                (reason("retry"))
                button #retry type="submit" { "Retry " (stage.as_str()) }
            }
        },
        NextStep::Unblock => html! {
            form #unblock-form .card method="post" action=(format!("{path}/unblock")) {
                h3 { "Unblock" }
                p.muted { "Decide about the blocked order." }
                (action_id())
                fieldset {
                    legend { "Decision" }
                    label.check { input #unblock-ship type="radio" name="decision" value="ship" required; "ship it after all (or keep a shipment already accepted)" }
                    label.check { input #unblock-refund type="radio" name="decision" value="refund"; "refund the payment, release the reservation: cancelled" }
                }
                (reason("unblock"))
                button #unblock type="submit" { "Unblock" }
            }
        },
        NextStep::Cancel => html! {
            div #cancel-action .card {
                h3 { "Cancel" }
                p.muted { "Shows what cancelling would do (the compensation plan) before anything changes." }
                a #cancel .button href=(format!("{path}/cancel")) { "Cancel…" }
            }
        },
    }
}

/// A fresh action id: the same form posted twice acts once.
fn action_id() -> Markup {
    html! { input type="hidden" name="action_id" value=(orderflow_ops::new_action_id()); }
}

fn reason(form: &str) -> Markup {
    html! {
        label { "Reason (audited with your name)"
            input id=(format!("{form}-reason")) name="reason" type="text" required autocomplete="off";
        }
    }
}

// ----- cancel: the plan first -----

async fn cancel_page(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
) -> PageResult {
    let plan = orderflow_ops::cancel_plan(console.target(), &id).await?;
    let path = order_path(&plan.order_id);
    let body = html! {
        h1 { "Cancel order " code #order { (plan.order_id) } }
        p { "The order is " (state_badge(plan.state)) ". Nothing has changed yet." }
        (cancel_plan(&plan))
        @if plan.by != CancelBy::Refused {
            form #cancel-form .card method="post" action=(format!("{path}/cancel")) {
                (action_id())
                (reason("cancel"))
                button #cancel-confirm .danger type="submit" { "Cancel order " (plan.order_id) }
            }
        }
        p { a #back href=(path) { "Back to order " (plan.order_id) } }
    };
    Ok(layout::page(&console, &session, "Orders", body))
}

fn cancel_plan(plan: &CancelPlan) -> Markup {
    let by = match plan.by {
        CancelBy::Fleet => "fleet",
        CancelBy::Operator => "operator",
        CancelBy::Refused => "refused",
    };
    html! {
        section #cancel-plan .card data-by=(by) {
            h2 { "Compensation plan" }
            @match plan.by {
                CancelBy::Refused => {
                    p #refusal .flash.bad {
                        "Refused: " (plan.refusal.as_deref().unwrap_or("unsafe in this state"))
                    }
                    p.muted { "Nothing can be confirmed here." }
                }
                CancelBy::Fleet => p #carried-out-by {
                    "Carried out by the fleet: an " code { "order.cancel" }
                    " message tells the owning stage, which compensates once its outcome is known."
                },
                CancelBy::Operator => p #carried-out-by {
                    "Carried out by this console when you confirm: each compensation is made and confirmed with the provider before the order moves."
                },
            }
            @if !plan.steps.is_empty() {
                ol #plan-steps { @for step in &plan.steps { li.step { (step) } } }
            }
        }
    }
}

// ----- actions -----

/// Every action form's fields; each action reads its own.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ActionForm {
    reason: String,
    action_id: String,
    outcome: String,
    payment_id: String,
    stage: String,
    decision: String,
}

impl ActionForm {
    fn read(form: Result<Form<ActionForm>, FormRejection>) -> Result<ActionForm, PageError> {
        form.map(|Form(form)| form)
            .map_err(|rejection| PageError::bad_request(rejection.body_text()))
    }

    /// A blank reason goes on to the library, which refuses it with its
    /// own words.
    fn input(&self, order_id: String, operator: String) -> ActionInput {
        ActionInput {
            order_id,
            reason: self.reason.clone(),
            operator,
            action_id: filled(&self.action_id),
        }
    }
}

fn filled(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn resolve(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    let operator = session.operator()?;
    let form = ActionForm::read(form)?;
    let outcome = match form.outcome.as_str() {
        "succeeded" => PaymentOutcome::Succeeded,
        "failed" => PaymentOutcome::Failed,
        _ => {
            return Err(PageError::bad_request(
                "say how the charge ended: succeeded or failed".to_owned(),
            ));
        }
    };
    let input = form.input(id, operator);
    let report =
        orderflow_ops::resolve_payment(console.target(), &input, outcome, filled(&form.payment_id))
            .await?;
    Ok(result(&console, &session, &report))
}

async fn retry(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    let operator = session.operator()?;
    let form = ActionForm::read(form)?;
    let stage = form
        .stage
        .parse::<Stage>()
        .map_err(|e| PageError::bad_request(e.to_string()))?;
    let input = form.input(id, operator);
    let report = orderflow_ops::retry(console.target(), &input, stage).await?;
    Ok(result(&console, &session, &report))
}

async fn unblock(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    let operator = session.operator()?;
    let form = ActionForm::read(form)?;
    let decision = match form.decision.as_str() {
        "ship" => Decision::Ship,
        "refund" => Decision::Refund,
        _ => {
            return Err(PageError::bad_request(
                "choose a decision: ship or refund".to_owned(),
            ));
        }
    };
    let input = form.input(id, operator);
    let report = orderflow_ops::unblock(console.target(), &input, decision).await?;
    Ok(result(&console, &session, &report))
}

async fn cancel(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> PageResult {
    let operator = session.operator()?;
    let form = ActionForm::read(form)?;
    let input = form.input(id, operator);
    let report = orderflow_ops::cancel(console.target(), &input).await?;
    Ok(result(&console, &session, &report))
}

/// What an action did, as `orderctl` prints it.
fn result(console: &Console, session: &Session, report: &ActionReport) -> Markup {
    let moved = match report.to {
        Some(to) => format!("{} → {to}", report.from),
        None => format!("{} (the fleet moves it)", report.from),
    };
    let (done, flash, headline) = match report.done {
        Done::Acted => (
            "acted",
            "flash good",
            format!("{}: {moved}", what(report.action)),
        ),
        Done::Repeated => (
            "repeated",
            "flash warn",
            format!(
                "{} was already done with this action id: {moved}; nothing was done again",
                what(report.action)
            ),
        ),
        Done::Requested => (
            "requested",
            "flash good",
            format!("Cancellation requested: {moved}"),
        ),
    };
    let path = order_path(&report.order_id);
    let body = html! {
        h1 { "Order " code #order { (report.order_id) } }
        section #result data-done=(done) {
            p #headline class=(flash) { (headline) }
            table {
                tr { th { "Action" } td #action { (report.action.as_str()) } }
                tr { th { "Done" } td #done { (done) } }
                tr { th { "Move" } td #move { (moved) } }
                tr { th { "By" } td #actor { (report.actor) } }
                tr { th { "Reason" } td #action-reason { (report.reason) } }
                tr { th { "Action id" } td { code #action-id { (report.action_id) } } }
                @if let Some(version) = report.version {
                    tr { th { "Order version" } td #order-version { (version) } }
                }
            }
            @if !report.compensations.is_empty() {
                h2 { "Compensated" }
                ul #compensations { @for c in &report.compensations { li { (c) } } }
            }
            @if !report.published.is_empty() {
                h2 { "Published" }
                ul #published {
                    @for message in &report.published {
                        li {
                            @if message.exchange.is_empty() {
                                "queue " code { (message.routing_key) }
                            } @else {
                                code { (message.exchange) } " (" code { (message.routing_key) } ")"
                            }
                            @if let Some(id) = &message.message_id { " " span.muted { "[" (id) "]" } }
                        }
                    }
                }
            }
            @if !report.notes.is_empty() {
                h2 { "Notes" }
                ul #notes { @for note in &report.notes { li { (note) } } }
            }
        }
        p { a #back href=(path) { "Back to order " (report.order_id) } }
    };
    layout::page(console, session, "Orders", body)
}

fn what(action: ActionKind) -> &'static str {
    match action {
        ActionKind::ResolvePayment => "Payment resolved",
        ActionKind::Retry => "Retried",
        ActionKind::Cancel => "Cancelled",
        ActionKind::Unblock => "Unblocked",
    }
}

// ----- small helpers -----

/// Order ids are `[A-Za-z0-9_-]` once the library accepted them: safe in a
/// path as they are.
fn order_path(order_id: &str) -> String {
    format!("/orders/{order_id}")
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// How long ago `at` was, as `3m 12s`.
fn ago(at: Timestamp) -> String {
    let secs = Timestamp::now().duration_since(at).as_secs();
    layout::age(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_read_like_orderctl() {
        assert_eq!(movement(None, OrderState::Received), "→ received");
        assert_eq!(
            movement(Some(OrderState::Blocked), OrderState::Blocked),
            "(blocked)"
        );
        assert_eq!(
            movement(Some(OrderState::Paid), OrderState::Blocked),
            "paid → blocked"
        );
    }

    #[test]
    fn a_blank_action_id_lets_the_library_make_one() {
        let form = ActionForm {
            reason: "checked".into(),
            action_id: "  ".into(),
            ..ActionForm::default()
        };
        assert_eq!(
            form.input("o-1".into(), "alice@console".into()).action_id,
            None
        );
    }
}
