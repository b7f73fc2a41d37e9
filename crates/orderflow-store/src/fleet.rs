//! The fleet as a whole rather than one order: the heartbeats of the live
//! worker processes, paused stages, and an audit stream of what operators
//! did to the fleet (a pause, a resume).
//!
//! A heartbeat is a hash that expires (`{ns}:worker:<actor>`): a worker
//! writes it every few seconds, so a process that died without a word
//! disappears by itself within the heartbeat's ttl. A paused stage is a
//! hash that stays until resumed (`{ns}:paused:<stage>`); the stage's
//! workers look at it every few seconds. Each of these is one key written
//! by one command or script, so they run on Redis Cluster as well.

use crate::Store;
use crate::error::Error;
use crate::lease::ttl_ms;
use crate::parse::{parse_num, timestamp};
use jiff::Timestamp;
use orderflow_core::decide::BreakerState;
use orderflow_core::{PolicyId, Stage};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What a worker process says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The process's audit name, unique per process
    /// (`payment-worker@host/1234`).
    pub actor: String,
    /// `inventory`, `payment`, `shipping` or `reconciler`.
    pub role: String,
    pub policy_id: String,
    pub started_at: Timestamp,
    /// This process's circuit breaker of each downstream it calls.
    pub breakers: BTreeMap<Stage, BreakerState>,
    /// The process has stopped taking deliveries because its stage is
    /// paused.
    pub paused: bool,
}

/// A heartbeat as read back: the worker is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWorker {
    pub heartbeat: Heartbeat,
    /// When the latest heartbeat was written (server clock).
    pub seen_at: Timestamp,
}

/// Why and since when a stage is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePause {
    pub reason: String,
    pub actor: String,
    /// Server time of the pause.
    pub since: Timestamp,
}

/// The result of [`Store::pause_stage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseOutcome {
    /// Paused now.
    Paused(StagePause),
    /// It was paused before; the earlier pause stands unchanged.
    AlreadyPaused(StagePause),
}

/// An audit entry about the fleet rather than one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetNote {
    /// What happened, e.g. `stage.paused`.
    pub event: String,
    /// What it happened to, e.g. `stage:payment`.
    pub subject: String,
    pub reason: Option<String>,
    /// Who did it, e.g. `operator:alice`.
    pub actor: String,
    pub correlation_id: String,
    pub policy_id: PolicyId,
}

/// A [`FleetNote`] as read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEntry {
    /// The stream entry id; pass the last one as `since` to read on.
    pub id: String,
    /// Server time of the entry (from its id).
    pub at: Timestamp,
    pub event: String,
    pub subject: String,
    pub reason: Option<String>,
    pub actor: String,
    pub correlation_id: String,
    pub policy_id: String,
}

fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}

fn parse_breaker(key: &str, raw: &str) -> Result<BreakerState, Error> {
    match raw {
        "closed" => Ok(BreakerState::Closed),
        "half_open" => Ok(BreakerState::HalfOpen),
        "open" => Ok(BreakerState::Open),
        other => Err(Error::corrupt(
            key,
            format!("unknown breaker state `{other}`"),
        )),
    }
}

const BREAKER_PREFIX: &str = "breaker:";

impl Store {
    /// Writes the worker's heartbeat, replacing its previous one; it
    /// expires after `ttl` unless written again.
    pub async fn write_heartbeat(&self, heartbeat: &Heartbeat, ttl: Duration) -> Result<(), Error> {
        if heartbeat.actor.is_empty() {
            return Err(Error::InvalidArgument("empty worker actor".to_owned()));
        }
        let mut call = self.scripts.heartbeat.prepare_invoke();
        call.key(self.keys.worker(&heartbeat.actor))
            .arg(ttl_ms(ttl)?)
            .arg("actor")
            .arg(&heartbeat.actor)
            .arg("role")
            .arg(&heartbeat.role)
            .arg("policy_id")
            .arg(&heartbeat.policy_id)
            .arg("started_at_ms")
            .arg(heartbeat.started_at.as_millisecond())
            .arg("paused")
            .arg(if heartbeat.paused { "1" } else { "0" });
        for (stage, state) in &heartbeat.breakers {
            call.arg(format!("{BREAKER_PREFIX}{stage}"))
                .arg(breaker_name(*state));
        }
        call.invoke_async::<String>(&mut self.conn()).await?;
        Ok(())
    }

    /// Removes the worker's heartbeat: it has stopped.
    pub async fn remove_heartbeat(&self, actor: &str) -> Result<(), Error> {
        redis::cmd("DEL")
            .arg(self.keys.worker(actor))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Every worker with an unexpired heartbeat, by actor.
    pub async fn live_workers(&self) -> Result<Vec<LiveWorker>, Error> {
        let keys = self.scan(&self.keys.workers_pattern()).await?;
        let mut workers = Vec::with_capacity(keys.len());
        for key in keys {
            let map: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await?;
            // Expired between the scan and the read: gone.
            if map.is_empty() {
                continue;
            }
            workers.push(parse_worker(&key, &map)?);
        }
        workers.sort_by(|a, b| a.heartbeat.actor.cmp(&b.heartbeat.actor));
        Ok(workers)
    }

    /// Pauses `stage`: its workers stop taking deliveries once they see it.
    pub async fn pause_stage(
        &self,
        stage: Stage,
        reason: &str,
        actor: &str,
    ) -> Result<PauseOutcome, Error> {
        let key = self.keys.pause(stage);
        let reply: Vec<String> = self
            .scripts
            .pause
            .key(&key)
            .arg(reason)
            .arg(actor)
            .invoke_async(&mut self.conn())
            .await?;
        match reply.first().map(String::as_str) {
            Some("paused") => Ok(PauseOutcome::Paused(StagePause {
                reason: reason.to_owned(),
                actor: actor.to_owned(),
                since: timestamp(&key, parse_num(&key, reply.get(1))?)?,
            })),
            Some("already") => Ok(PauseOutcome::AlreadyPaused(StagePause {
                reason: reply.get(1).cloned().unwrap_or_default(),
                actor: reply.get(2).cloned().unwrap_or_default(),
                since: timestamp(&key, parse_num(&key, reply.get(3))?)?,
            })),
            _ => Err(Error::corrupt(
                &key,
                format!("unexpected pause reply {reply:?}"),
            )),
        }
    }

    /// Resumes `stage`; returns the pause it ended, `None` if it was not
    /// paused.
    pub async fn resume_stage(&self, stage: Stage) -> Result<Option<StagePause>, Error> {
        let key = self.keys.pause(stage);
        let (map, _): (HashMap<String, String>, u64) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        parse_pause(&key, &map)
    }

    /// Whether `stage` is paused, and by whom.
    pub async fn stage_pause(&self, stage: Stage) -> Result<Option<StagePause>, Error> {
        let key = self.keys.pause(stage);
        let map: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await?;
        parse_pause(&key, &map)
    }

    /// Every paused stage.
    pub async fn paused_stages(&self) -> Result<BTreeMap<Stage, StagePause>, Error> {
        let mut paused = BTreeMap::new();
        for stage in Stage::ALL {
            if let Some(pause) = self.stage_pause(stage).await? {
                paused.insert(stage, pause);
            }
        }
        Ok(paused)
    }

    /// Appends an entry to the fleet's audit stream (capped like the
    /// fleet-wide order audit); returns its id.
    pub async fn fleet_note(&self, note: &FleetNote) -> Result<String, Error> {
        let id: String = redis::cmd("XADD")
            .arg(self.keys.fleet_notes())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.fleet_audit_maxlen)
            .arg("*")
            .arg("event")
            .arg(&note.event)
            .arg("subject")
            .arg(&note.subject)
            .arg("reason")
            .arg(note.reason.as_deref().unwrap_or(""))
            .arg("actor")
            .arg(&note.actor)
            .arg("correlation_id")
            .arg(&note.correlation_id)
            .arg("policy_id")
            .arg(note.policy_id.as_str())
            .query_async(&mut self.conn())
            .await?;
        Ok(id)
    }

    /// Up to `count` fleet audit entries after the entry id `since` (from
    /// the oldest kept when `None`), oldest first.
    pub async fn fleet_notes(
        &self,
        since: Option<&str>,
        count: usize,
    ) -> Result<Vec<FleetEntry>, Error> {
        let start = match since {
            Some(id) if stream_ms(id).is_some() => format!("({id}"),
            Some(id) => {
                return Err(Error::InvalidArgument(format!(
                    "`{id}` is not a stream entry id (ms-seq)"
                )));
            }
            None => "-".to_owned(),
        };
        let key = self.keys.fleet_notes();
        let raw: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        raw.into_iter()
            .map(|(id, fields)| parse_fleet_entry(&key, id, &fields))
            .collect()
    }

    /// Namespaces of this Redis with orders or live workers, sorted: for
    /// telling an operator who named an empty namespace which ones exist.
    /// Scans the whole keyspace, so it is for error paths, not hot ones.
    pub async fn known_namespaces(&self) -> Result<Vec<String>, Error> {
        let mut found = std::collections::BTreeSet::new();
        for pattern in ["*:index:*", "*:worker:*"] {
            for key in self.scan(pattern).await? {
                if let Some((namespace, _)) = key.split_once(':') {
                    found.insert(namespace.to_owned());
                }
            }
        }
        Ok(found.into_iter().collect())
    }
}

fn parse_worker(key: &str, map: &HashMap<String, String>) -> Result<LiveWorker, Error> {
    let get = |name: &str| {
        map.get(name)
            .cloned()
            .ok_or_else(|| Error::corrupt(key, format!("missing field `{name}`")))
    };
    let mut breakers = BTreeMap::new();
    for (field, value) in map {
        if let Some(stage) = field.strip_prefix(BREAKER_PREFIX) {
            let stage = stage
                .parse()
                .map_err(|err: orderflow_core::stage::UnknownStage| {
                    Error::corrupt(key, err.to_string())
                })?;
            breakers.insert(stage, parse_breaker(key, value)?);
        }
    }
    Ok(LiveWorker {
        heartbeat: Heartbeat {
            actor: get("actor")?,
            role: get("role")?,
            policy_id: get("policy_id")?,
            started_at: timestamp(key, parse_num(key, map.get("started_at_ms"))?)?,
            breakers,
            paused: map.get("paused").is_some_and(|p| p == "1"),
        },
        seen_at: timestamp(key, parse_num(key, map.get("seen_at_ms"))?)?,
    })
}

fn parse_pause(key: &str, map: &HashMap<String, String>) -> Result<Option<StagePause>, Error> {
    if map.is_empty() {
        return Ok(None);
    }
    Ok(Some(StagePause {
        reason: map.get("reason").cloned().unwrap_or_default(),
        actor: map.get("actor").cloned().unwrap_or_default(),
        since: timestamp(key, parse_num(key, map.get("since_ms"))?)?,
    }))
}

/// The milliseconds of a stream entry id (`ms-seq`).
fn stream_ms(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok()
}

fn parse_fleet_entry(
    key: &str,
    id: String,
    fields: &HashMap<String, String>,
) -> Result<FleetEntry, Error> {
    let get = |name: &str| {
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| Error::corrupt(key, format!("entry {id} has no `{name}`")))
    };
    let ms = stream_ms(&id).ok_or_else(|| Error::corrupt(key, format!("bad entry id {id}")))?;
    Ok(FleetEntry {
        at: timestamp(key, ms)?,
        event: get("event")?,
        subject: get("subject")?,
        reason: get("reason").ok().filter(|r| !r.is_empty()),
        actor: get("actor")?,
        correlation_id: get("correlation_id")?,
        policy_id: get("policy_id")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_states_round_trip() {
        for state in [
            BreakerState::Closed,
            BreakerState::HalfOpen,
            BreakerState::Open,
        ] {
            assert_eq!(parse_breaker("k", breaker_name(state)).unwrap(), state);
        }
        assert!(parse_breaker("k", "ajar").is_err());
    }

    #[test]
    fn stream_ids_give_their_time() {
        assert_eq!(stream_ms("1700000000000-0"), Some(1_700_000_000_000));
        assert_eq!(stream_ms("1700000000000"), None);
        assert_eq!(stream_ms("12-x"), None);
        assert_eq!(stream_ms("(12-0"), None);
    }
}
