use crate::common::Fleet;
use orderflow_core::Stage;
use orderflow_ops::Kind;

#[tokio::test]
async fn pausing_and_resuming_a_stage_is_recorded_and_audited() {
    let fleet = Fleet::new().await;
    let paused =
        orderflow_ops::pause_stage(&fleet.target, Stage::Payment, "provider outage", "alice")
            .await
            .unwrap();
    assert!(!paused.already);
    assert_eq!(paused.pause.actor, "operator:alice");
    let stored = fleet
        .store
        .stage_pause(Stage::Payment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.reason, "provider outage");

    let again = orderflow_ops::pause_stage(&fleet.target, Stage::Payment, "again", "bob")
        .await
        .unwrap();
    assert!(again.already);
    assert_eq!(
        again.pause.reason, "provider outage",
        "the first pause stands"
    );

    let resumed =
        orderflow_ops::resume_stage(&fleet.target, Stage::Payment, "provider back", "alice")
            .await
            .unwrap();
    assert_eq!(resumed.ended.unwrap().reason, "provider outage");
    assert!(
        fleet
            .store
            .stage_pause(Stage::Payment)
            .await
            .unwrap()
            .is_none()
    );
    let nothing = orderflow_ops::resume_stage(&fleet.target, Stage::Payment, "again", "alice")
        .await
        .unwrap();
    assert!(nothing.ended.is_none());

    let notes = fleet.store.fleet_notes(None, 10).await.unwrap();
    let seen: Vec<(&str, &str, &str, Option<&str>)> = notes
        .iter()
        .map(|n| {
            (
                n.event.as_str(),
                n.subject.as_str(),
                n.actor.as_str(),
                n.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "stage.paused",
                "stage:payment",
                "operator:alice",
                Some("provider outage")
            ),
            (
                "stage.resumed",
                "stage:payment",
                "operator:alice",
                Some("provider back")
            ),
        ]
    );
    assert_eq!(notes[0].policy_id, fleet.policy.id().to_string());
}

#[tokio::test]
async fn a_pause_needs_a_reason_and_an_operator() {
    let fleet = Fleet::new().await;
    let blank = orderflow_ops::pause_stage(&fleet.target, Stage::Payment, "  ", "alice")
        .await
        .unwrap_err();
    assert_eq!(blank.kind(), Kind::Invalid);
    let nobody = orderflow_ops::pause_stage(&fleet.target, Stage::Payment, "why", "")
        .await
        .unwrap_err();
    assert_eq!(nobody.kind(), Kind::Invalid);
    assert!(
        fleet
            .store
            .stage_pause(Stage::Payment)
            .await
            .unwrap()
            .is_none()
    );
}
