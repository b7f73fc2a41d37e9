//! Replay records: a replay id sends each message once, a concurrent run
//! keeps off a claimed message, a dead run's claim runs out.

use crate::common::{Backend, TestNs};
use orderflow_store::ReplayClaim;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

both!(a_sent_message_stays_sent_for_its_replay_id_only);
async fn a_sent_message_stays_sent_for_its_replay_id_only(backend: Backend) {
    let t = TestNs::new(backend).await;
    let s = &t.store;
    assert_eq!(
        s.claim_replay("r-1", "m-1", "run-a", MINUTE).await.unwrap(),
        ReplayClaim::Claimed
    );
    assert_eq!(
        s.claim_replay("r-1", "m-1", "run-a", MINUTE).await.unwrap(),
        ReplayClaim::Claimed,
        "the owner asking again keeps its claim"
    );
    assert_eq!(
        s.claim_replay("r-1", "m-1", "run-b", MINUTE).await.unwrap(),
        ReplayClaim::Busy {
            owner: "run-a".into()
        }
    );
    assert!(
        !s.finish_replay("r-1", "m-1", "run-b", MONTH).await.unwrap(),
        "not b's claim"
    );
    assert!(s.finish_replay("r-1", "m-1", "run-a", MONTH).await.unwrap());
    let ReplayClaim::Sent { owner, at_ms } =
        s.claim_replay("r-1", "m-1", "run-c", MINUTE).await.unwrap()
    else {
        panic!("sent");
    };
    assert_eq!(owner, "run-a");
    assert!(at_ms > 0);
    assert!(
        !s.release_replay("r-1", "m-1", "run-a").await.unwrap(),
        "a sent mark stays"
    );
    assert_eq!(
        s.claim_replay("r-2", "m-1", "run-c", MINUTE).await.unwrap(),
        ReplayClaim::Claimed,
        "another replay id may send it again"
    );
}

both!(a_released_or_expired_claim_frees_the_message);
async fn a_released_or_expired_claim_frees_the_message(backend: Backend) {
    let t = TestNs::new(backend).await;
    let s = &t.store;
    s.claim_replay("r-1", "m-1", "run-a", MINUTE).await.unwrap();
    assert!(s.release_replay("r-1", "m-1", "run-a").await.unwrap());
    assert_eq!(
        s.claim_replay("r-1", "m-1", "run-b", Duration::from_millis(100))
            .await
            .unwrap(),
        ReplayClaim::Claimed
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        s.claim_replay("r-1", "m-1", "run-c", MINUTE).await.unwrap(),
        ReplayClaim::Claimed,
        "a dead run's claim runs out"
    );
}

both!(replay_ids_and_message_ids_are_checked);
async fn replay_ids_and_message_ids_are_checked(backend: Backend) {
    let t = TestNs::new(backend).await;
    for (rid, mid) in [("", "m"), ("a b", "m"), ("r", "")] {
        assert!(
            t.store.claim_replay(rid, mid, "o", MINUTE).await.is_err(),
            "{rid:?} {mid:?}"
        );
    }
    assert!(
        t.store
            .claim_replay("r", "m", "o", Duration::ZERO)
            .await
            .is_err()
    );
}
