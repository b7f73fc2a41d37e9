//! The exception pages and actions: grouped, opened, replayed (dry run
//! first), discarded, exported and downloaded, against the real broker and
//! store, with every change audited as `operator:alice@console`.

use crate::common::Fleet;
use orderflow_broker::{Meta, admin};
use orderflow_core::{Certainty, FailureClass, OrderState, Stage};
use orderflow_ops::exceptions::reasons::guide;
use serde_json::json;
use std::time::{Duration, Instant};

const ALICE: &str = "operator:alice@console";

/// A step message, as a stage parks it.
fn step(order: &str, stage: Stage) -> Vec<u8> {
    json!({"schema": "orderflow.step/v1", "order_id": order, "stage": stage})
        .to_string()
        .into_bytes()
}

/// The headers of a step message parked by an escalation after four runs
/// with an unknown outcome.
fn escalation(stage: Stage, order: &str, id: &str, reason: &str) -> Meta {
    Meta {
        message_id: Some(id.to_owned()),
        correlation_id: Some(order.to_owned()),
        timestamp: Some(1_764_325_000),
        stage: Some(stage),
        attempt: Some(4),
        // Recent: a replay refuses steps first tried before the replay window.
        first_attempt_at: Some(jiff::Timestamp::now().as_millisecond() - 3_600_000),
        class: Some(FailureClass::Timeout),
        certainty: Some(Certainty::Unknown),
        reason: Some(reason.to_owned()),
        policy_id: Some("pol-old".into()),
        last_error: Some("504 from payment".into()),
        order_id: Some(order.to_owned()),
        ..Meta::default()
    }
}

/// A producer's message the inventory stage refused as malformed.
fn malformed(id: &str, problems: &str) -> Meta {
    Meta {
        message_id: Some(id.to_owned()),
        timestamp: Some(1_764_325_000),
        stage: Some(Stage::Inventory),
        class: Some(FailureClass::Malformed),
        reason: Some("malformed".into()),
        ..Meta::default()
    }
    .with_extra("validation-errors", problems)
}

async fn park_step(fleet: &Fleet, stage: Stage, order: &str, id: &str, reason: &str) {
    fleet
        .park(
            stage,
            &step(order, stage),
            escalation(stage, order, id, reason),
        )
        .await;
}

fn exceptions(fleet: &Fleet, stage: Stage) -> String {
    fleet.spec.names().exception_queue(stage)
}

fn work(fleet: &Fleet, stage: Stage) -> String {
    fleet.spec.names().work_queue(stage)
}

/// The queue's ready messages once they equal `expected`, or after 5 s:
/// the broker returns what a closed reader held a moment after the close.
async fn depth(fleet: &Fleet, queue: &str, expected: u32) -> u32 {
    let started = Instant::now();
    loop {
        let depth = admin::queue_depth(&fleet.connection, queue)
            .await
            .expect("queue depth");
        if depth == expected || started.elapsed() > Duration::from_secs(5) {
            return depth;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Text as the page escapes it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn unescaped(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of the form `id` on the page, to post it as the
/// browser would.
fn hidden_fields(page: &str, id: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no form #{id} in {page}"));
    let form = &page[start..start + page[start..].find("</form>").expect("the form ends")];
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let from = input.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                unescaped(&input[from..from + input[from..].find('"').expect("quoted")])
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn the_list_groups_parked_messages_with_counts_and_the_recommended_action() {
    let fleet = Fleet::new().await;
    let (status, page) = fleet.get("/exceptions").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"empty\""), "empty queues say so: {page}");
    assert!(!page.contains("class=\"group\""), "{page}");

    park_step(
        &fleet,
        Stage::Payment,
        "ord-l1",
        "ord-l1.payment.v3.0",
        "payment_unresolved",
    )
    .await;
    park_step(
        &fleet,
        Stage::Payment,
        "ord-l2",
        "ord-l2.payment.v3.0",
        "payment_unresolved",
    )
    .await;
    park_step(
        &fleet,
        Stage::Shipping,
        "ord-l3",
        "ord-l3.shipping.v4.0",
        "shipping_unresolved",
    )
    .await;
    fleet
        .park(
            Stage::Inventory,
            b"{\"schema\":\"order.placed/v1\"}",
            malformed("bad-1", "order_id: missing"),
        )
        .await;

    let (status, page) = fleet.get("/exceptions").await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("id=\"empty\""), "{page}");
    for row in [
        "<tr class=\"group\" data-stage=\"payment\" data-reason=\"payment_unresolved\" data-count=\"2\">",
        "<tr class=\"group\" data-stage=\"shipping\" data-reason=\"shipping_unresolved\" data-count=\"1\">",
        "<tr class=\"group\" data-stage=\"inventory\" data-reason=\"malformed\" data-count=\"1\">",
    ] {
        assert!(page.contains(row), "no {row} in {page}");
    }
    assert!(
        page.contains(
            "<tr class=\"queue\" data-stage=\"payment\" data-depth=\"2\" data-complete=\"true\">"
        ),
        "{page}"
    );
    for reason in ["payment_unresolved", "shipping_unresolved", "malformed"] {
        let advice = guide(reason).action.split('`').next().unwrap();
        assert!(!advice.is_empty());
        assert!(
            page.contains(&escaped(advice)),
            "no action for {reason}: {page}"
        );
    }
    assert!(
        page.contains("href=\"/exceptions/payment?reason=payment_unresolved\""),
        "{page}"
    );
    assert!(page.contains("href=\"/orders/ord-l1\""), "{page}");
    assert_eq!(
        depth(&fleet, &exceptions(&fleet, Stage::Payment), 2).await,
        2,
        "listing consumes nothing"
    );
}

#[tokio::test]
async fn a_stage_page_shows_each_message_with_its_body_and_headers() {
    let fleet = Fleet::new().await;
    park_step(
        &fleet,
        Stage::Payment,
        "ord-s1",
        "ord-s1.payment.v3.0",
        "payment_unresolved",
    )
    .await;
    fleet
        .park(
            Stage::Payment,
            &step("ord-s2", Stage::Payment),
            escalation(
                Stage::Payment,
                "ord-s2",
                "ord-s2.payment.v3.0",
                "payment_retries_exhausted",
            )
            .with_extra("note", "<b>not markup</b>"),
        )
        .await;

    let (status, page) = fleet.get("/exceptions/payment").await;
    assert_eq!(status, 200, "{page}");
    for id in ["ord-s1.payment.v3.0", "ord-s2.payment.v3.0"] {
        assert!(
            page.contains(&format!("<tr class=\"message\" data-id=\"{id}\"")),
            "{page}"
        );
        assert!(
            page.contains(&format!("name=\"id\" value=\"{id}\"")),
            "{page}"
        );
    }
    let body = String::from_utf8(step("ord-s1", Stage::Payment)).unwrap();
    assert!(
        page.contains(&escaped(&body)),
        "the body as it came: {page}"
    );
    assert!(page.contains("<details>"), "{page}");
    assert!(
        page.contains("orderflow-last-error") && page.contains("504 from payment"),
        "{page}"
    );
    assert!(page.contains("orderflow-attempt"), "{page}");
    assert!(
        page.contains("&lt;b&gt;not markup&lt;/b&gt;") && !page.contains("<b>not markup"),
        "headers are escaped: {page}"
    );
    assert!(page.contains("href=\"/orders/ord-s1\""), "{page}");
    assert!(page.contains("data-select-all=\"id\""), "{page}");
    for form in ["replay-form", "discard-form", "export-form"] {
        assert!(
            page.contains(&format!("id=\"{form}\"")),
            "no #{form}: {page}"
        );
    }

    let (status, page) = fleet
        .get("/exceptions/payment?reason=payment_unresolved")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("data-id=\"ord-s1.payment.v3.0\""), "{page}");
    assert!(
        !page.contains("data-id=\"ord-s2.payment.v3.0\""),
        "filtered by reason: {page}"
    );
    assert!(
        page.contains("name=\"group_reason\" value=\"payment_unresolved\""),
        "{page}"
    );
    assert!(page.contains("id=\"guide\""), "{page}");

    let (status, page) = fleet.get("/exceptions/shipping").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"empty\""), "{page}");
}

#[tokio::test]
async fn a_bad_stage_is_refused_with_the_valid_ones() {
    let fleet = Fleet::new().await;
    let (status, page) = fleet.get("/exceptions/shipment").await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("inventory, payment, shipping"), "{page}");
    assert!(page.contains("/exceptions/payment"), "{page}");
    let (status, page) = fleet
        .post(
            "/exceptions/billing/replay",
            &[("id", "x"), ("scope", "selected")],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("unknown stage `billing`"), "{page}");
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_the_real_replay_sends_once_audited() {
    let fleet = Fleet::new().await;
    let order = fleet
        .order("ord-r1", &[(OrderState::Reserved, None)], vec![])
        .await;
    let id = "ord-r1.payment.v2.0";
    park_step(
        &fleet,
        Stage::Payment,
        "ord-r1",
        id,
        "payment_retries_exhausted",
    )
    .await;
    let (parked, queued) = (
        exceptions(&fleet, Stage::Payment),
        work(&fleet, Stage::Payment),
    );

    let (status, page) = fleet
        .post(
            "/exceptions/payment/replay",
            &[
                ("dry_run", "true"),
                ("scope", "selected"),
                ("id", id),
                ("rate", ""),
                ("canary", "0"),
                ("halt", ""),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("data-dry-run=\"true\""), "{page}");
    assert!(
        page.contains(&format!("data-id=\"{id}\" data-outcome=\"planned\"")),
        "{page}"
    );
    assert!(
        page.contains("runs again: the order is reserved"),
        "the prediction: {page}"
    );
    assert!(page.contains("id=\"replay-for-real\""), "{page}");
    assert_eq!(
        depth(&fleet, &parked, 1).await,
        1,
        "a dry run leaves the message"
    );
    assert_eq!(
        depth(&fleet, &queued, 0).await,
        0,
        "a dry run sends nothing"
    );
    assert!(
        !fleet
            .audit(&order)
            .await
            .iter()
            .any(|e| e.event == "operator.replay"),
        "a dry run audits nothing"
    );

    let real = hidden_fields(&page, "replay-real-form");
    let replay_id = real
        .iter()
        .find(|(k, _)| k == "replay_id")
        .map(|(_, v)| v.clone())
        .expect("the dry run's replay id is carried");
    assert!(
        real.contains(&("dry_run".into(), "false".into())),
        "{real:?}"
    );
    assert!(real.contains(&("id".into(), id.into())), "{real:?}");

    let (status, page) = fleet
        .post("/exceptions/payment/replay", &pairs(&real))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("data-replay-id=\"{replay_id}\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("data-id=\"{id}\" data-outcome=\"sent\"")),
        "{page}"
    );
    assert!(
        page.contains("class=\"flash good\" id=\"summary\""),
        "a finished replay: {page}"
    );
    assert_eq!(depth(&fleet, &queued, 1).await, 1, "sent to the work queue");
    assert_eq!(
        depth(&fleet, &parked, 0).await,
        0,
        "the original is acknowledged"
    );
    let replays: Vec<_> = fleet
        .audit(&order)
        .await
        .into_iter()
        .filter(|e| e.event == "operator.replay")
        .collect();
    assert_eq!(replays.len(), 1, "{replays:?}");
    assert_eq!(replays[0].actor, ALICE);
    assert!(
        replays[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains(&replay_id),
        "{replays:?}"
    );

    // A double submit of "Replay for real" finds the replay id's record.
    let (status, page) = fleet
        .post("/exceptions/payment/replay", &pairs(&real))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("data-id=\"{id}\" data-outcome=\"already_sent\"")),
        "{page}"
    );
    assert_eq!(depth(&fleet, &queued, 1).await, 1, "not sent twice");
    let replays = fleet
        .audit(&order)
        .await
        .into_iter()
        .filter(|e| e.event == "operator.replay")
        .count();
    assert_eq!(replays, 1);

    // Without the dry run's id, a real replay is refused.
    let (status, page) = fleet
        .post(
            "/exceptions/payment/replay",
            &[("dry_run", "false"), ("scope", "selected"), ("id", id)],
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("dry run"), "{page}");
}

#[tokio::test]
async fn a_group_replay_for_an_unknown_order_is_audited_in_the_fleet_stream() {
    let fleet = Fleet::new().await;
    let id = "ord-ghost.payment.v2.0";
    park_step(
        &fleet,
        Stage::Payment,
        "ord-ghost",
        id,
        "payment_retries_exhausted",
    )
    .await;
    park_step(
        &fleet,
        Stage::Payment,
        "ord-other",
        "ord-other.payment.v3.0",
        "payment_unresolved",
    )
    .await;
    let (parked, queued) = (
        exceptions(&fleet, Stage::Payment),
        work(&fleet, Stage::Payment),
    );

    let (status, page) = fleet
        .post(
            "/exceptions/payment/replay",
            &[
                ("dry_run", "true"),
                ("scope", "group"),
                ("group_reason", "payment_retries_exhausted"),
                ("rate", "50"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("data-id=\"{id}\" data-outcome=\"planned\"")),
        "{page}"
    );
    assert!(
        !page.contains("data-id=\"ord-other.payment.v3.0\""),
        "only the group: {page}"
    );
    assert!(page.contains("order_not_found"), "the prediction: {page}");
    let real = hidden_fields(&page, "replay-real-form");
    assert!(real.contains(&("scope".into(), "group".into())), "{real:?}");
    assert!(real.contains(&("rate".into(), "50".into())), "{real:?}");

    let (status, page) = fleet
        .post("/exceptions/payment/replay", &pairs(&real))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("data-id=\"{id}\" data-outcome=\"sent\"")),
        "{page}"
    );
    assert!(page.contains("fleet audit entry"), "{page}");
    assert_eq!(depth(&fleet, &queued, 1).await, 1);
    assert_eq!(depth(&fleet, &parked, 1).await, 1, "the other reason stays");
    let notes = fleet
        .store
        .fleet_notes(None, 100)
        .await
        .expect("fleet audit");
    let note = notes
        .iter()
        .find(|n| n.event == "operator.replay")
        .unwrap_or_else(|| panic!("no replay in {notes:?}"));
    assert_eq!(note.actor, ALICE);
    assert!(note.subject.contains(id), "{note:?}");
}

#[tokio::test]
async fn discard_needs_a_reason_and_removes_exactly_the_selected_message() {
    let fleet = Fleet::new().await;
    let order = fleet
        .order("ord-d1", &[(OrderState::Reserved, None)], vec![])
        .await;
    park_step(
        &fleet,
        Stage::Payment,
        "ord-d1",
        "ord-d1.payment.v2.0",
        "payment_unresolved",
    )
    .await;
    park_step(
        &fleet,
        Stage::Payment,
        "ord-d2",
        "ord-d2.payment.v2.0",
        "payment_unresolved",
    )
    .await;
    let parked = exceptions(&fleet, Stage::Payment);

    for reason in ["", "   "] {
        let (status, page) = fleet
            .post(
                "/exceptions/payment/discard",
                &[("id", "ord-d1.payment.v2.0"), ("reason", reason)],
            )
            .await;
        assert_eq!(status, 400, "{page}");
        assert!(
            page.contains("say why") && page.contains("Nothing was removed"),
            "{page}"
        );
    }
    assert_eq!(depth(&fleet, &parked, 2).await, 2, "nothing removed");

    let (status, page) = fleet
        .post(
            "/exceptions/payment/discard",
            &[
                ("id", "ord-d1.payment.v2.0"),
                ("reason", "charge resolved with the provider"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<tr class=\"discarded\" data-id=\"ord-d1.payment.v2.0\">"),
        "{page}"
    );
    assert!(page.contains("noted on order"), "{page}");
    assert_eq!(depth(&fleet, &parked, 1).await, 1);
    let (_, page) = fleet.get("/exceptions/payment").await;
    assert!(
        page.contains("data-id=\"ord-d2.payment.v2.0\""),
        "the other stays: {page}"
    );
    assert!(!page.contains("data-id=\"ord-d1.payment.v2.0\""), "{page}");
    let discards: Vec<_> = fleet
        .audit(&order)
        .await
        .into_iter()
        .filter(|e| e.event == "operator.discard")
        .collect();
    assert_eq!(discards.len(), 1, "{discards:?}");
    assert_eq!(discards[0].actor, ALICE);
    assert!(
        discards[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("charge resolved with the provider"),
        "{discards:?}"
    );
}

/// The export directory of the fleet's console, removed at the end.
struct ExportDir(std::path::PathBuf);

impl ExportDir {
    fn of(fleet: &Fleet) -> ExportDir {
        ExportDir(std::env::temp_dir().join(format!("{}-exports", fleet.ns)))
    }
}

impl Drop for ExportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn export_writes_a_jsonl_file_that_the_download_serves() {
    let fleet = Fleet::new().await;
    let dir = ExportDir::of(&fleet);
    for n in 1..=3 {
        let order = format!("ord-e{n}");
        park_step(
            &fleet,
            Stage::Shipping,
            &order,
            &format!("{order}.shipping.v4.0"),
            "shipping_unresolved",
        )
        .await;
    }

    let (status, page) = fleet.post("/exceptions/shipping/export", &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("data-written=\"3\" data-lines=\"3\""),
        "{page}"
    );
    let from = page.find("data-file=\"").expect("the file is named") + "data-file=\"".len();
    let file = &page[from..from + page[from..].find('"').unwrap()];
    assert!(
        file.starts_with(&format!("{}-shipping-", fleet.ns)) && file.ends_with("Z.jsonl"),
        "{file}"
    );
    let written = std::fs::read_to_string(dir.0.join(file)).expect("the export file");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 3, "{written}");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(record["format"], "orderflow.exception/v1");
        assert_eq!(record["stage"], "shipping");
    }
    assert_eq!(
        depth(&fleet, &exceptions(&fleet, Stage::Shipping), 0).await,
        0,
        "moved out"
    );
    assert!(
        page.contains(&format!("href=\"/exceptions/exports/{file}\"")),
        "{page}"
    );

    let response = fleet
        .http
        .get(format!("{}/exceptions/exports/{file}", fleet.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert_eq!(response.text().await.unwrap(), written);
}

/// A double-click on Export: two requests for one queue at the same
/// moment. Every message leaves the queue with exactly one whole line in
/// one export file; the second request is told an export is running.
#[tokio::test]
async fn two_exports_of_one_queue_at_once_lose_nothing() {
    const MESSAGES: usize = 300;
    let fleet = Fleet::new().await;
    let dir = ExportDir::of(&fleet);
    let mut expected = std::collections::HashSet::new();
    for n in 0..MESSAGES {
        let order = format!("ord-x{n}");
        let id = format!("{order}.payment.v4.0");
        park_step(&fleet, Stage::Payment, &order, &id, "payment_unresolved").await;
        expected.insert(id);
    }

    let (first, second) = tokio::join!(
        fleet.post("/exceptions/payment/export", &[]),
        fleet.post("/exceptions/payment/export", &[]),
    );
    for (status, page) in [&first, &second] {
        assert!(
            *status == 200 || (*status == 409 && page.contains("export of the payment")),
            "{status}: {page}"
        );
    }
    assert!(
        first.0 == 200 || second.0 == 200,
        "one of them exported: {first:?} {second:?}"
    );

    assert_eq!(
        depth(&fleet, &exceptions(&fleet, Stage::Payment), 0).await,
        0,
        "every message left the queue"
    );
    let mut ids = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&dir.0).expect("the export directory") {
        let written = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in written.lines() {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line cut or overwritten ({e}): {line}"));
            let id = record["id"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "{id} exported twice");
        }
    }
    assert_eq!(
        ids.len(),
        MESSAGES,
        "{} of {MESSAGES} messages left the queue without a line",
        MESSAGES - ids.len()
    );
    assert_eq!(ids, expected);
}

/// An export file is served only once its export has finished: a copy
/// taken halfway would miss the lines still to come.
#[tokio::test]
async fn an_export_still_being_written_is_not_served() {
    let fleet = Fleet::new().await;
    let dir = ExportDir::of(&fleet);
    std::fs::create_dir_all(&dir.0).unwrap();
    let name = format!("{}-payment-20261128T054043Z.jsonl", fleet.ns);
    let writing = std::fs::File::create(dir.0.join(&name)).unwrap();
    // What an export holds while it writes (crates/orderflow-ops' export).
    writing.lock().unwrap();

    let (status, page) = fleet.get(&format!("/exceptions/exports/{name}")).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("an export is writing"), "{page}");

    drop(writing);
    let (status, page) = fleet.get(&format!("/exceptions/exports/{name}")).await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn the_download_serves_only_plain_export_names() {
    let fleet = Fleet::new().await;
    let dir = ExportDir::of(&fleet);
    std::fs::create_dir_all(&dir.0).unwrap();
    let outside = std::env::temp_dir().join(format!("{}-secret.jsonl", fleet.ns));
    std::fs::write(&outside, "TOP-SECRET-CONTENT\n").unwrap();

    for path in [
        format!("..%2F{}-secret.jsonl", fleet.ns),
        "%2Fetc%2Fpasswd".to_owned(),
        "..%5C..%5Csecret.jsonl".to_owned(),
        ".hidden.jsonl".to_owned(),
    ] {
        let (status, page) = fleet.get(&format!("/exceptions/exports/{path}")).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(!page.contains("TOP-SECRET-CONTENT"), "{page}");
    }
    let (status, page) = fleet.get("/exceptions/exports/missing.jsonl").await;
    assert_eq!(status, 404, "{page}");
    let _ = std::fs::remove_file(outside);
}

#[tokio::test]
async fn an_edited_message_is_checked_then_sent_and_the_original_removed() {
    let fleet = Fleet::new().await;
    let mut broken = crate::common::placed("ord-x1");
    broken["shipping_address"]["country"] = json!("");
    let original = serde_json::to_vec(&broken).unwrap();
    fleet
        .park(
            Stage::Inventory,
            &original,
            malformed("bad-x1", "shipping_address.country: empty"),
        )
        .await;
    let (parked, queued) = (
        exceptions(&fleet, Stage::Inventory),
        work(&fleet, Stage::Inventory),
    );

    let (_, page) = fleet.get("/exceptions/inventory").await;
    assert!(
        page.contains("href=\"/exceptions/inventory/edit?id=bad-x1\""),
        "{page}"
    );
    let (status, page) = fleet.get("/exceptions/inventory/edit?id=bad-x1").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"edit-form\""), "{page}");
    assert!(
        page.contains("&quot;country&quot;: &quot;&quot;"),
        "pretty-printed: {page}"
    );
    let form = hidden_fields(&page, "edit-form");
    let with_body = |body: &str| {
        let mut fields = form.clone();
        fields.push(("body".into(), body.into()));
        fields
    };

    let unchanged = serde_json::to_string_pretty(&broken).unwrap();
    let (status, page) = fleet
        .post("/exceptions/inventory/edit", &pairs(&with_body(&unchanged)))
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("unchanged"), "{page}");
    let (status, page) = fleet
        .post(
            "/exceptions/inventory/edit",
            &pairs(&with_body("{\"schema\":\"order.placed/v1\"}")),
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("id=\"edit-form\"") && page.contains("still in the queue"),
        "{page}"
    );
    assert_eq!(
        depth(&fleet, &parked, 1).await,
        1,
        "a refused edit leaves the original"
    );
    assert_eq!(depth(&fleet, &queued, 0).await, 0, "and sends nothing");

    let fixed = unchanged.replace("\"country\": \"\"", "\"country\": \"DE\"");
    let (status, page) = fleet
        .post("/exceptions/inventory/edit", &pairs(&with_body(&fixed)))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"result\" data-new-id=\"bad-x1.edit-"),
        "{page}"
    );
    assert!(page.contains("was sent as"), "{page}");
    assert_eq!(
        depth(&fleet, &parked, 0).await,
        0,
        "the original is removed"
    );
    assert_eq!(
        depth(&fleet, &queued, 1).await,
        1,
        "the fixed copy goes to the stage"
    );
    let notes = fleet
        .store
        .fleet_notes(None, 100)
        .await
        .expect("fleet audit");
    assert!(
        notes
            .iter()
            .any(|n| n.event == "operator.edit" && n.actor == ALICE),
        "the edit of a message for an unknown order is audited in the fleet stream: {notes:?}"
    );
}
