use crate::common::{Backend, TestNs, body, create, mv, order_id, policy};
use orderflow_core::OrderState::*;
use orderflow_core::state::TransitionError;
use orderflow_core::{Certainty, FailureClass, Stage};
use orderflow_store::{
    CreateOutcome, Error, ErrorClass, FieldUpdate, LastOutcome, Note, Transition,
};
use serde_json::json;

both!(compare_and_set_moves_the_order_and_sets_its_fields);
async fn compare_and_set_moves_the_order_and_sets_its_fields(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("cas-ok");
    create(&t.store, &id).await;

    let v2 = t
        .store
        .transition(
            &id,
            &Transition {
                fields_to_set: vec![
                    FieldUpdate::DownstreamId {
                        stage: Stage::Inventory,
                        id: "res-9".into(),
                    },
                    FieldUpdate::LastOutcome {
                        stage: Stage::Inventory,
                        outcome: LastOutcome {
                            class: FailureClass::Success,
                            certainty: Certainty::Applied,
                        },
                    },
                ],
                ..mv(1, Received, Reserved)
            },
        )
        .await
        .unwrap();
    assert_eq!(v2, 2);
    let v3 = t
        .store
        .transition(&id, &mv(2, Reserved, Paid))
        .await
        .unwrap();
    assert_eq!(v3, 3);

    let record = t.store.get_order(&id).await.unwrap().expect("order exists");
    assert_eq!(record.state, Paid);
    assert_eq!(record.version, 3);
    assert_eq!(record.reason, None);
    assert_eq!(record.body, body("cas-ok"));
    assert_eq!(record.correlation_id, "corr-1");
    assert_eq!(record.policy_id, policy().as_str());
    assert_eq!(
        record
            .downstream_ids
            .get(&Stage::Inventory)
            .map(String::as_str),
        Some("res-9")
    );
    assert_eq!(record.downstream_ids.get(&Stage::Payment), None);
    assert_eq!(
        record.last_outcomes.get(&Stage::Inventory),
        Some(&LastOutcome {
            class: FailureClass::Success,
            certainty: Certainty::Applied
        })
    );
    assert!(record.updated_at >= record.created_at);
    assert!(
        t.store
            .get_order(&order_id("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

both!(
    two_writers_on_one_version_one_wins_the_other_conflicts,
    multi_thread
);
async fn two_writers_on_one_version_one_wins_the_other_conflicts(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("cas-race");
    create(&t.store, &id).await;
    let (a, b) = (t.connect().await, t.connect().await);

    let (to_reserved, to_rejected) = (mv(1, Received, Reserved), mv(1, Received, Rejected));
    let (ra, rb) = tokio::join!(
        a.transition(&id, &to_reserved),
        b.transition(&id, &to_rejected),
    );
    let (winner, loser) = match (ra, rb) {
        (Ok(v), Err(e)) => ((v, Reserved), e),
        (Err(e), Ok(v)) => ((v, Rejected), e),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert_eq!(winner.0, 2);
    assert_eq!(loser.class(), ErrorClass::Conflict);
    match loser {
        Error::Conflict {
            expected,
            actual_version,
            actual_state,
            ..
        } => {
            assert_eq!((expected, actual_version, actual_state), (1, 2, winner.1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!((record.version, record.state), (2, winner.1));
    // Only the winner is audited.
    assert_eq!(t.store.order_audit(&id).await.unwrap().len(), 2);
}

both!(an_illegal_move_is_refused_before_redis_is_touched);
async fn an_illegal_move_is_refused_before_redis_is_touched(backend: Backend) {
    let t = TestNs::new(backend).await;
    // No such order: had the store asked Redis, this would be NotFound.
    let ghost = order_id("ghost");
    let err = t
        .store
        .transition(&ghost, &mv(1, Received, Paid))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transition(TransitionError::Illegal {
                from: Received,
                to: Paid
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(t.store.get_order(&ghost).await.unwrap().is_none());

    // A legal move on a missing order does reach Redis.
    let err = t
        .store
        .transition(&ghost, &mv(1, Received, Reserved))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");

    let id = order_id("illegal");
    create(&t.store, &id).await;
    assert!(
        t.store
            .transition(&id, &mv(1, Received, Delivered))
            .await
            .is_err()
    );
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!((record.version, record.state), (1, Received));
    assert_eq!(t.store.order_audit(&id).await.unwrap().len(), 1);
}

both!(entering_blocked_needs_a_reason);
async fn entering_blocked_needs_a_reason(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("blocked");
    create(&t.store, &id).await;
    t.store
        .transition(&id, &mv(1, Received, Reserved))
        .await
        .unwrap();
    t.store
        .transition(&id, &mv(2, Reserved, Paid))
        .await
        .unwrap();

    for reason in [None, Some("   ".to_owned())] {
        let err = t
            .store
            .transition(
                &id,
                &Transition {
                    reason,
                    ..mv(3, Paid, Blocked)
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transition(TransitionError::MissingReason { to: Blocked })
            ),
            "{err:?}"
        );
    }
    assert_eq!(t.store.get_order(&id).await.unwrap().unwrap().state, Paid);

    let blocked = Transition {
        reason: Some("unsupported_destination".into()),
        ..mv(3, Paid, Blocked)
    };
    assert_eq!(t.store.transition(&id, &blocked).await.unwrap(), 4);
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!(record.state, Blocked);
    assert_eq!(record.reason.as_deref(), Some("unsupported_destination"));

    // The reason belongs to the state: a move without one clears it.
    t.store
        .transition(&id, &mv(4, Blocked, Paid))
        .await
        .unwrap();
    assert_eq!(t.store.get_order(&id).await.unwrap().unwrap().reason, None);
}

both!(the_idempotency_record_exists_exactly_when_the_move_landed);
async fn the_idempotency_record_exists_exactly_when_the_move_landed(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("idem");
    create(&t.store, &id).await;
    let result = json!({ "reservation_id": "res-1", "next": "payment" });
    let with_record = |expected_version| Transition {
        idempotency: Some((Stage::Inventory, "reserve".to_owned(), result.clone())),
        ..mv(expected_version, Received, Reserved)
    };

    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Inventory, "reserve")
            .await
            .unwrap(),
        None
    );

    // A refused move leaves no record behind.
    let err = t.store.transition(&id, &with_record(7)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Inventory, "reserve")
            .await
            .unwrap(),
        None
    );

    t.store.transition(&id, &with_record(1)).await.unwrap();
    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Inventory, "reserve")
            .await
            .unwrap(),
        Some(result)
    );
    // Scoped to stage and step.
    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Payment, "reserve")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        t.store
            .get_step_result(&id, Stage::Inventory, "release")
            .await
            .unwrap(),
        None
    );
}

both!(create_tells_a_duplicate_from_a_conflicting_order);
async fn create_tells_a_duplicate_from_a_conflicting_order(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("dup");
    let first = t
        .store
        .create_order(&id, &body("dup"), "corr-1", &policy(), "ingress")
        .await
        .unwrap();
    assert_eq!(first, CreateOutcome::Created { version: 1 });
    t.store
        .transition(&id, &mv(1, Received, Reserved))
        .await
        .unwrap();

    // Same body again: a redelivery. Key order inside the JSON does not matter.
    let same: serde_json::Value = serde_json::from_str(
        r#"{"total":1200,"customer_id":"c-1","order_id":"dup","schema":"order.placed/v1"}"#,
    )
    .unwrap();
    match t
        .store
        .create_order(&id, &same, "corr-2", &policy(), "ingress")
        .await
        .unwrap()
    {
        CreateOutcome::AlreadyExists { record, same_body } => {
            assert!(same_body);
            assert_eq!((record.state, record.version), (Reserved, 2));
            assert_eq!(record.correlation_id, "corr-1");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    // A different order under the same id.
    let mut other_body = body("dup");
    other_body["total"] = json!(99);
    match t
        .store
        .create_order(&id, &other_body, "corr-3", &policy(), "ingress")
        .await
        .unwrap()
    {
        CreateOutcome::AlreadyExists { record, same_body } => {
            assert!(!same_body);
            assert_eq!(record.body, body("dup"), "the stored order is untouched");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // Neither attempt wrote anything.
    assert_eq!(t.store.order_audit(&id).await.unwrap().len(), 2);
}

both!(a_note_is_audited_without_moving_the_order);
async fn a_note_is_audited_without_moving_the_order(backend: Backend) {
    let t = TestNs::new(backend).await;
    let id = order_id("note");
    create(&t.store, &id).await;
    let note = Note {
        event: "payment.recheck".into(),
        reason: Some("still unknown".into()),
        actor: "reconciler".into(),
        correlation_id: "corr-9".into(),
        policy_id: policy(),
        rule: Some("payment.pending.recheck".into()),
    };
    assert_eq!(t.store.note(&id, &note).await.unwrap(), 1);
    let record = t.store.get_order(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.version), (Received, 1));

    let audit = t.store.order_audit(&id).await.unwrap();
    assert_eq!(audit.len(), 2);
    let entry = &audit[1];
    assert_eq!(
        (entry.from, entry.to, entry.version),
        (Some(Received), Received, 1)
    );
    assert_eq!(entry.event, "payment.recheck");
    assert_eq!(entry.reason.as_deref(), Some("still unknown"));
    assert_eq!(entry.rule.as_deref(), Some("payment.pending.recheck"));

    // The version it was noted at still works for a move.
    assert_eq!(
        t.store
            .transition(&id, &mv(1, Received, Reserved))
            .await
            .unwrap(),
        2
    );
    let err = t.store.note(&order_id("nobody"), &note).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}
