//! `export` and `import`.

use crate::common::{Fleet, TempPath, malformed, step};
use orderflow_broker::admin::{FieldValue, RawProperties, RawPublisher};
use orderflow_core::Stage;
use orderflow_ops::Kind;
use orderflow_ops::exceptions::{self, Record};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

/// The whole queue of `stage` into `path`, as the tester.
async fn export(
    fleet: &Fleet,
    stage: Stage,
    path: &Path,
) -> Result<exceptions::ExportReport, orderflow_ops::Error> {
    exceptions::export(&fleet.queues, &fleet.operator(), stage, path, None).await
}

/// A message with every kind of property and header a tool could set.
async fn park_unusual(fleet: &Fleet) {
    let mut death = BTreeMap::new();
    death.insert("count".to_owned(), FieldValue::I64(3));
    death.insert(
        "reason".to_owned(),
        FieldValue::LongString(b"delivery_limit".to_vec()),
    );
    death.insert(
        "queue".to_owned(),
        FieldValue::LongString(fleet.work(Stage::Payment).into_bytes()),
    );
    let mut headers = BTreeMap::new();
    headers.insert(
        "x-death".to_owned(),
        FieldValue::Array(vec![FieldValue::Table(death)]),
    );
    headers.insert("x-custom-int".to_owned(), FieldValue::I32(-7));
    headers.insert("x-custom-bool".to_owned(), FieldValue::Bool(true));
    headers.insert("x-custom-float".to_owned(), FieldValue::F64(2.5));
    headers.insert(
        "x-custom-binary".to_owned(),
        FieldValue::LongString(vec![0xff, 0xfe, 0x00]),
    );
    headers.insert(
        "x-custom-time".to_owned(),
        FieldValue::Timestamp(1_700_000_000),
    );
    headers.insert(
        "orderflow-order-id".to_owned(),
        FieldValue::LongString(b"o-7".to_vec()),
    );
    let properties = RawProperties {
        content_type: Some("application/octet-stream".into()),
        content_encoding: Some("identity".into()),
        headers: Some(headers),
        delivery_mode: Some(2),
        priority: Some(3),
        correlation_id: Some("c-7".into()),
        reply_to: Some("nobody".into()),
        message_id: Some("unusual-1".into()),
        timestamp: Some(1_700_000_001),
        kind: Some("poison".into()),
        app_id: Some("some-tool".into()),
        ..RawProperties::default()
    };
    let mut publisher = RawPublisher::open(&fleet.connection).await.unwrap();
    publisher
        .publish(
            "",
            &fleet.exceptions(Stage::Payment),
            &[0x00, 0xc3, 0x28, b'{'],
            &properties,
        )
        .await
        .unwrap();
    publisher.close().await;
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn export_then_import_restores_body_and_headers_byte_for_byte() {
    let fleet = Fleet::new().await;
    for n in 0..3 {
        let order = format!("o-{n}");
        fleet
            .park_step(
                Stage::Payment,
                &order,
                &format!("{order}.payment.v4.0"),
                "payment_unresolved",
            )
            .await;
    }
    park_unusual(&fleet).await;
    // Without a message id: named by its body's hash, as the stages do.
    let mut anonymous = malformed("x", "/: not valid JSON");
    anonymous.message_id = None;
    fleet
        .park(Stage::Payment, b"not json at all", anonymous)
        .await;
    // Looked at first: the broker marks them redelivered; export keeps
    // whatever headers the messages carry.
    exceptions::peek(&fleet.queues, Stage::Payment, 10)
        .await
        .unwrap();

    let first = TempPath::new("first.jsonl");
    let report = export(&fleet, Stage::Payment, &first.0).await.unwrap();
    assert_eq!(report.written, 5);
    assert_eq!(report.lines, 5);
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        0,
        "exported means acknowledged"
    );
    let exported = lines(&first.0);
    let records: Vec<Record> = exported.iter().map(|l| Record::parse(l).unwrap()).collect();
    assert_eq!(records[3].id, "unusual-1");
    assert!(
        records[3].body.is_none() && records[3].body_base64.is_some(),
        "not UTF-8: base64"
    );
    assert_eq!(records[3].body_bytes().unwrap(), [0x00, 0xc3, 0x28, b'{']);
    assert!(records[4].id.starts_with("body-"), "{}", records[4].id);
    assert_eq!(records[4].body.as_deref(), Some("not json at all"));

    let imported = exceptions::import(&fleet.queues, &fleet.operator(), &first.0)
        .await
        .unwrap();
    assert_eq!(imported.published, 5);
    assert_eq!(imported.by_stage[&Stage::Payment], 5);
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Payment)).await, 5);
    let again = exceptions::import(&fleet.queues, &fleet.operator(), &first.0)
        .await
        .unwrap();
    assert_eq!(
        again.published, 0,
        "an import rerun skips what is already there"
    );
    assert_eq!(again.already_in_queue, 5);
    // No order of these is in the store: each export is audited in the
    // fleet's stream, and so is the import that published something.
    let notes = fleet.store.fleet_notes(None, 100).await.unwrap();
    let count = |event: &str| notes.iter().filter(|n| n.event == event).count();
    assert_eq!(count("operator.export"), 5, "{notes:?}");
    assert_eq!(count("operator.import"), 1, "{notes:?}");
    let import = notes.iter().find(|n| n.event == "operator.import").unwrap();
    assert_eq!(import.actor, "operator:tester");
    assert!(
        import.reason.as_deref() == Some("5 of 5 lines published (5 to payment)"),
        "{import:?}"
    );

    let second = TempPath::new("second.jsonl");
    export(&fleet, Stage::Payment, &second.0).await.unwrap();
    assert_eq!(
        std::fs::read(&second.0).unwrap(),
        std::fs::read(&first.0).unwrap(),
        "the re-imported messages export to the same bytes"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn an_export_stopped_after_writing_and_before_acking_writes_nothing_twice() {
    let fleet = Fleet::new().await;
    for n in 0..6 {
        let order = format!("o-{n}");
        fleet
            .park_step(
                Stage::Shipping,
                &order,
                &format!("{order}.shipping.v5.0"),
                "stuck",
            )
            .await;
    }
    // The state an export killed at its worst moments leaves: the first
    // message written and synced but not acknowledged, and the second's
    // line cut short.
    let peeked = exceptions::peek(&fleet.queues, Stage::Shipping, 2)
        .await
        .unwrap();
    let out = TempPath::new("stopped.jsonl");
    let mut file = std::fs::File::create(&out.0).unwrap();
    writeln!(file, "{}", peeked[0].record.to_line()).unwrap();
    let second = peeked[1].record.to_line();
    write!(file, "{}", &second[..second.len() / 2]).unwrap();
    drop(file);

    let report = export(&fleet, Stage::Shipping, &out.0).await.unwrap();
    assert!(report.dropped_partial_line);
    assert_eq!(report.already_in_file, 1);
    assert_eq!(report.written, 5);
    assert_eq!(report.lines, 6);
    let ids: Vec<String> = lines(&out.0)
        .iter()
        .map(|l| Record::parse(l).expect("every line whole").id)
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        6,
        "nothing twice: {ids:?}"
    );
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Shipping)).await,
        0,
        "nothing lost"
    );

    // A rerun on an empty queue changes nothing.
    let rerun = export(&fleet, Stage::Shipping, &out.0).await.unwrap();
    assert_eq!((rerun.written, rerun.lines), (0, 6));
    fleet.stop().await;
}

#[tokio::test]
async fn export_refuses_to_append_to_a_file_of_something_else() {
    let fleet = Fleet::new().await;
    fleet
        .park_step(
            Stage::Payment,
            "o-1",
            "o-1.payment.v4.0",
            "payment_unresolved",
        )
        .await;
    let out = TempPath::new("other.jsonl");
    std::fs::write(&out.0, "{\"some\":\"other file\"}\n").unwrap();
    let err = export(&fleet, Stage::Payment, &out.0).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    assert!(err.to_string().contains("line 1"), "{err}");
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        1,
        "nothing taken"
    );
    fleet.stop().await;
}

/// Another export holding the file (here: its lock, taken by the test):
/// an export to it takes nothing, an import of it publishes nothing, both
/// saying so; once it is let go, the export goes ahead.
#[tokio::test]
async fn a_file_another_export_is_writing_is_neither_exported_to_nor_imported() {
    let fleet = Fleet::new().await;
    fleet
        .park_step(
            Stage::Payment,
            "o-1",
            "o-1.payment.v4.0",
            "payment_unresolved",
        )
        .await;
    let out = TempPath::new("held.jsonl");
    let held = std::fs::File::create(&out.0).unwrap();
    held.lock().unwrap();

    let err = export(&fleet, Stage::Payment, &out.0).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Failed, "{err}");
    assert!(err.to_string().contains("an export is writing"), "{err}");
    assert_eq!(
        fleet.depth(&fleet.exceptions(Stage::Payment)).await,
        1,
        "nothing taken"
    );
    let err = exceptions::import(&fleet.queues, &fleet.operator(), &out.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("an export is writing"), "{err}");

    drop(held);
    let report = export(&fleet, Stage::Payment, &out.0).await.unwrap();
    assert_eq!((report.written, report.lines), (1, 1));
    fleet.stop().await;
}

#[tokio::test]
async fn import_checks_every_line_before_publishing_any() {
    let fleet = Fleet::new().await;
    let file = TempPath::new("bad.jsonl");
    let good = Record::new(
        Stage::Inventory,
        "m-1",
        &step("o-1", Stage::Inventory),
        &RawProperties::default(),
    )
    .to_line();
    std::fs::write(&file.0, format!("{good}\nnot a record\n")).unwrap();
    let err = exceptions::import(&fleet.queues, &fleet.operator(), &file.0)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Invalid);
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(fleet.depth(&fleet.exceptions(Stage::Inventory)).await, 0);
    fleet.stop().await;
}
