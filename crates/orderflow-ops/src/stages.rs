//! Pausing and resuming a stage: its workers stop taking deliveries within
//! seconds (they look every couple of seconds; in-flight deliveries finish)
//! and messages wait in the queue until it is resumed. Both are audited in
//! the fleet's audit stream.

use crate::error::{Error, Result};
use crate::status::Pause;
use crate::target::Target;
use orderflow_core::Stage;
use orderflow_store::{FleetNote, PauseOutcome};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PauseReport {
    pub stage: Stage,
    /// The pause in force: this one, or the earlier one that stands.
    pub pause: Pause,
    /// The stage was paused already; the earlier pause was kept.
    pub already: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResumeReport {
    pub stage: Stage,
    /// The pause that ended; `None` if the stage was not paused.
    pub ended: Option<Pause>,
}

fn checked(reason: &str, operator: &str) -> Result<(String, String)> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(
            "a reason is required: say why, for the audit".to_owned(),
        ));
    }
    let operator = operator.trim();
    if operator.is_empty() {
        return Err(Error::Invalid(
            "who is acting? give the operator's name (orderctl: --actor, ORDERFLOW_ACTOR or $USER)"
                .to_owned(),
        ));
    }
    Ok((reason.to_owned(), format!("operator:{operator}")))
}

async fn audit(
    target: &Target,
    event: &str,
    stage: Stage,
    reason: &str,
    actor: &str,
) -> Result<()> {
    target
        .store()
        .fleet_note(&FleetNote {
            event: event.to_owned(),
            subject: format!("stage:{stage}"),
            reason: Some(reason.to_owned()),
            actor: actor.to_owned(),
            correlation_id: format!(
                "{event}.{stage}.{}",
                jiff::Timestamp::now().as_millisecond()
            ),
            policy_id: target.policy_id().clone(),
        })
        .await
        .map_err(Error::store(format!(
            "stage {stage}: done, but the audit entry was not written"
        )))?;
    Ok(())
}

/// Pauses `stage`. Pausing a paused stage changes nothing.
pub async fn pause_stage(
    target: &Target,
    stage: Stage,
    reason: &str,
    operator: &str,
) -> Result<PauseReport> {
    let (reason, actor) = checked(reason, operator)?;
    let outcome = target
        .store()
        .pause_stage(stage, &reason, &actor)
        .await
        .map_err(Error::store(format!("cannot pause stage {stage}")))?;
    Ok(match outcome {
        PauseOutcome::Paused(pause) => {
            audit(target, "stage.paused", stage, &reason, &actor).await?;
            PauseReport {
                stage,
                pause: pause.into(),
                already: false,
            }
        }
        PauseOutcome::AlreadyPaused(pause) => PauseReport {
            stage,
            pause: pause.into(),
            already: true,
        },
    })
}

/// Resumes `stage`. Resuming a stage that is not paused changes nothing.
pub async fn resume_stage(
    target: &Target,
    stage: Stage,
    reason: &str,
    operator: &str,
) -> Result<ResumeReport> {
    let (reason, actor) = checked(reason, operator)?;
    let ended = target
        .store()
        .resume_stage(stage)
        .await
        .map_err(Error::store(format!("cannot resume stage {stage}")))?;
    if ended.is_some() {
        audit(target, "stage.resumed", stage, &reason, &actor).await?;
    }
    Ok(ResumeReport {
        stage,
        ended: ended.map(Pause::from),
    })
}
