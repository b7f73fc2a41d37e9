//! `orderctl policy check|show|explain`.

use crate::cli::{ExplainArgs, PolicyCommand};
use crate::policy_source;
use orderflow_core::decide::{
    BreakerState, BudgetState, DecisionContext, OrderFacts, Ruling, decide, track_fulfilment,
};
use orderflow_core::{Outcome, Policy, Stage};
use serde_json::json;
use std::process::ExitCode;

const BAD_INPUT: u8 = 2;

pub fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { policy, json } => check(&policy, json),
        PolicyCommand::Show { policy } => with_policy(&policy, |p| {
            println!("# policy {}", p.id());
            if p.strategy != orderflow_core::policy::Strategy::StageAware {
                println!("# strategy: naive preset (baseline for benchmarks only)");
            }
            print!("{}", p.to_toml());
        }),
        PolicyCommand::Explain(args) => {
            let spec = args.policy.spec.clone();
            with_policy(&spec, |p| explain(p, &args))
        }
    }
}

fn check(spec: &str, json: bool) -> ExitCode {
    match policy_source::load(spec) {
        Ok(policy) if json => {
            println!("{}", json!({"valid": true, "policy_id": policy.id()}));
            ExitCode::SUCCESS
        }
        Ok(policy) => {
            println!("{spec}: valid, policy id {}", policy.id());
            ExitCode::SUCCESS
        }
        Err(err) if json => {
            println!(
                "{}",
                json!({"valid": false, "source": err.source_name, "problems": err.problems})
            );
            ExitCode::from(BAD_INPUT)
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

fn with_policy(spec: &str, f: impl FnOnce(&Policy)) -> ExitCode {
    match policy_source::load(spec) {
        Ok(policy) => {
            f(&policy);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

fn explain(policy: &Policy, args: &ExplainArgs) {
    let ruling = match args.fulfilment {
        Some(step) => track_fulfilment(policy, step, args.elapsed),
        None => decide(policy, &context(policy, args)),
    };
    if args.json {
        println!(
            "{}",
            json!({
                "policy_id": policy.id(),
                "stage": args.stage,
                "decision": ruling.decision,
                "rule": ruling.rule,
            })
        );
    } else {
        print_ruling(policy, args.stage, &ruling);
    }
}

fn context(policy: &Policy, args: &ExplainArgs) -> DecisionContext {
    let (Some(class), Some(certainty)) = (args.class, args.certainty) else {
        unreachable!("clap requires --class and --certainty without --fulfilment")
    };
    let outcome = Outcome {
        class,
        certainty,
        code: args.code.clone(),
        retry_after: args.retry_after,
    };
    let mut ctx = DecisionContext::first_attempt(policy, args.stage, outcome);
    ctx.attempt = args.attempt;
    ctx.deferrals = args.deferrals;
    ctx.elapsed = args.elapsed;
    ctx.queried = args.queried;
    ctx.capabilities.idempotent = args.idempotent.unwrap_or(ctx.capabilities.idempotent);
    ctx.capabilities.status_query = args.status_query.unwrap_or(ctx.capabilities.status_query);
    if args.breaker_open {
        ctx.breaker = BreakerState::Open;
    }
    if args.budget_spent {
        ctx.budget = BudgetState::Spent;
    }
    ctx.order = OrderFacts {
        cancelled: args.cancelled,
        shipment_accepted: args.shipment_accepted,
    };
    ctx
}

fn print_ruling(policy: &Policy, stage: Stage, ruling: &Ruling) {
    println!("stage:     {stage}");
    println!("decision:  {}", ruling.decision);
    println!("rule:      {}", ruling.rule);
    println!("policy id: {}", policy.id());
}
