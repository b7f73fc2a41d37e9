//! How many calls a process has in flight to one downstream: an adaptive
//! limit (additive increase, multiplicative decrease), so a fleet whose
//! deliveries outnumber what a provider can take at once queues them here
//! instead of collecting "over capacity" answers, tripping its breaker and
//! deferring orders it could have served in turn.
//!
//! The limit starts at the policy's `max_in_flight`. An answer that says
//! the provider is overloaded or rate limited halves it (once per
//! generation: calls sent before the last cut do not cut again); any
//! other answer adds `1 / limit`, about one call per limit's worth of
//! answers. It never goes below one call.

use std::sync::Mutex;
use tokio::sync::Notify;

/// One downstream's in-flight limit in one process.
#[derive(Debug)]
pub struct InFlightLimit {
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    limit: f64,
    max: f64,
    in_flight: u32,
    /// Bumped by every cut; a call remembers the generation it was sent in.
    generation: u64,
}

impl State {
    fn try_take(&mut self) -> Option<u64> {
        if f64::from(self.in_flight) < self.limit.floor() {
            self.in_flight += 1;
            Some(self.generation)
        } else {
            None
        }
    }

    fn finish(&mut self, generation: u64, overloaded: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if overloaded {
            if generation == self.generation {
                self.limit = (self.limit / 2.0).max(1.0);
                self.generation += 1;
            }
        } else {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max);
        }
    }
}

/// A call in flight; give its answer to [`Permit::finish`]. Dropped
/// unfinished (the call was abandoned), it frees its place and teaches
/// the limit nothing.
#[must_use]
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a InFlightLimit,
    generation: u64,
    finished: bool,
}

impl InFlightLimit {
    pub fn new(max_in_flight: u32) -> InFlightLimit {
        let max = f64::from(max_in_flight.max(1));
        InFlightLimit {
            state: Mutex::new(State {
                limit: max,
                max,
                in_flight: 0,
                generation: 0,
            }),
            freed: Notify::new(),
        }
    }

    /// Waits for a place under the limit.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before looking, so a place freed in between wakes
            // this waiter.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(generation) = self.state().try_take() {
                return Permit {
                    limit: self,
                    generation,
                    finished: false,
                };
            }
            freed.await;
        }
    }

    /// The current limit, whole calls.
    pub fn current(&self) -> u32 {
        // The limit lies between 1 and `max_in_flight` (a u32).
        self.state().limit.floor() as u32
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves a valid State behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, generation: u64, overloaded: Option<bool>) {
        {
            let mut state = self.state();
            match overloaded {
                Some(overloaded) => state.finish(generation, overloaded),
                None => state.in_flight = state.in_flight.saturating_sub(1),
            }
        }
        self.freed.notify_waiters();
    }
}

impl Permit<'_> {
    /// The call's answer: `overloaded` when the provider said it is over
    /// capacity or rate limited.
    pub fn finish(mut self, overloaded: bool) {
        self.finished = true;
        self.limit.release(self.generation, Some(overloaded));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.limit.release(self.generation, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn overload_halves_the_limit_once_per_generation_and_answers_grow_it_back() {
        let limit = InFlightLimit::new(16);
        let mut state = *limit.state();
        let sent: Vec<u64> = (0..8).map(|_| state.try_take().unwrap()).collect();
        // Eight calls sent together all come back over capacity: one cut.
        for generation in sent {
            state.finish(generation, true);
        }
        assert_eq!(state.limit, 8.0);
        assert_eq!(state.in_flight, 0);
        let generation = state.try_take().unwrap();
        state.finish(generation, true);
        assert_eq!(state.limit, 4.0, "a call sent after the cut cuts again");
        for _ in 0..4 {
            let generation = state.try_take().unwrap();
            state.finish(generation, false);
        }
        assert!(state.limit > 4.9 && state.limit < 5.0, "{}", state.limit);
        let mut floor = *limit.state();
        for _ in 0..40 {
            let generation = floor.try_take().unwrap();
            floor.finish(generation, true);
        }
        assert_eq!(floor.limit, 1.0, "never below one call");
    }

    #[tokio::test]
    async fn callers_beyond_the_limit_wait_their_turn() {
        let limit = Arc::new(InFlightLimit::new(2));
        let running = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let (limit, running, most) = (limit.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let permit = limit.acquire().await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    permit.finish(false);
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(limit.current(), 2, "capped at max_in_flight");
    }

    #[tokio::test]
    async fn an_abandoned_call_frees_its_place() {
        let limit = InFlightLimit::new(1);
        drop(limit.acquire().await);
        let permit = tokio::time::timeout(Duration::from_secs(1), limit.acquire())
            .await
            .expect("the place was freed");
        permit.finish(false);
    }
}
