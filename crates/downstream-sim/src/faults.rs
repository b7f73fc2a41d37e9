//! Injected faults: what goes wrong with one request (drawn from the seeded
//! RNG, so a run replays for the same request order), how each fault looks on
//! the wire, and the per-API capacity limit that models overload.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::sync::watch;

use crate::api::Reply;
use crate::endpoint::Api;
use crate::profile::Faults;

/// The one fault (if any) that hits a request, by whether the operation
/// still happens: the certainty the fleet has to work out from what it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    NotApplied(Failure),
    Applied(Aftermath),
}

/// Faults under which nothing happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Held back for the hang time, then 504.
    Timeout,
    Error500,
    Unavailable503,
    RateLimited429,
    /// `404 not_found`: the key is unknown (or no longer kept).
    NotFound404,
}

/// Faults that strike after the operation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aftermath {
    /// The real response, held back for the hang time.
    Timeout,
    /// The connection breaks instead of the response.
    Reset,
}

/// What happens to one request, decided before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub latency: Duration,
    pub fault: Option<Fault>,
    pub hang: Duration,
    pub retry_after_ms: u64,
}

impl Plan {
    /// Draws latency and at most one fault. One uniform roll is matched
    /// against the probabilities laid end to end, so each fault hits with
    /// exactly its configured probability.
    pub(crate) fn draw(faults: Option<&Faults>, rng: &mut StdRng) -> Plan {
        let Some(faults) = faults else {
            return Plan {
                latency: Duration::ZERO,
                fault: None,
                hang: Duration::ZERO,
                retry_after_ms: 0,
            };
        };
        let [min, max] = faults.latency_ms;
        let latency = Duration::from_millis(rng.random_range(min..=max));
        let roll: f64 = rng.random();
        let odds = [
            (
                faults.timeout_after_apply,
                Fault::Applied(Aftermath::Timeout),
            ),
            (
                faults.timeout_before_apply,
                Fault::NotApplied(Failure::Timeout),
            ),
            (faults.error_500, Fault::NotApplied(Failure::Error500)),
            (
                faults.unavailable_503,
                Fault::NotApplied(Failure::Unavailable503),
            ),
            (
                faults.rate_limited_429,
                Fault::NotApplied(Failure::RateLimited429),
            ),
            (faults.reset_after_apply, Fault::Applied(Aftermath::Reset)),
            (
                faults.not_found_404,
                Fault::NotApplied(Failure::NotFound404),
            ),
        ];
        let mut upper = 0.0;
        let fault = odds.into_iter().find_map(|(probability, fault)| {
            upper += probability;
            (roll < upper).then_some(fault)
        });
        Plan {
            latency,
            fault,
            hang: Duration::from_millis(faults.hang_ms),
            retry_after_ms: faults.retry_after_ms,
        }
    }
}

/// Holds a response back for `duration`, or until the simulator shuts down
/// (so a hanging request never delays shutdown). A client that hangs up
/// first drops the whole request, which ends the wait too.
pub(crate) async fn hang(duration: Duration, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.wait_for(|stopping| *stopping) => {}
    }
}

/// The response of a fault under which nothing was applied (a timeout's
/// response, once its hang is over).
pub(crate) fn failure_response(failure: Failure, plan: &Plan) -> Response {
    match failure {
        Failure::Error500 => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "injected internal error; nothing was applied",
        )
        .into_response(),
        Failure::Unavailable503 => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "injected unavailability; nothing was applied",
        )
        .into_response(),
        Failure::RateLimited429 => {
            let retry_after_secs = plan.retry_after_ms.div_ceil(1000);
            let body = json!({
                "code": "rate_limited",
                "message": "injected rate limit; nothing was applied",
                "retry_after_ms": plan.retry_after_ms,
            });
            let mut response = Reply::new(StatusCode::TOO_MANY_REQUESTS, body).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Failure::NotFound404 => Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "injected: no record under this key (as past the provider's key retention)",
        )
        .into_response(),
        Failure::Timeout => Reply::error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "injected timeout; nothing was applied",
        )
        .into_response(),
    }
}

/// A response whose body fails at once, so hyper aborts the connection
/// before the response is complete: the client sees a broken connection,
/// never the outcome of the operation that did happen.
pub(crate) fn connection_reset(status: StatusCode) -> Response {
    let broken = stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected reset after apply",
        ))
    });
    (status, Body::from_stream(broken)).into_response()
}

/// Requests in flight per API, to refuse those beyond its capacity.
#[derive(Default)]
pub(crate) struct InFlight {
    per_api: [AtomicU32; 3],
}

impl InFlight {
    /// Takes a place for a request, or `None` when `capacity` (0 = unlimited)
    /// is already in use.
    pub(crate) fn admit(&self, api: Api, capacity: u32) -> Option<Place<'_>> {
        let count = &self.per_api[api as usize];
        let before = count.fetch_add(1, Ordering::SeqCst);
        let place = Place { count };
        (capacity == 0 || before < capacity).then_some(place)
    }
}

/// A request's place in its API's capacity, given back on drop.
pub(crate) struct Place<'a> {
    count: &'a AtomicU32,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn certain_faults_always_hit_and_draws_replay_per_seed() {
        let faults = Faults {
            error_500: 1.0,
            latency_ms: [5, 50],
            ..Faults::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let plan = Plan::draw(Some(&faults), &mut rng);
        assert_eq!(plan.fault, Some(Fault::NotApplied(Failure::Error500)));
        assert!((5..=50).contains(&plan.latency.as_millis()));

        let coin = Faults {
            unavailable_503: 0.5,
            ..Faults::default()
        };
        let draws = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..64)
                .map(|_| Plan::draw(Some(&coin), &mut rng).fault)
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        let hits = draws(3).iter().filter(|f| f.is_some()).count();
        assert!((16..=48).contains(&hits), "{hits} of 64");
        assert_eq!(Plan::draw(None, &mut rng).fault, None);
    }

    #[test]
    fn capacity_is_given_back() {
        let in_flight = InFlight::default();
        let first = in_flight.admit(Api::Payment, 1);
        assert!(first.is_some());
        assert!(in_flight.admit(Api::Payment, 1).is_none());
        assert!(in_flight.admit(Api::Shipping, 1).is_some());
        drop(first);
        assert!(in_flight.admit(Api::Payment, 1).is_some());
        assert!(in_flight.admit(Api::Payment, 0).is_some());
    }
}
