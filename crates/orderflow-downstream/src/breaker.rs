//! A circuit breaker per downstream and process: closed → open on a high
//! failure or slow-call rate over a sliding window → half-open after
//! `open_for`, letting a few trial calls through → closed when they succeed.
//!
//! No maintained crate does this on tokio time (DEPENDENCIES.md), so it is
//! small and in-house. It uses `tokio::time::Instant`, so tests run on
//! paused time.

use orderflow_core::FailureClass;
use orderflow_core::decide::BreakerState;
use orderflow_core::policy::BreakerPolicy;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Whether a call may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead; report the result with [`Breaker::record`].
    Granted,
    /// The breaker is open: do not call.
    Refused,
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// (when, failed, slow) of recent calls, oldest first.
    calls: VecDeque<(Instant, bool, bool)>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { granted: u32, succeeded: u32 },
}

/// A result the breaker counts against the downstream: it did not answer
/// in a way that shows it is healthy. Business answers are healthy answers.
pub fn counts_as_failure(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::Transient
            | FailureClass::Overloaded
            | FailureClass::Timeout
            | FailureClass::Infrastructure
    )
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            inner: Mutex::new(Inner {
                state: State::Closed,
                calls: VecDeque::new(),
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.advance(&mut inner, Instant::now());
        match inner.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make one call.
    pub fn acquire(&self) -> Permit {
        let mut inner = self.lock();
        self.advance(&mut inner, Instant::now());
        match &mut inner.state {
            State::Closed => Permit::Granted,
            State::Open { .. } => Permit::Refused,
            State::HalfOpen { granted, .. } if *granted < self.policy.half_open_calls => {
                *granted += 1;
                Permit::Granted
            }
            State::HalfOpen { .. } => Permit::Refused,
        }
    }

    /// Reports the result of a granted call.
    pub fn record(&self, class: FailureClass, latency: Duration) {
        let now = Instant::now();
        let failed = counts_as_failure(class);
        let slow = latency > self.policy.slow_call;
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match &mut inner.state {
            State::HalfOpen { .. } if failed || slow => self.trip(&mut inner, now),
            State::HalfOpen { succeeded, .. } => {
                *succeeded += 1;
                if *succeeded >= self.policy.half_open_calls {
                    inner.state = State::Closed;
                    inner.calls.clear();
                }
            }
            State::Open { .. } => {}
            State::Closed => {
                inner.calls.push_back((now, failed, slow));
                self.forget_old(&mut inner, now);
                if self.over_threshold(&inner) {
                    self.trip(&mut inner, now);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked: every
        // update is a single assignment.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn advance(&self, inner: &mut Inner, now: Instant) {
        if let State::Open { until } = inner.state
            && now >= until
        {
            inner.state = State::HalfOpen {
                granted: 0,
                succeeded: 0,
            };
        }
    }

    fn trip(&self, inner: &mut Inner, now: Instant) {
        inner.state = State::Open {
            until: now + self.policy.open_for,
        };
        inner.calls.clear();
    }

    fn forget_old(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(at, _, _)) = inner.calls.front() {
            if now.duration_since(at) <= self.policy.window {
                break;
            }
            inner.calls.pop_front();
        }
    }

    fn over_threshold(&self, inner: &Inner) -> bool {
        let total = inner.calls.len();
        if total < self.policy.min_calls as usize {
            return false;
        }
        let failed = inner.calls.iter().filter(|c| c.1).count();
        let slow = inner.calls.iter().filter(|c| c.2).count();
        let rate = |n: usize| n as f64 / total as f64;
        rate(failed) >= self.policy.failure_rate || rate(slow) >= self.policy.slow_call_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_rate: 0.5,
            slow_call: Duration::from_secs(1),
            slow_call_rate: 0.8,
            open_for: Duration::from_secs(5),
            half_open_calls: 2,
        })
    }

    fn call(b: &Breaker, class: FailureClass) {
        assert_eq!(b.acquire(), Permit::Granted);
        b.record(class, Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_below_the_minimum_call_count_do_not_trip() {
        let b = breaker();
        for _ in 0..3 {
            call(&b, Overloaded);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_storm_opens_then_half_opens_then_closes_on_success() {
        let b = breaker();
        for _ in 0..4 {
            call(&b, Overloaded);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.acquire(), Permit::Refused);

        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        call(&b, Success);
        call(&b, Success);
        assert_eq!(b.acquire(), Permit::Granted, "closed again");
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_only_a_few_trial_calls_through_and_reopens_on_failure() {
        let b = breaker();
        for _ in 0..4 {
            call(&b, Timeout);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.acquire(), Permit::Granted);
        assert_eq!(b.acquire(), Permit::Granted);
        assert_eq!(b.acquire(), Permit::Refused, "only half_open_calls trials");
        b.record(Transient, Duration::from_millis(5));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn business_rejections_are_healthy_answers() {
        let b = breaker();
        for _ in 0..10 {
            call(&b, BusinessRejection);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_trip_the_breaker() {
        let b = breaker();
        for _ in 0..4 {
            assert_eq!(b.acquire(), Permit::Granted);
            b.record(Success, Duration::from_secs(2));
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = breaker();
        for _ in 0..3 {
            call(&b, Overloaded);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        call(&b, Overloaded);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
