use crate::common::{Backend, TestNs};
use orderflow_core::Stage;
use orderflow_core::policy::BudgetPolicy;
use orderflow_downstream::RetryBudget;
use orderflow_store::budget::TALLY_FLUSH;
use std::time::Duration;

fn policy(ratio: f64, min_per_window: u32) -> BudgetPolicy {
    BudgetPolicy {
        ratio,
        window: Duration::from_secs(10),
        min_per_window,
    }
}

both!(retries_are_bounded_by_the_ratio_of_first_attempts);
async fn retries_are_bounded_by_the_ratio_of_first_attempts(backend: Backend) {
    let t = TestNs::new(backend).await;
    let policy = policy(0.1, 0);
    for _ in 0..50 {
        t.store
            .record_first_attempt(Stage::Payment, &policy)
            .await
            .unwrap();
    }
    let mut granted = 0;
    for _ in 0..20 {
        if t.store
            .try_spend_retry(Stage::Payment, &policy)
            .await
            .unwrap()
            .granted
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 5, "10% of 50 first attempts");
    assert_eq!(
        t.store
            .budget_left(Stage::Payment, &policy)
            .await
            .unwrap()
            .left,
        0
    );
}

both!(a_quiet_downstream_still_gets_the_minimum);
async fn a_quiet_downstream_still_gets_the_minimum(backend: Backend) {
    let t = TestNs::new(backend).await;
    let policy = policy(0.1, 3);
    let grants: Vec<bool> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(
                t.store
                    .try_spend_retry(Stage::Inventory, &policy)
                    .await
                    .unwrap()
                    .granted,
            );
        }
        out
    };
    assert_eq!(grants, [true, true, true, false]);
}

both!(the_budget_is_shared_by_every_worker_and_kept_per_downstream);
async fn the_budget_is_shared_by_every_worker_and_kept_per_downstream(backend: Backend) {
    let t = TestNs::new(backend).await;
    let other_worker = t.connect().await;
    let policy = policy(0.5, 0);
    for _ in 0..4 {
        t.store
            .record_first_attempt(Stage::Shipping, &policy)
            .await
            .unwrap();
    }
    assert!(
        other_worker
            .try_spend_retry(Stage::Shipping, &policy)
            .await
            .unwrap()
            .granted
    );
    assert!(
        t.store
            .try_spend_retry(Stage::Shipping, &policy)
            .await
            .unwrap()
            .granted
    );
    assert!(
        !other_worker
            .try_spend_retry(Stage::Shipping, &policy)
            .await
            .unwrap()
            .granted
    );
    assert!(
        !t.store
            .try_spend_retry(Stage::Payment, &policy)
            .await
            .unwrap()
            .granted,
        "payment has no first attempts"
    );
}

both!(a_workers_first_attempts_count_with_its_next_retry);
async fn a_workers_first_attempts_count_with_its_next_retry(backend: Backend) {
    // A stage worker spends the budget through `RetryBudget`: its first
    // attempts are tallied in the process and added with its next retry.
    let t = TestNs::new(backend).await;
    let policy = policy(0.1, 0);
    for _ in 0..50 {
        RetryBudget::record_first_attempt(&t.store, Stage::Payment, &policy)
            .await
            .unwrap();
    }
    let mut granted = 0;
    for _ in 0..20 {
        if RetryBudget::try_spend_retry(&t.store, Stage::Payment, &policy)
            .await
            .unwrap()
            .granted
        {
            granted += 1;
        }
    }
    assert_eq!(
        granted, 5,
        "10% of 50 first attempts, none lost in the tally"
    );
}

both!(a_workers_tally_reaches_the_other_workers_within_its_flush_interval);
async fn a_workers_tally_reaches_the_other_workers_within_its_flush_interval(backend: Backend) {
    let t = TestNs::new(backend).await;
    let other_worker = t.connect().await;
    let policy = policy(1.0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // First attempts keep coming, as under load; the tally is added once
    // TALLY_FLUSH has passed since the last time.
    let mut recorded = 0;
    loop {
        RetryBudget::record_first_attempt(&t.store, Stage::Shipping, &policy)
            .await
            .unwrap();
        recorded += 1;
        let left = other_worker
            .budget_left(Stage::Shipping, &policy)
            .await
            .unwrap()
            .left;
        if left > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tally never reached the store"
        );
        tokio::time::sleep(TALLY_FLUSH / 4).await;
    }
    // The worker's retry adds what it still holds: every first attempt
    // arrived, and the retry spent one.
    assert!(
        RetryBudget::try_spend_retry(&t.store, Stage::Shipping, &policy)
            .await
            .unwrap()
            .granted
    );
    let left = other_worker
        .budget_left(Stage::Shipping, &policy)
        .await
        .unwrap()
        .left;
    assert_eq!(left, recorded - 1);
}
