//! The exception queues in the browser: what waits for a person, grouped;
//! one stage's messages opened; and the operator's ways out — replay (dry
//! run first), discard, export — through `orderflow_ops::exceptions`, the
//! library `orderctl exceptions` uses, so the rules are exactly its rules;
//! and edit, for a body that must change before it can go back.
//!
//! Every request connects to the broker afresh and closes again, so a
//! broker restart costs one failed page, never a broken console. Pages do
//! not refresh themselves: every read takes the messages with `basic.get`
//! and hands them back, which the broker counts as a delivery.

use crate::Console;
use crate::auth::Session;
use crate::layout::{self, PageError, PageResult};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{Markup, html};
use orderflow_core::Stage;
use orderflow_ops::exceptions::reasons::guide;
use orderflow_ops::exceptions::{
    self as ops, Audited, DEFAULT_READ_LIMIT, ExceptionQueues, HaltThreshold, Peeked,
    ReplayOutcome, ReplayReport, ReplayRequest, ReplayedMessage, Selection,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::num::NonZeroU32;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Messages shown on a stage's page at most; the counts cover the rest.
const SHOWN: usize = 200;
/// How long a canary's orders may take to move: `orderctl`'s default.
const CANARY_WAIT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/exceptions", get(list_page))
        .route("/exceptions/{stage}", get(stage_page))
        .route("/exceptions/{stage}/replay", post(replay))
        .route("/exceptions/{stage}/discard", post(discard))
        .route("/exceptions/{stage}/export", post(export))
        .route("/exceptions/{stage}/edit", get(edit_page).post(edit))
        .route("/exceptions/exports/{file}", get(download))
}

/// The namespace's exception queues, for this request only.
async fn connect(console: &Console) -> Result<ExceptionQueues, PageError> {
    let target = console.target();
    Ok(ExceptionQueues::connect(target.amqp_url(), target.namespace()).await?)
}

fn parse_stage(raw: &str) -> Result<Stage, PageError> {
    raw.parse().map_err(|err: orderflow_core::stage::UnknownStage| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "No such stage",
            format!(
                "{err}: the exception queues are at /exceptions/inventory, /exceptions/payment and /exceptions/shipping"
            ),
        )
    })
}

// ---------------------------------------------------------------- list

async fn list_page(State(console): State<Console>, session: Session) -> PageResult {
    let queues = connect(&console).await?;
    let listing = ops::list(&queues, None, None, DEFAULT_READ_LIMIT).await;
    queues.close().await;
    let listing = listing?;
    let body = html! {
        h1 { "Exceptions" }
        p.muted {
            "Messages parked for a person, grouped by stage, failure class, certainty and reason. "
            "Read without consuming: every message stays in its queue."
        }
        table #queues {
            thead { tr { th { "stage" } th { "queue" } th.n { "ready" } th.n { "read" } th { "read in full?" } } }
            tbody {
                @for q in &listing.queues {
                    tr.queue data-stage=(q.stage) data-depth=(q.depth) data-complete=(q.complete) {
                        td { a href=(stage_href(q.stage, None)) { (q.stage) } }
                        td { code { (q.queue) } }
                        td.n { (q.depth) }
                        td.n { (q.read) }
                        td {
                            @if q.complete { "yes" }
                            @else { span.warn { "no: only the first " (q.read) " were read; the groups count those" } }
                        }
                    }
                }
            }
        }
        @if listing.groups.is_empty() {
            p #empty .flash.good { "No exception messages: nothing waits for a person." }
        } @else {
            h2 { "Groups" }
            table #groups {
                thead { tr {
                    th { "stage" } th { "class" } th { "certainty" } th { "reason" } th.n { "count" }
                    th { "oldest" } th { "orders" } th { "recommended action" } th {}
                } }
                tbody {
                    @for g in &listing.groups {
                        tr.group data-stage=(g.stage) data-reason=(g.reason) data-count=(g.count) {
                            td { (g.stage) }
                            td { (or_dash(g.class)) }
                            td { (or_dash(g.certainty)) }
                            td { code { (g.reason) } }
                            td.n { (g.count) }
                            td title=[g.oldest_published_at.as_deref()] { (age(g.oldest_age_secs)) }
                            td {
                                @for (i, order) in g.order_ids.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href=(order_href(order)) { (order) }
                                }
                            }
                            td.action { (with_code(&g.action)) }
                            td { a.messages href=(stage_href(g.stage, Some(&g.reason))) { "messages →" } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&console, &session, "Exceptions", body))
}

// ---------------------------------------------------------------- stage

#[derive(Debug, Deserialize)]
struct StageQuery {
    reason: Option<String>,
}

async fn stage_page(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
    Query(query): Query<StageQuery>,
) -> PageResult {
    let stage = parse_stage(&stage)?;
    let reason = query.reason.filter(|r| !r.trim().is_empty());
    let queues = connect(&console).await?;
    let read = async {
        let depth = queues.depth(stage).await?;
        let peeked = ops::peek(&queues, stage, DEFAULT_READ_LIMIT).await?;
        Ok::<_, orderflow_ops::Error>((queues.queue(stage), depth, peeked))
    }
    .await;
    queues.close().await;
    let (queue, depth, peeked) = read?;
    let complete = peeked.len() < DEFAULT_READ_LIMIT;
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for p in &peeked {
        match reasons.iter_mut().find(|(r, _)| *r == p.message.reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((p.message.reason.clone(), 1)),
        }
    }
    let matching: Vec<&Peeked> = peeked
        .iter()
        .filter(|p| reason.as_ref().is_none_or(|r| *r == p.message.reason))
        .collect();
    let shown = &matching[..matching.len().min(SHOWN)];
    let whole = match &reason {
        Some(reason) => format!("all {} with reason {reason}", matching.len()),
        None => format!("all {} in the queue", matching.len()),
    };
    let action = |what: &str| format!("/exceptions/{stage}/{what}");
    let body = html! {
        h1 { "Exceptions: " (stage) }
        p { a href="/exceptions" { "← every exception queue" } }
        p #summary {
            code { (queue) } ": " (depth) " ready"
            @if !complete { " (read the first " (peeked.len()) ")" }
            @if let Some(reason) = &reason { "; " (matching.len()) " with reason " code { (reason) } }
            @if shown.len() < matching.len() { "; showing the first " (shown.len()) }
            "."
        }
        @if !reasons.is_empty() {
            p #reasons {
                "Reasons: "
                a href=(stage_href(stage, None)) class=[reason.is_none().then_some("here")] { "all (" (peeked.len()) ")" }
                @for (r, n) in &reasons {
                    " · "
                    a href=(stage_href(stage, Some(r))) class=[(reason.as_ref() == Some(r)).then_some("here")] { (r) " (" (n) ")" }
                }
            }
        }
        @if let Some(reason) = &reason {
            @let g = guide(reason);
            div #guide .card {
                p { strong { "What it means: " } (with_code(g.means)) }
                p { strong { "Recommended action: " } (with_code(g.action)) }
            }
        }
        @if matching.is_empty() {
            p #empty .flash.good {
                "No messages in " code { (queue) }
                @if let Some(reason) = &reason { " with reason " code { (reason) } }
                "."
            }
        } @else {
            // One form holds the checkboxes, so replay and discard act on
            // the same selection; each button posts to its own action.
            form #messages-form method="post" action=(action("replay")) {
                table #messages {
                    thead { tr {
                        th { input #select-all type="checkbox" data-select-all="id" aria-label="select every message shown"; }
                        th { "message" } th { "order" } th { "reason" } th { "class / certainty" }
                        th.n { "attempts" } th { "age" } th { "last error" } th { "body and headers" }
                    } }
                    tbody {
                        @for p in shown { (message_row(p)) }
                    }
                }
                div.actions {
                    fieldset #replay-form .card {
                        legend { "Replay" }
                        p.muted {
                            "Sends the messages back to their stage with the attempt count reset, audited as you. "
                            "A dry run comes first: it shows what the stage and the current policy would do with each, and sends nothing."
                        }
                        input type="hidden" name="dry_run" value="true";
                        @if let Some(reason) = &reason { input type="hidden" name="group_reason" value=(reason); }
                        label { "Rate (messages per second, empty: no limit)"
                            input #replay-rate type="number" name="rate" min="1";
                        }
                        label { "Canary (send this many first and wait for their orders to move)"
                            input #replay-canary type="number" name="canary" min="0" value="0";
                        }
                        label { "Halt when (a count like 3, or a share like 10%; empty: 10%)"
                            input #replay-halt type="text" name="halt" placeholder="10%";
                        }
                        // The first submit button is what Enter presses: the
                        // harmless one. Replay needs no discard reason.
                        div.actions {
                            button #replay-selected type="submit" name="scope" value="selected" formaction=(action("replay")) formnovalidate {
                                "Dry run: replay selected"
                            }
                            button #replay-group .secondary type="submit" name="scope" value="group" formaction=(action("replay")) formnovalidate {
                                "Dry run: replay " (whole)
                            }
                        }
                    }
                    fieldset #discard-form .card {
                        legend { "Discard" }
                        p.muted { "Removes the selected messages for good, each audited with your reason." }
                        label { "Why (goes into the audit)"
                            input #discard-reason type="text" name="reason" required maxlength="512";
                        }
                        button #discard-selected .danger type="submit" formaction=(action("discard")) {
                            "Discard selected"
                        }
                    }
                }
            }
        }
        @if !peeked.is_empty() {
            form #export-form .card method="post" action=(action("export")) {
                p {
                    "Export moves " strong { "every message of " code { (queue) } } " (not only those shown) into a JSONL file in "
                    code { (console.config().export_dir.display()) }
                    ", acknowledging each once its line is written; "
                    code { "orderctl exceptions import FILE" } " puts them back, byte for byte."
                }
                button #export type="submit" { "Export and remove from the queue" }
            }
        }
    };
    Ok(layout::page(&console, &session, "Exceptions", body))
}

fn message_row(p: &Peeked) -> Markup {
    let m = &p.message;
    let properties = serde_json::to_value(&p.record.properties).unwrap_or_default();
    let headers = properties
        .get("headers")
        .and_then(|h| h.as_object())
        .cloned()
        .unwrap_or_default();
    let others: Vec<(&String, &serde_json::Value)> = properties
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, value)| *name != "headers" && !value.is_null())
        .collect();
    html! {
        tr.message data-id=(m.id) data-reason=(m.reason) {
            td { input type="checkbox" name="id" value=(m.id) aria-label=(format!("select {}", m.id)); }
            td {
                code { (m.id) }
                br;
                a.edit href=(edit_href(m.stage, &m.id)) { "edit" }
            }
            td {
                @match m.order() {
                    Some(order) => a href=(order_href(order.as_str())) { (order.as_str()) },
                    None => (m.order_id.as_deref().unwrap_or("-")),
                }
            }
            td { code { (m.reason) } }
            td { (or_dash(m.class)) " / " (or_dash(m.certainty)) }
            td.n { (or_dash(m.attempt)) }
            td title=[m.published_at.as_deref()] { (age(m.age_secs)) }
            td {
                (m.last_error.as_deref().unwrap_or("-"))
                @if let Some(problems) = &m.validation_errors { br; span.bad { (problems) } }
                @if let Some(rid) = &m.replay_id { br; span.warn { "came back from replay " (rid) } }
            }
            td {
                details {
                    summary { "body and headers" }
                    @match (&p.record.body, &p.record.body_base64) {
                        (Some(text), _) => pre.body { (text) },
                        (None, Some(b64)) => { p.muted { "not UTF-8, as base64:" } pre.body { (b64) } },
                        (None, None) => p.muted { "no body" },
                    }
                    table.headers {
                        @for (name, value) in &headers {
                            tr { th { (name) } td { code { (header_text(value)) } } }
                        }
                        @for (name, value) in &others {
                            tr { th { (name) } td { code { (header_text(value)) } } }
                        }
                    }
                    p.muted { "sha256 " code { (m.body_sha256) } }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- forms

/// A posted form: repeated fields (the checked ids) kept.
struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first non-blank value of `name`, trimmed.
    fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    /// Every non-blank value of `name`, each once, in order.
    fn all(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for (_, v) in self.0.iter().filter(|(k, _)| k == name) {
            let v = v.trim();
            if !v.is_empty() && !values.iter().any(|seen| seen == v) {
                values.push(v.to_owned());
            }
        }
        values
    }
}

/// What the operator asked to replay, as posted; re-posted as is by the
/// dry run's "Replay for real".
struct ReplayForm {
    /// `None`: the whole group (the reason filter, else the whole queue).
    ids: Option<Vec<String>>,
    group_reason: Option<String>,
    dry_run: bool,
    rate: Option<NonZeroU32>,
    canary: usize,
    /// As typed, so the real run re-parses exactly it.
    halt_text: Option<String>,
    halt: HaltThreshold,
    replay_id: Option<String>,
}

impl ReplayForm {
    fn parse(fields: &Fields) -> Result<ReplayForm, PageError> {
        let ids = match fields.text("scope").unwrap_or("selected") {
            "selected" => {
                let ids = fields.all("id");
                if ids.is_empty() {
                    return Err(PageError::bad_request(
                        "no message selected: tick the messages to replay, or replay the whole group",
                    ));
                }
                Some(ids)
            }
            "group" => None,
            other => {
                return Err(PageError::bad_request(format!(
                    "scope `{other}`: `selected` or `group`"
                )));
            }
        };
        let rate = match fields.text("rate") {
            None => None,
            Some(raw) => Some(raw.parse::<NonZeroU32>().map_err(|_| {
                PageError::bad_request(format!(
                    "rate `{raw}`: messages per second, a whole number above 0 (empty: no limit)"
                ))
            })?),
        };
        let canary = match fields.text("canary") {
            None => 0,
            Some(raw) => raw.parse::<usize>().map_err(|_| {
                PageError::bad_request(format!(
                    "canary `{raw}`: how many messages to send first, a whole number (0: none)"
                ))
            })?,
        };
        let halt_text = fields.text("halt").map(str::to_owned);
        let halt = match &halt_text {
            None => HaltThreshold::default(),
            Some(raw) => raw
                .parse()
                .map_err(|why| PageError::bad_request(format!("halt {why}")))?,
        };
        Ok(ReplayForm {
            ids,
            group_reason: fields.text("group_reason").map(str::to_owned),
            // Only an explicit `false` sends: anything else is a dry run.
            dry_run: fields.text("dry_run") != Some("false"),
            rate,
            canary,
            halt_text,
            halt,
            replay_id: fields.text("replay_id").map(str::to_owned),
        })
    }

    fn selection(&self) -> Selection {
        match (&self.ids, &self.group_reason) {
            (Some(ids), _) => Selection::Ids(ids.clone()),
            (None, Some(reason)) => Selection::Reason(reason.clone()),
            (None, None) => Selection::All,
        }
    }

    /// The same request again, as hidden fields, for the real run (or a
    /// rerun) under `replay_id`.
    fn carried(&self, replay_id: &str) -> Markup {
        html! {
            input type="hidden" name="dry_run" value="false";
            input type="hidden" name="replay_id" value=(replay_id);
            @match &self.ids {
                Some(ids) => {
                    input type="hidden" name="scope" value="selected";
                    @for id in ids { input type="hidden" name="id" value=(id); }
                }
                None => { input type="hidden" name="scope" value="group"; }
            }
            @if let Some(reason) = &self.group_reason { input type="hidden" name="group_reason" value=(reason); }
            @if let Some(rate) = self.rate { input type="hidden" name="rate" value=(rate); }
            input type="hidden" name="canary" value=(self.canary);
            @if let Some(halt) = &self.halt_text { input type="hidden" name="halt" value=(halt); }
        }
    }
}

// ---------------------------------------------------------------- replay

async fn replay(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let operator = session.operator()?;
    let stage = parse_stage(&stage)?;
    let form = ReplayForm::parse(&Fields(fields))?;
    let replay_id = match (&form.replay_id, form.dry_run) {
        (Some(id), _) => id.clone(),
        (None, true) => ops::new_replay_id(),
        // The dry run's id is what makes a double submit harmless.
        (None, false) => {
            return Err(PageError::bad_request(
                "a real replay carries the replay id of its dry run: start with the dry run, then press \"Replay for real\" on its page",
            ));
        }
    };
    let request = ReplayRequest {
        stage,
        selection: form.selection(),
        dry_run: form.dry_run,
        rate: form.rate,
        canary: form.canary,
        canary_timeout: CANARY_WAIT,
        halt: form.halt,
        replay_id: replay_id.clone(),
        limit: DEFAULT_READ_LIMIT,
    };
    let op = console.target().operator(&operator);
    let queues = connect(&console).await?;
    let report = ops::replay(&queues, &op, &request).await;
    queues.close().await;
    let report = report?;
    if !report.dry_run {
        tracing::info!(
            actor = %operator, %stage, replay_id = %report.replay_id, sent = report.sent,
            halted = report.halted.is_some(), "replayed exception messages from the console"
        );
    }
    let back = stage_href(stage, form.group_reason.as_deref());
    let body = html! {
        h1 { "Exceptions: " (stage) }
        div #result data-dry-run=(report.dry_run) data-replay-id=(report.replay_id) {
            @if report.dry_run { (dry_run_result(stage, &form, &report)) }
            @else { (replay_result(stage, &form, &report)) }
        }
        p { a #back href=(back) { "← back to the " (stage) " messages" } " · " a href="/exceptions" { "every exception queue" } }
    };
    Ok(layout::page(&console, &session, "Exceptions", body))
}

fn what_is_selected(form: &ReplayForm) -> String {
    match (&form.ids, &form.group_reason) {
        (Some(ids), _) => format!("the {} selected message(s)", ids.len()),
        (None, Some(reason)) => format!(
            "every message with reason {reason} in the queue when it runs (also any that arrived since this dry run)"
        ),
        (None, None) => {
            "every message in the queue when it runs (also any that arrived since this dry run)"
                .to_owned()
        }
    }
}

fn dry_run_result(stage: Stage, form: &ReplayForm, report: &ReplayReport) -> Markup {
    let planned = count(report, ReplayOutcome::Planned);
    let skipped = count(report, ReplayOutcome::Skipped);
    html! {
        h2 { "Replay dry run" }
        p #summary .flash.good {
            "Dry run of replay " code { (report.replay_id) } ": " (planned) " message(s) would be sent"
            @if skipped > 0 { ", " (skipped) " skipped (still invalid: fix them with " code { "orderctl exceptions edit" } ")" }
            ". Nothing was sent."
        }
        (replayed_table(&report.messages, true))
        @if planned > 0 {
            form #replay-real-form .card method="post" action=(format!("/exceptions/{stage}/replay")) {
                (form.carried(&report.replay_id))
                p {
                    "The real run sends " (what_is_selected(form)) " under replay id " code { (report.replay_id) }
                    ": submitted twice, it still sends each message once."
                    @if form.canary > 0 { " It sends " (form.canary) " first and waits up to " (CANARY_WAIT.as_secs()) "s for their orders to move." }
                }
                button #replay-for-real .danger type="submit" { "Replay for real" }
            }
        } @else {
            p #nothing .muted { "Nothing would be sent." }
        }
    }
}

fn replay_result(stage: Stage, form: &ReplayForm, report: &ReplayReport) -> Markup {
    let unfinished = report.halted.is_some() || report.busy > 0 || report.not_sent > 0;
    html! {
        h2 { "Replay" }
        p #summary .flash.(if unfinished { "warn" } else { "good" }) {
            "Replay " code { (report.replay_id) } ": " (report.sent) " sent, "
            (report.already_sent) " sent before, " (report.skipped) " skipped, "
            (report.busy) " held by another run, " (report.not_sent) " not sent, "
            (report.came_back) " came back. Each sent message is audited as you."
        }
        @if let Some(halt) = &report.halted {
            p #halted .flash.bad { "The replay halted: " (halt.to_string()) ". What was sent stays sent." }
        }
        @if report.skipped > 0 {
            p.flash.warn { "Skipped messages stayed in the queue, each saying why: a body that still breaks its contract is fixed with " code { "orderctl exceptions edit" } "; a step past the replay window is settled by hand, then discarded." }
        }
        (replayed_table(&report.messages, false))
        @if unfinished {
            form #replay-resume-form .card method="post" action=(format!("/exceptions/{stage}/replay")) {
                (form.carried(&report.replay_id))
                p { "Once the cause is fixed, run it again under the same replay id: what was sent is not sent again." }
                button #replay-resume type="submit" { "Resume replay " (report.replay_id) }
            }
        }
    }
}

fn count(report: &ReplayReport, outcome: ReplayOutcome) -> usize {
    report
        .messages
        .iter()
        .filter(|m| m.outcome == outcome)
        .count()
}

fn replayed_table(messages: &[ReplayedMessage], dry_run: bool) -> Markup {
    html! {
        @if !messages.is_empty() {
            table #replayed {
                thead { tr {
                    th { "message" } th { "order" } th { "reason" } th { "goes to" } th { "outcome" }
                    @if dry_run { th { "order state" } th { "the stage would" } th { "the policy now" } }
                    th { "detail" }
                    @if !dry_run { th { "audit" } }
                } }
                tbody {
                    @for m in messages {
                        @let outcome = outcome_name(m.outcome);
                        tr.replayed data-id=(m.id) data-outcome=(outcome) {
                            td { code { (m.id) } }
                            td { @match &m.order_id { Some(order) => a href=(order_href(order)) { (order) }, None => "-" } }
                            td { code { (m.reason) } }
                            td { (m.destination.as_deref().unwrap_or("nowhere: unreadable body")) }
                            td { (outcome) }
                            @if dry_run {
                                @let prediction = m.prediction.as_ref();
                                td { @match prediction.and_then(|p| p.order_state) { Some(state) => (layout::state_badge(state)), None => "-" } }
                                td.prediction { (prediction.map_or("-", |p| p.stage_will.as_str())) }
                                td.policy {
                                    @match prediction.and_then(|p| p.policy.as_ref()) {
                                        Some(d) => {
                                            @if !d.applies { "if it ran: " }
                                            strong { (d.decision.to_string()) }
                                            " (rule " code { (d.rule) } "; given " (d.given) "; policy " (d.policy_id) ")"
                                        },
                                        None => "-",
                                    }
                                }
                            }
                            td { (m.detail.as_deref().unwrap_or("")) }
                            @if !dry_run { td.audit { @if let Some(audit) = &m.audit { (audited(audit)) } } }
                        }
                    }
                }
            }
        }
    }
}

fn outcome_name(outcome: ReplayOutcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn audited(audit: &Audited) -> Markup {
    html! {
        @match audit {
            Audited::Order { order_id, version } => {
                "noted on order " a href=(order_href(order_id)) { (order_id) } " (v" (version) ")"
            }
            Audited::Fleet { entry_id } => { "fleet audit entry " code { (entry_id) } }
        }
    }
}

// ---------------------------------------------------------------- discard

async fn discard(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let operator = session.operator()?;
    let stage = parse_stage(&stage)?;
    let fields = Fields(fields);
    // Said here in the console's words; the library refuses the same.
    let Some(reason) = fields.text("reason") else {
        return Err(PageError::bad_request(
            "say why you discard: the reason goes into the audit with your name. Nothing was removed",
        ));
    };
    let ids = fields.all("id");
    if ids.is_empty() {
        return Err(PageError::bad_request(
            "no message selected: tick the messages to discard. Nothing was removed",
        ));
    }
    let op = console.target().operator(&operator);
    let queues = connect(&console).await?;
    let queue = queues.queue(stage);
    let report = ops::discard(&queues, &op, stage, &ids, reason, DEFAULT_READ_LIMIT).await;
    queues.close().await;
    let report = report?;
    tracing::info!(actor = %operator, %stage, discarded = report.discarded.len(), "discarded exception messages from the console");
    let body = html! {
        h1 { "Exceptions: " (stage) }
        div #result {
            h2 { "Discarded" }
            p #summary .flash.good {
                (report.discarded.len()) " message(s) discarded from " code { (queue) }
                " for good, each audited as " code { "operator:" (operator) } " with your reason: " em { (reason) }
            }
            table #discarded {
                thead { tr { th { "message" } th { "order" } th { "reason it was parked" } th { "audit" } } }
                tbody {
                    @for d in &report.discarded {
                        tr.discarded data-id=(d.id) {
                            td { code { (d.id) } }
                            td { @match &d.order_id { Some(order) => a href=(order_href(order)) { (order) }, None => "-" } }
                            td { code { (d.reason) } }
                            td.audit { (audited(&d.audit)) }
                        }
                    }
                }
            }
        }
        p { a #back href=(stage_href(stage, None)) { "← back to the " (stage) " messages" } " · " a href="/exceptions" { "every exception queue" } }
    };
    Ok(layout::page(&console, &session, "Exceptions", body))
}

// ---------------------------------------------------------------- export

async fn export(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
) -> PageResult {
    let operator = session.operator()?;
    let stage = parse_stage(&stage)?;
    let (claim, file, path) = console.exports().start(&console, stage, &operator)?;
    // Once started, an export runs to its end even when the browser goes
    // away (a double-click cancels the first request): stopped halfway, its
    // last message could be in the file and back in the queue both.
    let worker = console.clone();
    let written = file.clone();
    let running = tokio::spawn(async move {
        let _claim = claim;
        let op = worker.target().operator(&operator);
        let queues = connect(&worker).await?;
        let report = ops::export(&queues, &op, stage, &path, None).await;
        queues.close().await;
        // Stopped halfway, what left the queue is in the file: say where.
        report.map_err(|err| {
            let mut page = PageError::from(err);
            page.message.push_str(&format!(
                "; the messages exported before that are in {written} (at /exceptions/exports/{}; `orderctl exceptions import` puts them back)",
                layout::url_component(&written)
            ));
            page
        })
    });
    let report = running.await.map_err(|err| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not be done now",
            format!("the export of the {stage} exception queue stopped: {err}"),
        )
    })??;
    let download = format!("/exceptions/exports/{}", layout::url_component(&file));
    let body = html! {
        h1 { "Exceptions: " (stage) }
        div #result data-written=(report.written) data-lines=(report.lines) data-file=(file) {
            h2 { "Exported" }
            p #summary .flash.good {
                "Moved " (report.written) " message(s) of the " (stage) " exception queue into "
                code { (report.path) } "; the file holds " (report.lines) " line(s)."
            }
            @if report.already_in_file > 0 {
                p.flash.warn { (report.already_in_file) " message(s) were in the file already: acknowledged, not written again." }
            }
            @if report.dropped_partial_line {
                p.flash.warn { "A last line cut short by an earlier run was dropped; its message was exported again." }
            }
            p { a #download href=(download) download=(file) { "Download " (file) } }
            p.muted { "Put them back with " code { "orderctl exceptions import " (report.path) } "." }
        }
        p { a #back href=(stage_href(stage, None)) { "← back to the " (stage) " messages" } " · " a href="/exceptions" { "every exception queue" } }
    };
    Ok(layout::page(&console, &session, "Exceptions", body))
}

/// The exports this console is running: one per exception queue at a
/// time, so a second click (or a second operator) is told where the first
/// one writes instead of starting another.
#[derive(Default)]
pub struct Exports {
    running: Mutex<HashMap<Stage, Running>>,
}

struct Running {
    file: String,
    operator: String,
}

/// A queue's export under way; dropping it lets the queue go.
struct Claim {
    console: Console,
    stage: Stage,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.console.exports().lock().remove(&self.stage);
    }
}

impl Exports {
    fn lock(&self) -> MutexGuard<'_, HashMap<Stage, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims the stage's queue and creates the export's file, or says
    /// which export holds the queue.
    fn start(
        &self,
        console: &Console,
        stage: Stage,
        operator: &str,
    ) -> Result<(Claim, String, PathBuf), PageError> {
        let mut running = self.lock();
        if let Some(other) = running.get(&stage) {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                "An export is running",
                format!(
                    "an export of the {stage} exception queue into {} (started by {}) is running now; nothing else was taken from the queue. Wait for it to finish, then download that file at /exceptions/exports/{}",
                    other.file,
                    other.operator,
                    layout::url_component(&other.file)
                ),
            ));
        }
        let dir = &console.config().export_dir;
        let (file, path) =
            new_export_file(dir, console.target().namespace(), stage).map_err(|err| {
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Could not be done now",
                    format!(
                        "cannot create an export file in {}: {err}; nothing was exported",
                        dir.display()
                    ),
                )
            })?;
        running.insert(
            stage,
            Running {
                file: file.clone(),
                operator: operator.to_owned(),
            },
        );
        let claim = Claim {
            console: console.clone(),
            stage,
        };
        Ok((claim, file, path))
    }
}

/// A file of its own for each export, created here: named for the
/// namespace, stage and second, with `-2`, `-3`… when that name is taken
/// (by another console sharing the directory, or an export a moment
/// earlier), so an export never appends to another's file.
fn new_export_file(dir: &FsPath, namespace: &str, stage: Stage) -> io::Result<(String, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let mut file = format!("{namespace}-{stage}-{stamp}.jsonl");
    let mut n = 1u64;
    loop {
        let path = dir.join(&file);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok((file, path)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                n += 1;
                file = format!("{namespace}-{stage}-{stamp}-{n}.jsonl");
            }
            Err(err) => return Err(err),
        }
    }
}

/// A file the console wrote: a plain name in the export directory, never
/// a path (no `/`, nothing hidden, no `..`).
fn export_file_name(file: &str) -> Option<&str> {
    let plain = !file.starts_with('.')
        && file.len() <= 255
        && file.ends_with(".jsonl")
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    plain.then_some(file)
}

async fn download(State(console): State<Console>, Path(file): Path<String>) -> Response {
    let Some(name) = export_file_name(&file) else {
        return PageError::bad_request(format!(
            "`{file}` is not an export: give the plain name of a .jsonl file the console wrote (no paths)"
        ))
        .into_response();
    };
    let path = console.config().export_dir.join(name);
    // Blocking file reads off the runtime's threads; a symlink is not
    // served, so nothing outside the directory leaks through it.
    let read = tokio::task::spawn_blocking(move || {
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.is_file() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        Ok(ops::read_exported(&path))
    })
    .await;
    match read {
        Ok(Ok(Err(err))) => PageError::from(err).into_response(),
        Ok(Ok(Ok(bytes))) => (
            [
                (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => PageError::new(
            StatusCode::NOT_FOUND,
            "No such export",
            format!("no export `{name}` in the export directory"),
        )
        .into_response(),
        Ok(Err(err)) => PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not be done now",
            format!("reading the export `{name}`: {err}"),
        )
        .into_response(),
        Err(err) => PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not be done now",
            format!("reading the export `{name}`: {err}"),
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------- edit

#[derive(Debug, Deserialize)]
struct EditQuery {
    id: String,
}

/// The body as the operator edits it: JSON pretty-printed (as `orderctl
/// exceptions edit` opens it), anything else as it is.
fn editable(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value).ok(),
        Err(_) => String::from_utf8(body.to_vec()).ok(),
    }
}

async fn edit_page(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
    Query(query): Query<EditQuery>,
) -> Result<Response, PageError> {
    let stage = parse_stage(&stage)?;
    let queues = connect(&console).await?;
    let subject = ops::open_edit(&queues, stage, &query.id, DEFAULT_READ_LIMIT).await;
    queues.close().await;
    let subject = subject?;
    let Some(text) = editable(&subject.body) else {
        return Err(PageError::bad_request(format!(
            "message {} has a body that is not text: edit it with `orderctl exceptions edit`",
            query.id
        )));
    };
    Ok(edit_form(
        &console,
        &session,
        &subject,
        &subject.sha256,
        &text,
        None,
        StatusCode::OK,
    ))
}

/// The edit form; after a refused edit, with why and the text as typed.
fn edit_form(
    console: &Console,
    session: &Session,
    subject: &ops::EditSubject,
    sha256: &str,
    text: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let m = &subject.message;
    let g = guide(&m.reason);
    let body = html! {
        h1 { "Exceptions: " (m.stage) }
        p { a href=(stage_href(m.stage, Some(&m.reason))) { "← back to the " (m.stage) " messages" } }
        h2 { "Edit message " code { (m.id) } }
        p {
            "Parked as " code { (m.reason) }
            @if let Some(order) = &m.order_id { " for order " a href=(order_href(order)) { (order) } }
            ". " (with_code(g.action))
        }
        @if let Some(problems) = &m.validation_errors { p.flash.warn #problems { "Its problems: " (problems) } }
        @if let Some(error) = error { p.flash.bad #error { (error) } }
        form #edit-form .card method="post" action=(format!("/exceptions/{}/edit", m.stage)) {
            input type="hidden" name="id" value=(m.id);
            input type="hidden" name="sha256" value=(sha256);
            label { "Body"
                textarea #edit-body name="body" rows="24" spellcheck="false" { (text) }
            }
            p.muted {
                "Checked against the message's contract before anything is sent. The fixed copy goes back to its stage as a new message ("
                code { (m.id) ".edit-…" } ") and the original is removed, audited as you."
            }
            button #edit-send type="submit" { "Check and send" }
        }
    };
    (status, layout::page(console, session, "Exceptions", body)).into_response()
}

async fn edit(
    State(console): State<Console>,
    session: Session,
    Path(stage): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let operator = session.operator()?;
    let stage = parse_stage(&stage)?;
    let fields = Fields(fields);
    let (Some(id), Some(sha256)) = (fields.text("id"), fields.text("sha256")) else {
        return Err(PageError::bad_request(
            "open the message to edit from its stage's page: the form names the message and the body it had",
        ));
    };
    // The textarea as typed; only the browser's line endings are undone.
    let typed = fields
        .0
        .iter()
        .find(|(k, _)| k == "body")
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default();
    let op = console.target().operator(&operator);
    let queues = connect(&console).await?;
    let outcome = async {
        let subject = ops::open_edit(&queues, stage, id, DEFAULT_READ_LIMIT).await?;
        // orderctl's rules: JSON is sent compact, and the same JSON again
        // is nothing to send.
        let original = serde_json::from_slice::<serde_json::Value>(&subject.body).ok();
        let body = match serde_json::from_str::<serde_json::Value>(&typed) {
            Ok(value) if Some(&value) == original.as_ref() => {
                return Ok(Err((
                    subject,
                    "the body is unchanged: nothing to send (replay the message instead)"
                        .to_owned(),
                )));
            }
            Ok(value) => serde_json::to_vec(&value).unwrap_or_else(|_| typed.clone().into_bytes()),
            Err(_) => typed.clone().into_bytes(),
        };
        if let Err(err) = ops::check_body(stage, &body) {
            return Ok(Err((
                subject,
                format!("{err}\nthe original message is still in the queue"),
            )));
        }
        let request = ops::EditRequest {
            stage,
            id: id.to_owned(),
            expected_sha256: sha256.to_owned(),
            body,
            limit: DEFAULT_READ_LIMIT,
        };
        ops::edit(&queues, &op, &request).await.map(Ok)
    }
    .await;
    queues.close().await;
    let report = match outcome? {
        Ok(report) => report,
        Err((subject, why)) => {
            return Ok(edit_form(
                &console,
                &session,
                &subject,
                sha256,
                &typed,
                Some(&why),
                StatusCode::BAD_REQUEST,
            ));
        }
    };
    tracing::info!(actor = %operator, %stage, original = %report.original_id, new = %report.new_id, "edited an exception message from the console");
    let body = html! {
        h1 { "Exceptions: " (stage) }
        div #result data-new-id=(report.new_id) {
            h2 { "Edited" }
            p #summary .flash.good {
                "The edited copy of " code { (report.original_id) } " was sent as " code { (report.new_id) }
                " to " (report.destination) "; the original is removed."
            }
            p { "sha256 " code { (report.before_sha256) } " → " code { (report.after_sha256) } "; " (audited(&report.audit)) "." }
        }
        p { a #back href=(stage_href(stage, None)) { "← back to the " (stage) " messages" } " · " a href="/exceptions" { "every exception queue" } }
    };
    Ok(layout::page(&console, &session, "Exceptions", body).into_response())
}

// ---------------------------------------------------------------- helpers

fn stage_href(stage: Stage, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!(
            "/exceptions/{stage}?reason={}",
            layout::url_component(reason)
        ),
        None => format!("/exceptions/{stage}"),
    }
}

fn edit_href(stage: Stage, id: &str) -> String {
    format!("/exceptions/{stage}/edit?id={}", layout::url_component(id))
}

fn order_href(order: &str) -> String {
    format!("/orders/{}", layout::url_component(order))
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn age(secs: Option<u64>) -> String {
    secs.map_or_else(|| "-".to_owned(), layout::age)
}

/// A typed header value as its plain value (`{"i64":3}` → `3`), as
/// `orderctl exceptions peek` prints it.
fn header_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) if o.len() == 1 => match o.values().next() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(inner) => inner.to_string(),
            None => value.to_string(),
        },
        other => other.to_string(),
    }
}

/// The runbook's `command` spans as code.
fn with_code(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_export_names_are_served() {
        assert_eq!(
            export_file_name("orderflow-payment-20261128T054043Z.jsonl"),
            Some("orderflow-payment-20261128T054043Z.jsonl")
        );
        for bad in [
            "../secret.jsonl",
            "..",
            ".hidden.jsonl",
            "a/b.jsonl",
            "a\\b.jsonl",
            "/etc/passwd",
            "notes.txt",
            "",
        ] {
            assert_eq!(export_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn links_encode_what_headers_carry() {
        assert_eq!(
            stage_href(Stage::Payment, Some("a b&c")),
            "/exceptions/payment?reason=a%20b%26c"
        );
        assert_eq!(order_href("ord-1"), "/orders/ord-1");
    }

    #[test]
    fn a_replay_form_defaults_to_a_dry_run_of_the_selection() {
        let fields = |pairs: &[(&str, &str)]| {
            Fields(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        let form = ReplayForm::parse(&fields(&[("id", "m-1"), ("id", "m-2"), ("id", "m-1")]))
            .expect("valid");
        assert!(form.dry_run);
        assert_eq!(
            form.selection(),
            Selection::Ids(vec!["m-1".into(), "m-2".into()])
        );
        assert_eq!(form.halt, HaltThreshold::default());
        let group = ReplayForm::parse(&fields(&[
            ("scope", "group"),
            ("group_reason", "payment_unresolved"),
            ("dry_run", "false"),
            ("halt", "3"),
            ("rate", "5"),
        ]))
        .expect("valid");
        assert!(!group.dry_run);
        assert_eq!(
            group.selection(),
            Selection::Reason("payment_unresolved".into())
        );
        assert_eq!(group.halt, HaltThreshold::Count(3));
        assert!(ReplayForm::parse(&fields(&[])).is_err(), "nothing selected");
        assert!(ReplayForm::parse(&fields(&[("id", "m"), ("rate", "0")])).is_err());
        assert!(ReplayForm::parse(&fields(&[("id", "m"), ("halt", "150%")])).is_err());
    }
}
