use crate::common::{TestNs, create, mv, order_id, policy};
use orderflow_core::OrderState::*;
use orderflow_store::{CancelRequest, Error, ErrorClass, Note};

fn note(event: &str, reason: &str) -> Note {
    Note {
        event: event.into(),
        reason: Some(reason.into()),
        actor: "inventory-worker".into(),
        correlation_id: "corr-c".into(),
        policy_id: policy(),
        rule: None,
    }
}

#[tokio::test]
async fn a_cancel_request_is_kept_once_and_makes_earlier_readers_decide_again() {
    let t = TestNs::new().await;
    let id = order_id("cancel-1");
    create(&t.store, &id).await;

    let first = t
        .store
        .request_cancel(
            &id,
            &note("order.cancel_requested", "customer changed mind"),
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        CancelRequest::Recorded {
            version: 2,
            state: Received
        }
    );
    let again = t
        .store
        .request_cancel(&id, &note("order.cancel_requested", "second ask"))
        .await
        .unwrap();
    assert_eq!(
        again,
        CancelRequest::AlreadyRequested {
            version: 2,
            state: Received,
            reason: "customer changed mind".into()
        }
    );

    // A worker that read version 1 must not move the order on stale facts.
    let stale = t.store.transition(&id, &mv(1, Received, Reserved)).await;
    assert!(matches!(stale, Err(err) if err.class() == ErrorClass::Conflict));
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(
        record.cancel_requested.as_deref(),
        Some("customer changed mind")
    );
    assert_eq!(record.state, Received);

    let audit = t.store.order_audit(&id).await.unwrap();
    let entry = audit.last().unwrap();
    assert_eq!(
        (entry.version, entry.from, entry.to, entry.event.as_str()),
        (2, Some(Received), Received, "order.cancel_requested")
    );
}

#[tokio::test]
async fn a_cancel_without_a_correlation_id_is_audited_under_the_orders() {
    let t = TestNs::new().await;
    let id = order_id("cancel-corr");
    create(&t.store, &id).await;
    let mut anonymous = note("order.cancel_requested", "no id sent");
    anonymous.correlation_id = String::new();
    t.store.request_cancel(&id, &anonymous).await.unwrap();
    let audit = t.store.order_audit(&id).await.unwrap();
    assert_eq!(audit.last().unwrap().correlation_id, "corr-1");
}

#[tokio::test]
async fn cancelling_an_unknown_order_says_so() {
    let t = TestNs::new().await;
    let err = t
        .store
        .request_cancel(&order_id("nobody"), &note("order.cancel_requested", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
}

#[tokio::test]
async fn fulfilment_progress_remembers_since_when_a_step_was_first_seen() {
    let t = TestNs::new().await;
    let id = order_id("track-1");
    create(&t.store, &id).await;

    let picking = t
        .store
        .record_progress(&id, "picking", &note("fulfilment.picking", "picking"))
        .await
        .unwrap();
    assert!(picking.new);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let same = t
        .store
        .record_progress(&id, "picking", &note("fulfilment.picking", "picking"))
        .await
        .unwrap();
    assert!(!same.new);
    assert_eq!(same.since_ms, picking.since_ms);
    let packed = t
        .store
        .record_progress(&id, "packed", &note("fulfilment.packed", "packed"))
        .await
        .unwrap();
    assert!(packed.new && packed.since_ms > picking.since_ms);

    // Progress is a note: the version does not move, each new step is audited.
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(record.version, 1);
    let events: Vec<String> = t
        .store
        .order_audit(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        ["order.created", "fulfilment.picking", "fulfilment.packed"]
    );
}
