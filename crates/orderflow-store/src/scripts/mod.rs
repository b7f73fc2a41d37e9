//! The Lua scripts, one file each. Redis scripts cannot call each other, so
//! the shared helpers (`time.lua`, `audit.lua`, `lease.lua`) are prepended
//! as text.
//! Every script touches only the keys it is given, and those are either all
//! keys of one order (one hash slot) or a single fleet-wide key, so every
//! script also runs on Redis Cluster.

use redis::Script;

const TIME: &str = include_str!("time.lua");
const AUDIT: &str = include_str!("audit.lua");
const LEASE: &str = include_str!("lease.lua");

pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) lost: Script,
    pub(crate) transition: Script,
    pub(crate) note: Script,
    pub(crate) cancel: Script,
    pub(crate) drop_kept_cancel: Script,
    pub(crate) progress: Script,
    pub(crate) lease_acquire: Script,
    pub(crate) begin: Script,
    pub(crate) lease_renew: Script,
    pub(crate) lease_release: Script,
    pub(crate) schedule_in: Script,
    pub(crate) claim_due: Script,
    pub(crate) index_page: Script,
    pub(crate) finish_claim: Script,
    pub(crate) budget: Script,
    pub(crate) heartbeat: Script,
    pub(crate) pause: Script,
    pub(crate) replay_claim: Script,
    pub(crate) replay_finish: Script,
    pub(crate) expire: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        let with_audit = |body: &str| Script::new(&[TIME, AUDIT, body].join("\n"));
        let with_time = |body: &str| Script::new(&[TIME, body].join("\n"));
        Scripts {
            create: with_audit(include_str!("create.lua")),
            lost: with_audit(include_str!("lost.lua")),
            transition: with_audit(include_str!("transition.lua")),
            note: with_audit(include_str!("note.lua")),
            cancel: with_audit(include_str!("cancel.lua")),
            drop_kept_cancel: Script::new(include_str!("drop_kept_cancel.lua")),
            progress: with_audit(include_str!("progress.lua")),
            lease_acquire: Script::new(&[LEASE, include_str!("lease_acquire.lua")].join("\n")),
            begin: Script::new(&[LEASE, include_str!("begin.lua")].join("\n")),
            lease_renew: Script::new(include_str!("lease_renew.lua")),
            lease_release: Script::new(include_str!("lease_release.lua")),
            schedule_in: with_time(include_str!("schedule_in.lua")),
            claim_due: with_time(include_str!("claim_due.lua")),
            index_page: Script::new(include_str!("index_page.lua")),
            finish_claim: Script::new(include_str!("finish_claim.lua")),
            budget: with_time(include_str!("budget.lua")),
            replay_claim: Script::new(include_str!("replay_claim.lua")),
            replay_finish: with_time(include_str!("replay_finish.lua")),
            heartbeat: with_time(include_str!("heartbeat.lua")),
            pause: with_time(include_str!("pause.lua")),
            expire: Script::new(include_str!("expire.lua")),
        }
    }
}
