//! Replay records: which messages an operator's replay already sent.
//!
//! A replay record is one key per replay id and message id. Sending goes
//! claim → publish → mark sent; a second run with the same replay id finds
//! the mark and does not send again, and a concurrent run finds the claim
//! and leaves the message alone. A claim expires, so a run killed between
//! its claim and its mark does not hold the message for ever; only a kill
//! between the publish and the mark can lead to a second copy, which keeps
//! the message id, so the stage re-emits its record instead of repeating
//! the work.

use crate::Store;
use crate::error::Error;
use crate::parse::parse_num;
use std::time::Duration;

/// Where one message of one replay stands, as [`Store::claim_replay`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayClaim {
    /// The caller holds the claim now: send, then [`Store::finish_replay`].
    Claimed,
    /// Sent by this replay id before (at server time `at_ms`, by `owner`).
    Sent { at_ms: u64, owner: String },
    /// Another run of this replay id holds the claim.
    Busy { owner: String },
}

/// Checks a replay id: 1–128 characters of `A-Z a-z 0-9 _ . -`.
fn check_replay_id(replay_id: &str) -> Result<(), Error> {
    let valid = (1..=128).contains(&replay_id.len())
        && replay_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "replay id `{replay_id}`: use 1-128 characters of [A-Za-z0-9_.-]"
        )))
    }
}

fn check_message_id(message_id: &str) -> Result<(), Error> {
    if message_id.is_empty() {
        return Err(Error::InvalidArgument("empty message id".to_owned()));
    }
    Ok(())
}

fn ms(what: &str, duration: Duration) -> Result<u64, Error> {
    match u64::try_from(duration.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(Error::InvalidArgument(format!(
            "{what} {duration:?} must be between 1 ms and u64::MAX ms"
        ))),
    }
}

impl Store {
    /// Claims `message_id` for replay `replay_id` on behalf of `owner` (a
    /// token unique to the running command) for `ttl`.
    pub async fn claim_replay(
        &self,
        replay_id: &str,
        message_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<ReplayClaim, Error> {
        check_replay_id(replay_id)?;
        check_message_id(message_id)?;
        let key = self.keys.replay(replay_id, message_id);
        let reply: Vec<String> = self
            .scripts
            .replay_claim
            .key(&key)
            .arg(owner)
            .arg(ms("replay claim ttl", ttl)?)
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("claimed") => Ok(ReplayClaim::Claimed),
            Some("sent") => Ok(ReplayClaim::Sent {
                at_ms: parse_num(&key, reply.get(1))?,
                owner: reply.get(2).cloned().unwrap_or_default(),
            }),
            Some("busy") => Ok(ReplayClaim::Busy {
                owner: reply.get(1).cloned().unwrap_or_default(),
            }),
            _ => Err(Error::corrupt(
                &key,
                format!("unexpected claim reply {reply:?}"),
            )),
        }
    }

    /// Marks a claimed message sent, kept `keep` (a later run with the same
    /// replay id within that time does not send it again). `false`: the
    /// claim was no longer `owner`'s (it expired and another run took it).
    pub async fn finish_replay(
        &self,
        replay_id: &str,
        message_id: &str,
        owner: &str,
        keep: Duration,
    ) -> Result<bool, Error> {
        self.settle_replay(replay_id, message_id, owner, keep, "sent")
            .await
    }

    /// Drops `owner`'s claim without sending (the publish failed, or the
    /// message was not sent after all), so a later run may send it.
    pub async fn release_replay(
        &self,
        replay_id: &str,
        message_id: &str,
        owner: &str,
    ) -> Result<bool, Error> {
        self.settle_replay(
            replay_id,
            message_id,
            owner,
            Duration::from_millis(1),
            "release",
        )
        .await
    }

    async fn settle_replay(
        &self,
        replay_id: &str,
        message_id: &str,
        owner: &str,
        keep: Duration,
        how: &str,
    ) -> Result<bool, Error> {
        check_replay_id(replay_id)?;
        check_message_id(message_id)?;
        let done: u64 = self
            .scripts
            .replay_finish
            .key(self.keys.replay(replay_id, message_id))
            .arg(owner)
            .arg(ms("replay record keep", keep)?)
            .arg(how)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::check_replay_id;

    #[test]
    fn replay_ids_are_plain_words() {
        assert!(check_replay_id("r-0190a.b_c").is_ok());
        for bad in ["", "a b", "a:b", "{x}", &"r".repeat(129)] {
            assert!(check_replay_id(bad).is_err(), "{bad:?}");
        }
    }
}
