//! The simulator's shared state and the path every downstream request takes:
//! count → validate → capacity → draw faults → idempotency key → latency →
//! fault or operation → response (held back or broken by a fault).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::api::Reply;
use crate::books::{self, Books};
use crate::endpoint::Endpoint;
use crate::faults::{self, Aftermath, Fault, InFlight, Plan};
use crate::idempotency::{Claim, IdempotencyStore};
use crate::profile::{Capabilities, Profile};

/// Everything that changes together under one lock, so `/_reset` and
/// `PUT /_faults` are atomic with respect to requests.
pub(crate) struct World {
    pub profile: Profile,
    /// The one RNG behind every random draw, for reproducible runs.
    pub rng: StdRng,
    pub books: Books,
    pub calls: BTreeMap<Endpoint, u64>,
}

impl World {
    fn new(profile: Profile) -> Self {
        World {
            rng: StdRng::seed_from_u64(profile.seed),
            books: Books::new(profile.inventory.stock.clone()),
            calls: no_calls(),
            profile,
        }
    }

    /// Empties the ledger and call counts, restores stock and reseeds the RNG.
    pub(crate) fn reset(&mut self) {
        self.books.reset(self.profile.inventory.stock.clone());
        self.calls = no_calls();
        self.rng = StdRng::seed_from_u64(self.profile.seed);
    }

    /// Puts a new profile in force. Stock levels are kept (its `stock` is
    /// what the next reset restores); the RNG is reseeded only when the new
    /// profile names a seed, so an unseeded update does not replay draws.
    pub(crate) fn replace_profile(&mut self, mut profile: Profile, names_seed: bool) {
        if names_seed {
            self.rng = StdRng::seed_from_u64(profile.seed);
        } else {
            profile.seed = self.profile.seed;
        }
        self.profile = profile;
    }
}

fn no_calls() -> BTreeMap<Endpoint, u64> {
    Endpoint::ALL
        .into_iter()
        .map(|endpoint| (endpoint, 0))
        .collect()
}

pub(crate) struct Sim {
    world: Mutex<World>,
    pub keys: IdempotencyStore,
    in_flight: InFlight,
    shutdown: watch::Receiver<bool>,
}

/// A request that passed validation, with the idempotency key it carried.
pub(crate) struct Mutation<T> {
    pub key: String,
    pub request: T,
}

impl Sim {
    pub(crate) fn new(profile: Profile, shutdown: watch::Receiver<bool>) -> Self {
        Sim {
            world: Mutex::new(World::new(profile)),
            keys: IdempotencyStore::default(),
            in_flight: InFlight::default(),
            shutdown,
        }
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // Every mutation completes under the lock, so a poisoned lock still
        // holds a consistent world.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a mutating request: validated, then idempotent per the API's
    /// capability, with the endpoint's faults around the operation.
    pub(crate) async fn mutate<T: Serialize + Send>(
        &self,
        endpoint: Endpoint,
        mutation: Result<Mutation<T>, Reply>,
        operation: impl FnOnce(&mut World, &str, T, Timestamp) -> Reply + Send,
    ) -> Response {
        self.count(endpoint);
        let Mutation { key, request } = match mutation {
            Ok(mutation) => mutation,
            Err(reply) => return reply.into_response(),
        };
        let Some((_place, plan, capabilities)) = self.admit(endpoint) else {
            return over_capacity(endpoint);
        };
        let claim = if capabilities.idempotent {
            let fingerprint = json!({ "endpoint": endpoint, "request": request });
            let answered = match self.keys.claim(endpoint.api(), &key, fingerprint) {
                Claim::Fresh(claim) => Ok(claim),
                Claim::Replay(reply) => Err(reply),
                Claim::Mismatch => Err(Reply::error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_mismatch",
                    "this Idempotency-Key was used with a different request",
                )),
                Claim::InProgress => Err(Reply::error(
                    StatusCode::CONFLICT,
                    "request_in_progress",
                    "a request with this Idempotency-Key is still running",
                )),
            };
            match answered {
                Ok(claim) => Some(claim),
                // Answered from the key store, but still subject to the faults.
                Err(reply) => return self.deliver(endpoint, plan, || reply).await,
            }
        } else {
            None
        };
        self.deliver(endpoint, plan, move || {
            let reply = operation(&mut self.world(), &key, request, books::now());
            if let Some(claim) = claim {
                claim.complete(reply.clone());
            }
            reply
        })
        .await
    }

    /// Runs a status query, refused with 501 when the API has none.
    pub(crate) async fn query(
        &self,
        endpoint: Endpoint,
        operation: impl FnOnce(&mut World, Timestamp) -> Reply + Send,
    ) -> Response {
        self.count(endpoint);
        if !self
            .world()
            .profile
            .capabilities(endpoint.api())
            .status_query
        {
            return Reply::error(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                format!("{} has no status query", endpoint.api()),
            )
            .into_response();
        }
        let Some((_place, plan, _)) = self.admit(endpoint) else {
            return over_capacity(endpoint);
        };
        self.deliver(endpoint, plan, || {
            operation(&mut self.world(), books::now())
        })
        .await
    }

    fn count(&self, endpoint: Endpoint) {
        *self.world().calls.entry(endpoint).or_default() += 1;
    }

    /// Takes a place within the API's capacity, then draws the request's
    /// faults (a request refused for capacity draws nothing).
    fn admit(&self, endpoint: Endpoint) -> Option<(faults::Place<'_>, Plan, Capabilities)> {
        let mut world = self.world();
        let capabilities = world.profile.capabilities(endpoint.api()).clone();
        let place = self
            .in_flight
            .admit(endpoint.api(), capabilities.capacity)?;
        let World { profile, rng, .. } = &mut *world;
        Some((
            place,
            Plan::draw(profile.faults(endpoint), rng),
            capabilities,
        ))
    }

    /// Waits out the latency, then either fails without applying, or applies
    /// and answers — possibly late or over a broken connection.
    async fn deliver(
        &self,
        endpoint: Endpoint,
        plan: Plan,
        apply: impl FnOnce() -> Reply + Send,
    ) -> Response {
        tokio::time::sleep(plan.latency).await;
        if let Some(fault) = plan.fault {
            tracing::debug!(%endpoint, ?fault, "injecting fault");
        }
        match plan.fault {
            Some(Fault::NotApplied(failure)) => {
                if failure == faults::Failure::Timeout {
                    faults::hang(plan.hang, self.shutdown.clone()).await;
                }
                faults::failure_response(failure, &plan)
            }
            Some(Fault::Applied(Aftermath::Timeout)) => {
                let reply = apply();
                faults::hang(plan.hang, self.shutdown.clone()).await;
                reply.into_response()
            }
            Some(Fault::Applied(Aftermath::Reset)) => faults::connection_reset(apply().status),
            None => apply().into_response(),
        }
    }
}

fn over_capacity(endpoint: Endpoint) -> Response {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "over_capacity",
        format!("{} is at capacity", endpoint.api()),
    )
    .into_response()
}
