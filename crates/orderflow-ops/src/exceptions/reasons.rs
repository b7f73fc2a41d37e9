//! Every exception reason, what it means and what an operator does about
//! it: the one table `exceptions list` recommends from and
//! `docs/runbook.md` shows (a test keeps the runbook's table equal to
//! [`markdown_table`]).

use orderflow_core::Stage;
use serde::Serialize;

/// What to do about one exception reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Guide {
    /// The reason; `{stage}` stands for a stage name.
    pub reason: &'static str,
    /// The stages whose exception queue it is found in.
    pub stages: &'static str,
    pub means: &'static str,
    /// The recommended action, with the commands.
    pub action: &'static str,
}

impl Guide {
    /// Whether `reason` is this guide's reason (for any stage, with
    /// `{stage}`).
    pub fn matches(&self, reason: &str) -> bool {
        match self.reason.split_once("{stage}") {
            None => self.reason == reason,
            Some((before, after)) => Stage::ALL
                .iter()
                .any(|stage| reason == format!("{before}{stage}{after}")),
        }
    }
}

/// The specific reasons come before the `{stage}` patterns they also match.
pub const GUIDES: &[Guide] = &[
    Guide {
        reason: "malformed",
        stages: "inventory",
        means: "The producer's message broke the contract; the problems are in `orderflow-validation-errors` and the body is as it came.",
        action: "fix it with `exceptions edit` (validated, then replayed); `exceptions discard` if it should never have been sent",
    },
    Guide {
        reason: "order_id_conflict",
        stages: "inventory",
        means: "An `order.placed` reused a known order id with a different body; the body is as it came and was not applied.",
        action: "compare with `order show ID`; a different order: `exceptions edit --set order_id=NEW`; a changed copy of the same order: `exceptions discard`",
    },
    Guide {
        reason: "cancel_unknown_order",
        stages: "inventory",
        means: "A cancel (an `order.cancel`, or a replacement order's `supersedes`) was kept for an order id the store does not know and no such order arrived within `exceptions.replay_window`; nothing was cancelled.",
        action: "if the order has arrived since: `exceptions replay`; a wrong id: `exceptions edit --set order_id=ID`; otherwise `exceptions discard`",
    },
    Guide {
        reason: "supersede_other_customer",
        stages: "inventory",
        means: "An `order.placed` whose `supersedes` names another customer's order; the new order was not created and the named order was not touched. The body is as it came.",
        action: "ask the producer which order is meant; the customer's own earlier order: `exceptions edit --set supersedes=ID`; no replacement meant: `exceptions edit` (in `$EDITOR`) without `supersedes`; otherwise `exceptions discard`",
    },
    Guide {
        reason: "cancel_refused",
        stages: "inventory",
        means: "An `order.cancel` for an order that is delivered, blocked or escalated: the fleet does not decide what cancelling means then.",
        action: "decide with the customer: `order cancel ID --reason TEXT` (prints the compensation plan, acts with --yes) or `order unblock ID --decision refund`; then `exceptions discard`",
    },
    Guide {
        reason: "cancel_after_shipment",
        stages: "inventory, shipping",
        means: "The order was cancelled after its shipment was accepted; it is `blocked` for a business decision.",
        action: "`order unblock ID --decision ship|refund --reason TEXT`, then `exceptions discard`",
    },
    Guide {
        reason: "payment_unresolved",
        stages: "payment",
        means: "The charge's outcome stayed unknown past the payment ambiguity window; the order is `escalated`. Nothing was shipped, refunded or released.",
        action: "check the charge at the payment provider, then `order resolve ID --stage payment --outcome succeeded|failed --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "payment_failed_after_shipment",
        stages: "shipping",
        means: "The reconciler found the charge failed or refunded after the shipment was accepted; the order is `escalated` as a financial exception. Nothing was rolled back.",
        action: "recover the payment with the customer or the provider; then `order resolve ID --stage payment --outcome succeeded|failed --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "{stage}_unresolved",
        stages: "inventory, shipping",
        means: "The stage's outcome stayed unknown past its ambiguity window; the order is `escalated`.",
        action: "check the provider by the order's idempotency key, then `order retry ID --stage S`: the stage asks the provider first and goes on from what it finds; then `exceptions discard`",
    },
    Guide {
        reason: "{stage}_unknown_outcome_not_retryable",
        stages: "that stage",
        means: "An unknown outcome from a provider that neither honours idempotency keys nor answers status queries: retrying could do it twice.",
        action: "check the provider by hand; payment: `order resolve ID --stage payment --outcome …`; other stages: `order retry ID --stage S` only if it did not happen; then `exceptions discard`",
    },
    Guide {
        reason: "{stage}_retries_exhausted",
        stages: "that stage",
        means: "Every delay tier was used (or the ambiguity window passed) on transient failures; the order is `escalated`.",
        action: "once the provider is healthy (`orderctl status`): `order retry ID --stage S`; then `exceptions discard`",
    },
    Guide {
        reason: "downstream_infrastructure",
        stages: "that stage",
        means: "A fleet-side error such as an idempotency-key mismatch at the provider; the order is `escalated`.",
        action: "read `orderflow-last-error` and `order show ID`; fix the cause, then `order retry ID --stage S`; then `exceptions discard`",
    },
    Guide {
        reason: "unsupported_destination",
        stages: "shipping",
        means: "The carrier refuses the destination; the order is `blocked` for a business decision. Payment and reservation stand.",
        action: "`order unblock ID --decision refund --reason TEXT`, or fix the address and `order unblock ID --decision ship`; then `exceptions discard`",
    },
    Guide {
        reason: "invalid_address",
        stages: "shipping",
        means: "The carrier refused the address; the order is `blocked` for a business decision.",
        action: "get a valid address, then `order unblock ID --decision ship --reason TEXT` (or `--decision refund`); then `exceptions discard`",
    },
    Guide {
        reason: "{stage}_unavailable_retry_later",
        stages: "shipping",
        means: "The provider was overloaded and the policy fails fast instead of deferring; the order is `blocked`.",
        action: "once the provider is healthy (`orderctl status`): `order unblock ID --decision ship --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "fulfilment_exception",
        stages: "shipping",
        means: "The carrier reported an exception for an accepted shipment; the order is `escalated`.",
        action: "follow it up with the carrier; still on its way: `order retry ID --stage shipping` (the stage finds the accepted shipment and tracking resumes); lost: `order cancel ID --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "fulfilment_stalled",
        stages: "shipping",
        means: "An accepted shipment made no progress for `fulfilment.stall_after`; the order is `escalated`.",
        action: "ask the carrier; moving again: `order retry ID --stage shipping` (tracking resumes); lost: `order cancel ID --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "fulfilment_untracked",
        stages: "shipping",
        means: "The carrier's status query gave no step for an accepted shipment for `fulfilment.stall_after` (404 past its key retention, 5xx, 501 or an open breaker; `orderflow-last-error` says which); the order is `escalated`, nothing rolled back.",
        action: "ask the carrier about the shipment (`order show ID` has its id); once its status query answers for it again: `order retry ID --stage shipping` (tracking resumes) — never while it answers 404, the stage would book it again; lost: `order cancel ID --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "stuck",
        stages: "the owning stage",
        means: "The order stayed in one state past its stage's `deadline`; it is `escalated`.",
        action: "`order show ID` for the last step and `orderctl status` for the stage; then `order retry ID --stage S`; then `exceptions discard`",
    },
    Guide {
        reason: "compensation_refused",
        stages: "that stage",
        means: "A release or refund was refused by the downstream for good; the order is `escalated` with what is still held.",
        action: "settle the reservation or refund with the provider by hand; then `order resolve` / `order cancel ID --reason TEXT`; then `exceptions discard`",
    },
    Guide {
        reason: "order_not_found",
        stages: "any",
        means: "A step message no stage sent (no `orderflow-order-version`) for an order the store does not have: hand-made, stray, or an order purged by hand.",
        action: "restore the store if you can, then `exceptions replay`; a test or stray message: `exceptions discard`",
    },
    Guide {
        reason: "store_lost_writes",
        stages: "any",
        means: "Redis lost writes it had acknowledged: a message about the order was sent at a version the store has not reached (or the store no longer has the order at all, and recorded it again as escalated). The order is escalated; nothing was sent to a provider.",
        action: "compare the providers' records of the order (reservation, charge, shipment) with `order show`, then `order resolve` (payment) or `order cancel`; then `exceptions discard`",
    },
    Guide {
        reason: "dead_lettered_{why}",
        stages: "any",
        means: "The broker dead-lettered the message from the work queue (`delivery_limit`: every delivery failed, e.g. a worker crashing on it; `rejected`). No `orderflow-reason`.",
        action: "find why workers failed (their logs, `orderctl status`); once fixed: `exceptions replay --id MSG_ID`",
    },
];

/// The guide for a reason no other guide names.
pub const UNKNOWN: Guide = Guide {
    reason: "unknown",
    stages: "any",
    means: "No `orderflow-reason` header: put there by hand or by another tool.",
    action: "`exceptions peek` to read it; replay it if it is a valid message of the stage, else `exceptions discard`",
};

/// The guide for `reason`.
pub fn guide(reason: &str) -> &'static Guide {
    if reason.starts_with("dead_lettered_") {
        return GUIDES
            .iter()
            .find(|g| g.reason == "dead_lettered_{why}")
            .unwrap_or(&UNKNOWN);
    }
    GUIDES
        .iter()
        .find(|g| g.matches(reason))
        .unwrap_or(&UNKNOWN)
}

/// The table `docs/runbook.md` carries: reason → recommended action.
pub fn markdown_table() -> String {
    let mut out = String::from("| reason | stage | recommended action |\n|---|---|---|\n");
    for g in GUIDES.iter().chain(std::iter::once(&UNKNOWN)) {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            g.reason,
            g.stages,
            g.action.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_reasons_win_over_patterns() {
        assert_eq!(guide("payment_unresolved").reason, "payment_unresolved");
        assert_eq!(guide("shipping_unresolved").reason, "{stage}_unresolved");
        assert_eq!(
            guide("inventory_retries_exhausted").reason,
            "{stage}_retries_exhausted"
        );
        assert_eq!(
            guide("dead_lettered_delivery_limit").reason,
            "dead_lettered_{why}"
        );
        assert_eq!(guide("no_such_reason").reason, "unknown");
        assert!(!GUIDES[7].matches("warehouse_unresolved"));
    }

    /// docs/messages.md's "Exception queues" table lists every reason the
    /// fleet parks a message with; each has a guide.
    #[test]
    fn every_documented_reason_has_a_guide() {
        let messages = include_str!("../../../../docs/messages.md");
        let table = messages
            .split("## Exception queues")
            .nth(1)
            .expect("docs/messages.md has an Exception queues section");
        let mut checked = 0;
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            let reasons = line.split('|').nth(1).unwrap_or_default();
            for reason in reasons.split('`').skip(1).step_by(2) {
                let concrete = reason.replace("{stage}", "payment");
                assert_ne!(
                    guide(&concrete).reason,
                    "unknown",
                    "{reason} has no guide in GUIDES"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 15,
            "read {checked} reasons from docs/messages.md"
        );
    }

    /// docs/runbook.md's summary table is this table.
    #[test]
    fn the_runbook_carries_this_table() {
        let runbook = include_str!("../../../../docs/runbook.md");
        assert!(
            runbook.contains(&markdown_table()),
            "docs/runbook.md's reason table differs; paste this in:\n{}",
            markdown_table()
        );
        for g in GUIDES {
            assert!(
                runbook.contains(&format!("### `{}`", g.reason)),
                "docs/runbook.md has no section `### `{}``",
                g.reason
            );
        }
    }
}
