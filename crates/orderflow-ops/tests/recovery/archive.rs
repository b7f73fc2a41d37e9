//! An order that retention archived and removed from Redis is still shown,
//! from the archive, saying so; an export of a time range has each order
//! once, even when a crash between the archive's confirm and the removal
//! archived it twice.

use crate::common::{Fleet, amqp_url, to};
use orderflow_broker::{Meta, Publisher};
use orderflow_core::OrderState;
use orderflow_store::{ArchivedOrder, Expired};

async fn archive(fleet: &Fleet, record: &ArchivedOrder, copies: usize) {
    let publisher = Publisher::connect(&amqp_url(), "ops-test").await.unwrap();
    for _ in 0..copies {
        let meta = Meta {
            message_id: Some(format!("{}.archived.{}", record.order_id, record.version)),
            order_id: Some(record.order_id.to_string()),
            order_version: Some(record.version),
            ..Meta::default()
        };
        publisher
            .to_queue(
                &fleet.spec.archive().name,
                serde_json::to_vec(record).unwrap(),
                meta,
            )
            .await
            .unwrap();
    }
    publisher.close().await;
}

#[tokio::test]
async fn an_expired_order_is_shown_from_the_archive_and_exported_once() {
    let fleet = Fleet::new().await;
    let path = [
        to(OrderState::Reserved),
        to(OrderState::Paid),
        to(OrderState::ShipmentAccepted),
        to(OrderState::Delivered),
    ];
    let id = fleet.order("o-archived", &path).await;
    let other = fleet.order("o-other", &[to(OrderState::Rejected)]).await;
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    for (order, copies) in [(&id, 2), (&other, 1)] {
        let record = fleet.store.archive_snapshot(order).await.unwrap().unwrap();
        archive(&fleet, &record, copies).await;
        assert!(matches!(
            fleet.store.expire_archived(&record).await.unwrap(),
            Expired::Removed { .. }
        ));
    }
    assert_eq!(fleet.store.get_order(&id).await.unwrap(), None);

    let view = orderflow_ops::show_order(&fleet.target, id.as_str())
        .await
        .expect("shown from the archive");
    let archived = view.archived.expect("says it was archived");
    assert_eq!(archived.stream, fleet.spec.archive().name);
    assert_eq!(view.state, OrderState::Delivered);
    assert_eq!(view.version, 5);
    assert_eq!(view.timeline.len(), 5, "created and four moves");
    assert!(view.allowed.is_empty());

    let mut out = Vec::new();
    let exported = orderflow_ops::archive::export(
        &fleet.target,
        start,
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((exported.orders, exported.duplicates), (2, 1));
    let lines: Vec<ArchivedOrder> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one archived order a line"))
        .collect();
    let mut ids: Vec<&str> = lines.iter().map(|r| r.order_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["o-archived", "o-other"]);

    // An order never seen is still "not found", not an archive error.
    let err = orderflow_ops::show_order(&fleet.target, "o-never")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
