//! Idempotency keys as payment providers honour them: the first request with
//! a key runs and its outcome is stored; the same key with the same request
//! replays that outcome, with another request is refused, and while the first
//! is still running is refused as in progress.
//!
//! Keys are scoped per API. Only outcomes are stored: a request that dies
//! before its operation ran (injected 5xx/429, client hang-up) frees its key,
//! so a retry executes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::api::Reply;
use crate::endpoint::Api;

/// What a request asks for, so a reused key can be told apart from a retry.
pub(crate) type Fingerprint = Value;

type Slot = (Api, String);

enum Entry {
    Running {
        fingerprint: Fingerprint,
        ticket: u64,
    },
    Done {
        fingerprint: Fingerprint,
        reply: Reply,
    },
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<Slot, Entry>,
    last_ticket: u64,
}

#[derive(Default, Clone)]
pub(crate) struct IdempotencyStore {
    entries: Arc<Mutex<Entries>>,
}

pub(crate) enum Claim {
    /// First use of the key: run the operation and complete the claim.
    Fresh(KeyClaim),
    /// Same key, same request, already answered.
    Replay(Reply),
    /// Same key, different request.
    Mismatch,
    /// Same key while the first request is still running.
    InProgress,
}

impl IdempotencyStore {
    pub(crate) fn claim(&self, api: Api, key: &str, fingerprint: Fingerprint) -> Claim {
        let mut entries = lock(&self.entries);
        let slot = (api, key.to_owned());
        match entries.by_key.get(&slot) {
            Some(Entry::Done {
                fingerprint: first,
                reply,
            }) if *first == fingerprint => Claim::Replay(reply.clone()),
            Some(Entry::Running {
                fingerprint: first, ..
            }) if *first == fingerprint => Claim::InProgress,
            Some(_) => Claim::Mismatch,
            None => {
                entries.last_ticket += 1;
                let ticket = entries.last_ticket;
                entries.by_key.insert(
                    slot.clone(),
                    Entry::Running {
                        fingerprint,
                        ticket,
                    },
                );
                Claim::Fresh(KeyClaim {
                    entries: Arc::clone(&self.entries),
                    slot,
                    ticket,
                })
            }
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).by_key.clear();
    }
}

/// A key held by a running request; dropped without `complete`, it frees the key.
pub(crate) struct KeyClaim {
    entries: Arc<Mutex<Entries>>,
    slot: Slot,
    /// Tells this claim from a later one on the same key after `/_reset`.
    ticket: u64,
}

impl KeyClaim {
    /// Stores the outcome for replay.
    pub(crate) fn complete(self, reply: Reply) {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.by_key.get_mut(&self.slot)
            && let Entry::Running {
                fingerprint,
                ticket,
            } = entry
            && *ticket == self.ticket
        {
            let fingerprint = std::mem::take(fingerprint);
            *entry = Entry::Done { fingerprint, reply };
        }
    }
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        let mut entries = lock(&self.entries);
        let ours = matches!(
            entries.by_key.get(&self.slot),
            Some(Entry::Running { ticket, .. }) if *ticket == self.ticket
        );
        if ours {
            entries.by_key.remove(&self.slot);
        }
    }
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    // A panic elsewhere cannot leave an entry half-written, so keep serving.
    entries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    fn created() -> Reply {
        Reply::new(StatusCode::CREATED, json!({"payment_id": "pay_1"}))
    }

    #[test]
    fn replays_refuses_and_frees() {
        let store = IdempotencyStore::default();
        let Claim::Fresh(claim) = store.claim(Api::Payment, "k", json!({"a": 1})) else {
            panic!("first use must be fresh");
        };
        assert!(matches!(
            store.claim(Api::Payment, "k", json!({"a": 1})),
            Claim::InProgress
        ));
        assert!(matches!(
            store.claim(Api::Payment, "k", json!({"a": 2})),
            Claim::Mismatch
        ));
        assert!(matches!(
            store.claim(Api::Shipping, "k", json!({"a": 2})),
            Claim::Fresh(_)
        ));
        claim.complete(created());
        match store.claim(Api::Payment, "k", json!({"a": 1})) {
            Claim::Replay(reply) => assert_eq!(reply, created()),
            _ => panic!("completed key must replay"),
        }

        let Claim::Fresh(abandoned) = store.claim(Api::Payment, "other", json!(null)) else {
            panic!("first use must be fresh");
        };
        drop(abandoned);
        assert!(matches!(
            store.claim(Api::Payment, "other", json!(null)),
            Claim::Fresh(_)
        ));
    }

    #[test]
    fn a_claim_from_before_clear_stores_nothing() {
        let store = IdempotencyStore::default();
        let Claim::Fresh(stale) = store.claim(Api::Inventory, "k", json!(1)) else {
            panic!("first use must be fresh");
        };
        store.clear();
        let Claim::Fresh(_current) = store.claim(Api::Inventory, "k", json!(1)) else {
            panic!("cleared key must be fresh");
        };
        stale.complete(created());
        assert!(matches!(
            store.claim(Api::Inventory, "k", json!(1)),
            Claim::InProgress
        ));
    }
}
