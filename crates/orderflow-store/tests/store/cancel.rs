use crate::common::{Backend, TestNs, create, mv, order_id, policy};
use orderflow_core::OrderState::*;
use orderflow_store::{CancelAnswer, CancelAsk, CancelRequest, Error, ErrorClass, Note};

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

both!(a_cancel_request_is_kept_once_and_makes_earlier_readers_decide_again);
async fn a_cancel_request_is_kept_once_and_makes_earlier_readers_decide_again(backend: Backend) {
    let t = TestNs::new(backend).await;
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

both!(a_cancel_without_a_correlation_id_is_audited_under_the_orders);
async fn a_cancel_without_a_correlation_id_is_audited_under_the_orders(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("cancel-corr");
    create(&t.store, &id).await;
    let mut anonymous = note("order.cancel_requested", "no id sent");
    anonymous.correlation_id = String::new();
    t.store.request_cancel(&id, &anonymous).await.unwrap();
    let audit = t.store.order_audit(&id).await.unwrap();
    assert_eq!(audit.last().unwrap().correlation_id, "corr-1");
}

both!(cancelling_an_unknown_order_says_so);
async fn cancelling_an_unknown_order_says_so(backend: Backend) {
    let t = TestNs::new(backend).await;
    let err = t
        .store
        .request_cancel(&order_id("nobody"), &note("order.cancel_requested", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
}

fn ask<'a>(note: &'a Note, customer_id: Option<&'a str>) -> CancelAsk<'a> {
    CancelAsk {
        note,
        customer_id,
        only_in: &[Received, InventoryPending, Reserved],
        message: b"{\"schema\":\"order.cancel/v1\"}",
        message_id: "cancel-msg-1",
    }
}

both!(a_cancel_for_an_order_not_yet_created_is_kept_and_applied_in_its_creation);
async fn a_cancel_for_an_order_not_yet_created_is_kept_and_applied_in_its_creation(
    backend: Backend,
) {
    let t = TestNs::new(backend).await;
    let id = order_id("early-1");
    let first_note = note("order.cancel_requested", "cancelled: changed mind");
    let first = t
        .store
        .ask_cancel(&id, &ask(&first_note, None))
        .await
        .unwrap();
    let CancelAnswer::Kept { kept_at_ms } = first else {
        panic!("kept, not {first:?}");
    };
    // A redelivered copy, or another request, finds the first one kept.
    let second_note = note("order.cancel_requested", "cancelled: again");
    let again = t
        .store
        .ask_cancel(&id, &ask(&second_note, None))
        .await
        .unwrap();
    assert_eq!(again, CancelAnswer::Kept { kept_at_ms });
    let kept = t.store.kept_cancel(&id).await.unwrap().expect("kept");
    assert_eq!(
        (
            kept.reason.as_str(),
            kept.message_id.as_str(),
            kept.kept_at_ms
        ),
        ("cancelled: changed mind", "cancel-msg-1", kept_at_ms)
    );

    create(&t.store, &id).await;
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            record.state,
            record.version,
            record.cancel_requested.as_deref()
        ),
        (Received, 1, Some("cancelled: changed mind"))
    );
    let audit = t.store.order_audit(&id).await.unwrap();
    let steps: Vec<_> = audit
        .iter()
        .map(|e| (e.version, e.from, e.to, e.event.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, None, Received, "order.created", "test"),
            (
                1,
                Some(Received),
                Received,
                "order.cancel_requested",
                "inventory-worker"
            ),
        ]
    );
    assert!(t.store.kept_cancel(&id).await.unwrap().is_none(), "used up");
    assert!(!t.store.drop_kept_cancel(&id, kept_at_ms).await.unwrap());
}

both!(a_kept_replacement_of_another_customers_order_is_not_applied);
async fn a_kept_replacement_of_another_customers_order_is_not_applied(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("early-other");
    let superseded = note("order.superseded", "superseded by ord-b");
    let kept = t
        .store
        .ask_cancel(&id, &ask(&superseded, Some("c-2")))
        .await
        .unwrap();
    assert!(matches!(kept, CancelAnswer::Kept { .. }), "{kept:?}");
    create(&t.store, &id).await; // customer c-1
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(record.cancel_requested, None);
    let audit = t.store.order_audit(&id).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.version, last.event.as_str()),
        (1, "order.supersede_refused")
    );
    assert!(t.store.kept_cancel(&id).await.unwrap().is_none());
}

both!(a_request_checks_the_customer_and_the_state_in_the_same_step);
async fn a_request_checks_the_customer_and_the_state_in_the_same_step(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("ask-existing");
    create(&t.store, &id).await; // customer c-1
    let superseded = note("order.superseded", "superseded by ord-b");
    let other = t
        .store
        .ask_cancel(&id, &ask(&superseded, Some("c-2")))
        .await
        .unwrap();
    assert_eq!(
        other,
        CancelAnswer::OtherCustomer {
            customer_id: "c-1".into()
        }
    );
    t.store
        .transition(&id, &mv(1, Received, Reserved))
        .await
        .unwrap();
    t.store
        .transition(&id, &mv(2, Reserved, Paid))
        .await
        .unwrap();
    let late = t
        .store
        .ask_cancel(&id, &ask(&superseded, Some("c-1")))
        .await
        .unwrap();
    assert_eq!(
        late,
        CancelAnswer::TooLate {
            version: 3,
            state: Paid
        }
    );
    assert_eq!(
        t.store
            .get_order(&id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested,
        None
    );
    assert!(t.store.kept_cancel(&id).await.unwrap().is_none());
}

both!(a_reported_kept_cancel_is_dropped_only_if_it_is_the_one_reported);
async fn a_reported_kept_cancel_is_dropped_only_if_it_is_the_one_reported(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("early-drop");
    let n = note("order.cancel_requested", "cancelled: x");
    let CancelAnswer::Kept { kept_at_ms } = t.store.ask_cancel(&id, &ask(&n, None)).await.unwrap()
    else {
        panic!("kept");
    };
    assert!(!t.store.drop_kept_cancel(&id, kept_at_ms + 1).await.unwrap());
    assert!(t.store.drop_kept_cancel(&id, kept_at_ms).await.unwrap());
    assert!(t.store.kept_cancel(&id).await.unwrap().is_none());
}

both!(fulfilment_progress_remembers_since_when_a_step_was_first_seen);
async fn fulfilment_progress_remembers_since_when_a_step_was_first_seen(backend: Backend) {
    let t = TestNs::new(backend).await;
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
