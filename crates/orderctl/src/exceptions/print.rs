//! Output: aligned tables and sentences for people, one JSON document with
//! `--json`.

use orderflow_ops::exceptions::reasons::{GUIDES, UNKNOWN};
use orderflow_ops::exceptions::{
    Audited, DiscardReport, EditReport, ExportReport, ImportReport, Listing, Peeked, ReplayReport,
};
use serde::Serialize;

fn json<T: Serialize + ?Sized>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("reports serialize")
    );
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    (*c).to_owned()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn age(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m", s / 60),
        Some(s) if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        Some(s) => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn audited(audit: &Audited) -> String {
    match audit {
        Audited::Order { order_id, version } => format!("noted on order {order_id} (v{version})"),
        Audited::Fleet { entry_id } => format!("fleet audit entry {entry_id}"),
    }
}

pub fn reasons(as_json: bool) {
    if as_json {
        let all: Vec<_> = GUIDES.iter().chain(std::iter::once(&UNKNOWN)).collect();
        return json(&all);
    }
    for g in GUIDES.iter().chain(std::iter::once(&UNKNOWN)) {
        println!(
            "{} ({})\n  means: {}\n  do:    {}\n",
            g.reason, g.stages, g.means, g.action
        );
    }
}

pub fn listing(listing: &Listing, as_json: bool) {
    if as_json {
        return json(listing);
    }
    let read: usize = listing.queues.iter().map(|q| q.read).sum();
    let per_queue: Vec<String> = listing
        .queues
        .iter()
        .map(|q| {
            let partial = if q.complete {
                ""
            } else {
                " (partial: --limit)"
            };
            format!("{} {}/{}{partial}", q.stage, q.read, q.depth)
        })
        .collect();
    println!(
        "namespace {}: read {read} exception messages ({})",
        listing.namespace,
        per_queue.join(", ")
    );
    if listing.groups.is_empty() {
        println!("nothing to look at");
        return;
    }
    let rows: Vec<Vec<String>> = listing
        .groups
        .iter()
        .map(|g| {
            vec![
                g.stage.to_string(),
                or_dash(g.class),
                or_dash(g.certainty),
                g.reason.clone(),
                g.count.to_string(),
                age(g.oldest_age_secs),
                g.order_ids.join(","),
                g.action.clone(),
            ]
        })
        .collect();
    table(
        &[
            "STAGE",
            "CLASS",
            "CERTAINTY",
            "REASON",
            "COUNT",
            "OLDEST",
            "ORDERS",
            "RECOMMENDED ACTION",
        ],
        &rows,
    );
}

pub fn peeked(peeked: &[Peeked], as_json: bool) {
    if as_json {
        return json(peeked);
    }
    if peeked.is_empty() {
        println!("the queue is empty");
    }
    for (n, p) in peeked.iter().enumerate() {
        let m = &p.message;
        println!(
            "── {}. {}  reason {}  {}/{}  order {}  age {}",
            n + 1,
            m.id,
            m.reason,
            or_dash(m.class),
            or_dash(m.certainty),
            or_dash(m.order_id.as_deref()),
            age(m.age_secs),
        );
        let properties = serde_json::to_value(&p.record.properties).expect("properties serialize");
        if let Some(headers) = properties.get("headers").and_then(|h| h.as_object()) {
            for (name, value) in headers {
                println!("   {name}: {}", header_text(value));
            }
        }
        match (&p.record.body, &p.record.body_base64) {
            (Some(text), _) => println!("   body: {text}"),
            (None, Some(b64)) => println!("   body (base64, not UTF-8): {b64}"),
            (None, None) => {}
        }
    }
}

/// A typed header value as its plain value (`{"i64":3}` → `3`).
fn header_text(value: &serde_json::Value) -> String {
    match value.as_object().and_then(|o| o.values().next()) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(inner) => inner.to_string(),
        None => value.to_string(),
    }
}

pub fn exported(report: &ExportReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    println!(
        "exported {} messages of the {} exception queue to {}; it holds {} lines",
        report.written, report.stage, report.path, report.lines
    );
    if report.already_in_file > 0 {
        println!(
            "{} messages were in the file already (an earlier run stopped before acknowledging them): acknowledged, not written again",
            report.already_in_file
        );
    }
    if report.dropped_partial_line {
        println!(
            "a last line cut short by an earlier run was dropped; its message was exported again"
        );
    }
}

pub fn imported(report: &ImportReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    let per_stage: Vec<String> = report
        .by_stage
        .iter()
        .map(|(stage, n)| format!("{stage} {n}"))
        .collect();
    println!(
        "published {} of {} messages from {} ({}), each confirmed by the broker",
        report.published,
        report.lines,
        report.path,
        if per_stage.is_empty() {
            "none".to_owned()
        } else {
            per_stage.join(", ")
        }
    );
    if report.already_in_queue > 0 {
        println!(
            "{} were in their queue already: skipped",
            report.already_in_queue
        );
    }
}

pub fn replayed(report: &ReplayReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    if report.dry_run {
        let rows: Vec<Vec<String>> = report
            .messages
            .iter()
            .map(|m| {
                let p = m.prediction.as_ref();
                let policy = p.and_then(|p| p.policy.as_ref()).map(|d| {
                    let when = if d.applies { "" } else { "if it ran: " };
                    format!("{when}{} (rule {}; given {})", d.decision, d.rule, d.given)
                });
                vec![
                    m.id.clone(),
                    or_dash(m.order_id.as_deref()),
                    or_dash(p.and_then(|p| p.order_state)),
                    or_dash(m.destination.as_deref()),
                    or_dash(policy),
                    p.map(|p| p.stage_will.clone()).unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &[
                "MESSAGE",
                "ORDER",
                "STATE",
                "GOES TO",
                "POLICY NOW",
                "THE STAGE",
            ],
            &rows,
        );
        println!("dry run: {} messages, nothing sent", report.messages.len());
        return;
    }
    let rows: Vec<Vec<String>> = report
        .messages
        .iter()
        .map(|m| {
            let outcome = serde_json::to_value(m.outcome).expect("outcomes serialize");
            vec![
                m.id.clone(),
                or_dash(m.order_id.as_deref()),
                outcome.as_str().unwrap_or_default().to_owned(),
                [m.detail.clone(), m.audit.as_ref().map(audited)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["MESSAGE", "ORDER", "OUTCOME", "DETAIL"], &rows);
    }
    println!(
        "replay {}: {} sent, {} sent before, {} skipped, {} held elsewhere, {} not sent, {} came back",
        report.replay_id,
        report.sent,
        report.already_sent,
        report.skipped,
        report.busy,
        report.not_sent,
        report.came_back
    );
}

pub fn discarded(report: &DiscardReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    for d in &report.discarded {
        println!(
            "discarded {} ({}, order {}): {}",
            d.id,
            d.reason,
            or_dash(d.order_id.as_deref()),
            audited(&d.audit)
        );
    }
}

pub fn edited(report: &EditReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    println!(
        "sent the edited copy of {} as {} to {}; the original is removed",
        report.original_id, report.new_id, report.destination
    );
    println!(
        "sha256 {} -> {}; {}",
        report.before_sha256,
        report.after_sha256,
        audited(&report.audit)
    );
}
