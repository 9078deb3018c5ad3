//! A small actix agent that composes the leadership tracker through the `Manifold`.
//!
//! The agent builds its `Resources` (its unit tag and an API caller), starts a
//! supervised tracker through `Manifold::start`, and runs a worker actor of its own that
//! does leader-only work:
//!
//! - it waits on `WaitLeader`;
//! - while leader, it does a step of work every half claim duration, each only after a
//!   fresh `ClaimLeader` ticket answered `true` (so it re-checks at least every `d`);
//! - when its `WaitMinion` ticket resolves it switches to minion mode and waits on
//!   `WaitLeader` again.
//!
//! The API caller is a wrapper around the in-memory manager that fails one claim on
//! purpose. The log shows the tracker restarting after a backoff (a `WARN` line with
//! the cause and the delay) and the worker resuming. The example exits by itself after
//! about 8 seconds. Run with `cargo run --example agent` (`-- --help` for the options);
//! Ctrl-C ends it cleanly: the tracker is stopped first.

use std::future::IntoFuture;
use std::time::Duration;

use actix::prelude::*;
use clap::Parser;
use leadership::manifold::{Manifold, ManifoldConfig, Resources, Tag};
use leadership::{
    BlockUntilLeadershipReleased, ClaimLeadership, Claimer, Grant, LeaseError, ManagerActor,
    Tracker,
};

/// An agent running leader-only work through a supervised tracker, with one claim
/// failed on purpose to show the tracker restarting.
#[derive(Parser, Debug)]
#[command(name = "agent")]
struct Args {
    /// The leadership guarantee (claim duration d), in milliseconds (1 ms to a day).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    guarantee_ms: u64,
    /// How long the agent runs, in seconds.
    #[arg(long, default_value_t = 8)]
    run_secs: u64,
    /// Which claim the API caller fails (1 is the first claim; 0 fails none).
    #[arg(long, default_value_t = 3)]
    fail_claim: u32,
}

/// An API caller that forwards to a lease manager but fails its `fail_at`-th claim.
struct FailOnce {
    manager: Addr<ManagerActor>,
    claims: u32,
    fail_at: u32,
}

impl Actor for FailOnce {
    type Context = Context<Self>;
}

impl Handler<ClaimLeadership> for FailOnce {
    type Result = ResponseFuture<Result<Grant, LeaseError>>;

    fn handle(&mut self, claim: ClaimLeadership, _: &mut Context<Self>) -> Self::Result {
        self.claims += 1;
        if self.claims == self.fail_at {
            tracing::warn!("api caller: injecting a failure into claim {}", self.claims);
            return Box::pin(async { Err(LeaseError::Failed("injected failure".into())) });
        }
        let answer = self.manager.send(claim);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|e| Err(LeaseError::Failed(e.to_string())))
        })
    }
}

impl Handler<BlockUntilLeadershipReleased> for FailOnce {
    type Result = ResponseFuture<Result<(), LeaseError>>;

    fn handle(
        &mut self,
        block: BlockUntilLeadershipReleased,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let answer = self.manager.send(block);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|e| Err(LeaseError::Failed(e.to_string())))
        })
    }
}

/// Does leader-only work while, and only while, the tracker guarantees leadership.
struct Worker {
    tracker: Tracker,
    guarantee: Duration,
    steps: u32,
    work: Option<SpawnHandle>,
}

impl Worker {
    fn await_leadership(&mut self, ctx: &mut Context<Self>) {
        println!("worker: minion mode, waiting for leadership");
        let ticket = self.tracker.wait_leader();
        ctx.spawn(
            ticket
                .into_future()
                .into_actor(self)
                .map(|leader, act, ctx| {
                    if leader {
                        act.lead(ctx);
                    } else {
                        println!("worker: the tracker stopped");
                    }
                }),
        );
    }

    fn lead(&mut self, ctx: &mut Context<Self>) {
        println!("worker: leader mode");
        // Every half guarantee: a fresh ClaimLeader, and work only if it says yes.
        self.work = Some(ctx.run_interval(self.guarantee / 2, |act, ctx| {
            let ticket = act.tracker.claim_leader();
            ctx.spawn(ticket.into_future().into_actor(act).map(|leader, act, _| {
                if leader {
                    act.steps += 1;
                    println!("worker: step {} of leader-only work", act.steps);
                } else {
                    println!("worker: claim refused; skipping this step");
                }
            }));
        }));
        let minion = self.tracker.wait_minion();
        ctx.spawn(minion.into_future().into_actor(self).map(|_, act, ctx| {
            println!("worker: leadership lost");
            if let Some(work) = act.work.take() {
                ctx.cancel_future(work);
            }
            act.await_leadership(ctx);
        }));
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.await_leadership(ctx);
    }
}

#[actix_rt::main]
async fn main() {
    let args = Args::parse();
    let guarantee = Duration::from_millis(args.guarantee_ms);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "leadership=info,agent=info".into()),
        )
        // Colours only on a terminal: piped to a file, the log stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    // The agent's dependencies: who it is, and how it reaches the lease manager.
    let manager = ManagerActor::new().start();
    let api_caller = FailOnce {
        manager,
        claims: 0,
        fail_at: args.fail_claim, // by default the second renewal
    }
    .start();
    let mut resources = Resources::new();
    resources.insert("agent", "unit-web-0".parse::<Tag>().expect("a unit tag"));
    // Only claims and blocks pass through this caller: the tracker is killed at the
    // end, never resigns, so it needs no release or hand-over.
    let claimer = Claimer::from_recipients(api_caller.clone().recipient(), api_caller.recipient());
    resources.insert("api-caller", claimer);

    let manifold = Manifold::new(ManifoldConfig {
        agent_name: "agent".into(),
        api_caller_name: "api-caller".into(),
        leadership_guarantee: guarantee,
    });
    println!(
        "agent: starting the leadership manifold with inputs {:?}",
        manifold.inputs()
    );
    let tracker = manifold
        .start(&resources)
        .expect("the manifold's dependencies");

    let worker = Worker {
        tracker: tracker.clone(),
        guarantee,
        steps: 0,
        work: None,
    }
    .start();

    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.run_secs)) => {}
        _ = tokio::signal::ctrl_c() => println!("\nInterrupted."),
    }
    println!("agent: stopping");
    tracker.kill();
    tracker.wait().await.expect("a clean stop");
    drop(worker);
    System::current().stop();
}
