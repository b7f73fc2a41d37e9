//! Settling the confirms of one pipelined publishing channel.
//!
//! The broker confirms a pipelined channel's publishes in batches (one
//! `basic.ack` with `multiple` for many), and lapin resolves every confirm
//! of a batch at once. It hands a returned (unroutable) message to
//! whichever confirm of the batch it resolves first, not to the publish it
//! belongs to. So one task per channel ([`settle`]) answers the publishes,
//! pairing returned messages with them by exchange, routing key and message
//! id, and answers a publish only once it has seen every confirm that could
//! carry that publish's return.
//!
//! Why it sees them all: the broker sends a return before the confirm of
//! the same publish, so the confirm carrying it resolves no later than the
//! publish's own. Every publish is numbered before it is sent, so when a
//! resolved confirm is seen, every confirm that resolved with or before it
//! belongs to a publish numbered by then. The task waits until each of
//! those has been handed over, collects what has resolved, and then
//! answers. A publish is sent by a task of its own, so a caller that stops
//! waiting cannot drop a confirm (and a return with it) on the way.
//!
//! The task also counts nacks in a row ([`NackStreak`]): a channel that
//! keeps being nacked is worn out and the publisher opens another.

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::{Confirmation, PublisherConfirm};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Which publish a returned message answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Route {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) message_id: Option<String>,
}

/// What the broker said about one publish.
pub(crate) enum Outcome {
    Stored,
    Unroutable,
    Nacked,
    /// lapin could not send it, or the channel closed before the confirm.
    Failed(lapin::Error),
}

/// The publishing side of one channel's settling task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Confirms {
    to_settle: mpsc::UnboundedSender<Handover>,
    counters: Arc<Counters>,
}

/// A numbered publish, not yet sent.
pub(crate) struct Asker {
    route: Route,
    sequence: u64,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Counters {
    /// The last number given to a publish.
    numbered: AtomicU64,
    /// Numbered and not answered yet.
    in_flight: AtomicUsize,
    /// The channel was nacked [`NackStreak::LIMIT`] times in a row.
    worn_out: AtomicBool,
}

/// Nacks in a row on one channel. RabbitMQ 3.10 nacks every publish of a
/// channel to a quorum queue whose leader was re-elected until the channel
/// is reopened; a full queue (`reject-publish`) nacks too, and a fresh
/// channel does no harm there. So after a few nacks in a row, reopen.
#[derive(Debug, Default)]
pub(crate) struct NackStreak {
    in_a_row: u32,
}

impl NackStreak {
    /// Nacks in a row that wear a channel out.
    pub(crate) const LIMIT: u32 = 3;

    /// Counts one answer; true once the channel is worn out.
    pub(crate) fn record(&mut self, nacked: bool) -> bool {
        self.in_a_row = if nacked { self.in_a_row + 1 } else { 0 };
        self.in_a_row >= Self::LIMIT
    }
}

enum Handover {
    Sent(Asker, PublisherConfirm),
    NotSent(Asker, lapin::Error),
}

impl Confirms {
    /// Starts the settling task; it ends once every clone is dropped and
    /// every publish is answered.
    pub(crate) fn start() -> Confirms {
        let (to_settle, incoming) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(settle(incoming, counters.clone()));
        Confirms {
            to_settle,
            counters,
        }
    }

    /// Numbers a publish (before it is sent: see the module comment); its
    /// outcome arrives on the receiver.
    pub(crate) fn number(&self, route: Route) -> (Asker, oneshot::Receiver<Outcome>) {
        self.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        let sequence = self.counters.numbered.fetch_add(1, Ordering::SeqCst) + 1;
        let (reply, outcome) = oneshot::channel();
        let asker = Asker {
            route,
            sequence,
            reply,
        };
        (asker, outcome)
    }

    /// The channel kept being nacked: publish on a fresh one.
    pub(crate) fn worn_out(&self) -> bool {
        self.counters.worn_out.load(Ordering::SeqCst)
    }

    /// Hands a numbered publish to the settling task, sent or not. If the
    /// task is gone, the asker's receiver sees its sender dropped.
    pub(crate) fn hand_over(&self, asker: Asker, sent: Result<PublisherConfirm, lapin::Error>) {
        let handover = match sent {
            Ok(confirm) => Handover::Sent(asker, confirm),
            Err(err) => Handover::NotSent(asker, err),
        };
        let _ = self.to_settle.send(handover);
    }
}

type Resolved = (Asker, Result<Confirmation, lapin::Error>);

/// Answers one channel's publishes until every [`Confirms`] is dropped and
/// every publish is answered.
async fn settle(mut incoming: mpsc::UnboundedReceiver<Handover>, counters: Arc<Counters>) {
    let mut settler = Settler {
        counters,
        waiting: FuturesUnordered::new(),
        arrived: Arrivals::default(),
        returned: HashMap::new(),
        nacks: NackStreak::default(),
    };
    let mut open = true;
    loop {
        let mut ready = tokio::select! {
            handover = incoming.recv(), if open => {
                match handover {
                    Some(handover) => settler.accept(handover),
                    None => open = false,
                }
                continue;
            }
            Some(first) = settler.waiting.next(), if !settler.waiting.is_empty() => vec![first],
            else => return,
        };
        settler.drain(&mut ready);
        // Every confirm that could carry a return for these belongs to a
        // publish numbered by now; wait until each has been handed over.
        let numbered = settler.counters.numbered.load(Ordering::SeqCst);
        while open && !settler.arrived.all_up_to(numbered) {
            match incoming.recv().await {
                Some(handover) => settler.accept(handover),
                None => open = false,
            }
        }
        settler.drain(&mut ready);
        settler.answer(ready, numbered);
    }
}

struct Settler {
    counters: Arc<Counters>,
    waiting: FuturesUnordered<BoxFuture<'static, Resolved>>,
    arrived: Arrivals,
    /// Returned messages by route, each with the last number given when it
    /// was seen: a publish on that route numbered up to there is the one
    /// returned, or was in flight beside it (and is failed with it, which
    /// is safe). A later publish on the route gets a fresh answer. Cleared
    /// whenever nothing is in flight.
    returned: HashMap<Route, u64>,
    nacks: NackStreak,
}

impl Settler {
    fn accept(&mut self, handover: Handover) {
        match handover {
            Handover::Sent(asker, confirm) => {
                self.arrived.mark(asker.sequence);
                self.waiting.push(
                    confirm
                        .map(move |confirmation| (asker, confirmation))
                        .boxed(),
                );
            }
            Handover::NotSent(asker, err) => {
                self.arrived.mark(asker.sequence);
                self.reply(asker, Outcome::Failed(err));
            }
        }
    }

    /// Takes every confirm resolved so far.
    fn drain(&mut self, ready: &mut Vec<Resolved>) {
        while let Some(Some(resolved)) = self.waiting.next().now_or_never() {
            ready.push(resolved);
        }
    }

    fn answer(&mut self, ready: Vec<Resolved>, numbered: u64) {
        for (_, confirmation) in &ready {
            if let Ok(Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message))) =
                confirmation
            {
                let delivery = &message.delivery;
                let route = Route {
                    exchange: delivery.exchange.to_string(),
                    routing_key: delivery.routing_key.to_string(),
                    message_id: delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(ToString::to_string),
                };
                self.returned.insert(route, numbered);
            }
        }
        for (asker, confirmation) in ready {
            let returned = self
                .returned
                .get(&asker.route)
                .is_some_and(|&upto| asker.sequence <= upto);
            let outcome = match confirmation {
                Err(err) => Outcome::Failed(err),
                Ok(Confirmation::Ack(_)) if returned => Outcome::Unroutable,
                Ok(Confirmation::Ack(_)) => Outcome::Stored,
                // Every channel is in confirm mode, so NotRequested cannot
                // happen; treat it as "not stored" rather than as success.
                Ok(Confirmation::Nack(_) | Confirmation::NotRequested) => Outcome::Nacked,
            };
            if self.nacks.record(matches!(outcome, Outcome::Nacked)) {
                self.counters.worn_out.store(true, Ordering::SeqCst);
            }
            self.reply(asker, outcome);
        }
    }

    fn reply(&mut self, asker: Asker, outcome: Outcome) {
        // The publisher may have stopped waiting (confirm timeout).
        let _ = asker.reply.send(outcome);
        if self.counters.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.returned.clear();
        }
    }
}

/// Which numbered publishes have been handed over.
#[derive(Default)]
struct Arrivals {
    /// Every number up to here has arrived...
    contiguous: u64,
    /// ...and these beyond it.
    beyond: BTreeSet<u64>,
}

impl Arrivals {
    fn mark(&mut self, sequence: u64) {
        self.beyond.insert(sequence);
        while self.beyond.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }

    fn all_up_to(&self, sequence: u64) -> bool {
        self.contiguous >= sequence
    }
}

#[cfg(test)]
mod tests {
    use super::{Arrivals, NackStreak};

    #[test]
    fn nacks_in_a_row_wear_a_channel_out_and_a_confirm_breaks_the_streak() {
        let mut streak = NackStreak::default();
        assert!(!streak.record(true));
        assert!(!streak.record(true));
        assert!(!streak.record(false));
        assert!(!streak.record(true));
        assert!(!streak.record(true));
        assert!(streak.record(true));
    }

    #[test]
    fn arrivals_in_any_order_close_the_gap() {
        let mut arrived = Arrivals::default();
        arrived.mark(2);
        arrived.mark(3);
        assert!(!arrived.all_up_to(1));
        arrived.mark(1);
        assert!(arrived.all_up_to(3));
        assert!(!arrived.all_up_to(4));
    }
}
