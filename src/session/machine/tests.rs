use super::*;
use AgentEvent::*;

const EDIT: Duration = Duration::from_secs(1);
const PR: &str = "https://github.com/a/b/pull/1";
const BRANCH: &str = "selfheal/hourly_marts/run-42";

fn brief(workflow: Workflow, purpose: Purpose) -> Brief {
    Brief {
        run_id: "42".into(),
        schedule: "hourly_marts".into(),
        agent: "healer".into(),
        workflow,
        purpose,
    }
}

fn log(failing: &[&str]) -> Input {
    sorted_log(failing, FailureClass::Code)
}

fn sorted_log(failing: &[&str], class: FailureClass) -> Input {
    Input::RunLogRead(LogRead {
        origin: "dir:/runs/42".into(),
        failing: failing.iter().map(|s| s.to_string()).collect(),
        unreadable: None,
        class,
        why: "the evidence".into(),
        earlier: None,
    })
}

fn verification(depth: Depth) -> Verification {
    Verification {
        command: "dbt build --select orders+".into(),
        place: "builds in a throwaway copy of production's DuckDB".into(),
        depth,
    }
}

fn dbt_ready(depth: Depth) -> Input {
    Input::DbtPrepared(Ok(DbtReady {
        note: "dbt builds in a copy; ready in 1.0s".into(),
        verification: verification(depth),
    }))
}

fn change() -> Change {
    Change {
        diff_stat: " models/orders.sql | 2 +-".into(),
        diff: "-a\n+b".into(),
        files: vec!["models/orders.sql".into()],
    }
}

fn fixed(summary: &str) -> Input {
    Input::Agent(Result {
        outcome: Outcome::Fixed,
        summary: summary.into(),
    })
}

fn passed() -> Input {
    Input::Verified(Verified::Passed {
        took_secs: 2.5,
        dbt_says: "Done. PASS=5".into(),
    })
}

/// Feeds `inputs` in order and returns every effect.
fn feed(m: &mut Machine, t0: Instant, inputs: Vec<Input>) -> Vec<Effect> {
    inputs
        .into_iter()
        .flat_map(|input| m.handle(input, t0))
        .collect()
}

/// A session of the given shape with its agent running (on `orders`' failure).
fn running(workflow: Workflow, purpose: Purpose) -> (Machine, Instant) {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(workflow, purpose.clone()), t0, EDIT);
    let mut inputs = vec![Input::SlotTaken, log(&["orders"])];
    if purpose == Purpose::Heal {
        inputs.push(Input::OpenPr(None));
    }
    if workflow == Workflow::Clone {
        inputs.push(Input::Cloned(Ok("working on a fresh clone".into())));
        inputs.push(dbt_ready(Depth::Builds));
    }
    inputs.push(Input::AgentStarted);
    feed(&mut m, t0, inputs);
    (m, t0)
}

/// A clone session whose agent reported a fix and exited.
fn agent_done(purpose: Purpose) -> (Machine, Instant) {
    let (mut m, t0) = running(Workflow::Clone, purpose);
    feed(
        &mut m,
        t0,
        vec![fixed("renamed the ref"), Input::Exited { code: Some(0) }],
    );
    (m, t0)
}

fn steps(fx: &[Effect]) -> Vec<Step> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Do(step) => Some(step.clone()),
            _ => None,
        })
        .collect()
}

fn ending(fx: &[Effect]) -> (Ending, Option<String>) {
    fx.iter()
        .find_map(|e| match e {
            Effect::Finish { ending, pr_url } => Some((ending.clone(), pr_url.clone())),
            _ => None,
        })
        .expect("a finish effect")
}

fn posts(fx: &[Effect]) -> Vec<Message> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Post(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn edits(fx: &[Effect]) -> usize {
    fx.iter().filter(|e| **e == Effect::EditProgress).count()
}

#[test]
fn a_clone_session_takes_every_step_in_order_and_ends_with_the_pull_request() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    assert_eq!(m.start(), [Effect::Do(Step::TakeSlot)]);
    let draft = PrDraft {
        title: "selfheal: fix orders in hourly_marts (run 42)".into(),
        branch: BRANCH.into(),
        root_cause: "renamed the ref".into(),
        change: change(),
        verification: verification(Depth::Builds),
        dbt_says: "Done. PASS=5".into(),
    };
    let script: Vec<(Input, Vec<Step>)> = vec![
        (Input::SlotTaken, vec![Step::ReadRunLog]),
        (log(&["orders"]), vec![Step::FindOpenPr]),
        (
            Input::OpenPr(None),
            vec![Step::PrepareClone(Branch::Start(BRANCH.into()))],
        ),
        (Input::Cloned(Ok("cloned".into())), vec![Step::PrepareDbt]),
        (dbt_ready(Depth::Builds), vec![Step::StartAgent]),
        (Input::AgentStarted, vec![]),
        (fixed("renamed the ref"), vec![]),
        (Input::Exited { code: Some(0) }, vec![Step::ListChanges]),
        (
            Input::Changes(vec!["models/orders.sql".into()]),
            vec![Step::Verify],
        ),
        (passed(), vec![Step::FindOpenPr]),
        (
            Input::OpenPr(None),
            vec![Step::Commit(
                "selfheal: fix orders in hourly_marts (run 42)\n\nrenamed the ref".into(),
            )],
        ),
        (Input::Committed(change()), vec![Step::Push(BRANCH.into())]),
        (Input::Pushed, vec![Step::OpenPr(Box::new(draft))]),
        (Input::PrOpened(Ok(Some(PR.into()))), vec![]),
    ];
    let mut last = vec![];
    for (input, expected) in script {
        let shown = format!("{input:?}");
        last = m.handle(input, t0);
        assert_eq!(steps(&last), expected, "after {shown}");
    }
    assert!(last.contains(&Effect::SavePr(PR.into())));
    assert_eq!(
        ending(&last),
        (Ending::fixed("renamed the ref"), Some(PR.into()))
    );
    assert!(m.is_over());
    assert_eq!(m.view(t0).pr_url.as_deref(), Some(PR));
}

#[test]
fn the_bot_says_what_it_does_while_it_finishes() {
    let (mut m, t0) = agent_done(Purpose::Heal);
    let fx = feed(
        &mut m,
        t0,
        vec![Input::Changes(vec!["models/orders.sql".into()]), passed()],
    );
    assert_eq!(
        posts(&fx),
        [
            Message::Bot("🔎 Verifying the change with `dbt build --select orders+`: the session builds in a throwaway copy of production's DuckDB".into()),
            Message::Bot("✅ Verification passed: `dbt build --select orders+` (2.5s)".into()),
        ]
    );
}

#[test]
fn how_the_bot_finishes_decides_the_ending() {
    let agent = Ending::fixed("renamed the ref");
    let changed = || Input::Changes(vec!["models/orders.sql".into()]);
    let cases: Vec<(&str, Vec<Input>, Ending, Option<&str>)> = vec![
        (
            "nothing changed",
            vec![Input::Changes(vec![])],
            agent.clone(),
            None,
        ),
        (
            "verification failed",
            vec![
                changed(),
                Input::Verified(Verified::Failed {
                    errors: "• `orders` (model): boom".into(),
                }),
            ],
            agent.unverified("dbt build --select orders+"),
            None,
        ),
        (
            "someone else's pull request meanwhile",
            vec![changed(), passed(), Input::OpenPr(Some(PR.into()))],
            Ending::duplicate(PR),
            Some(PR),
        ),
        (
            "a plain remote gives no link",
            vec![
                changed(),
                passed(),
                Input::OpenPr(None),
                Input::Committed(change()),
                Input::Pushed,
                Input::PrOpened(Ok(None)),
            ],
            agent.on_branch(BRANCH),
            None,
        ),
        (
            "the forge refused",
            vec![
                changed(),
                passed(),
                Input::OpenPr(None),
                Input::Committed(change()),
                Input::Pushed,
                Input::PrOpened(Err("422 Unprocessable".into())),
            ],
            Ending::pr_failed(BRANCH, "422 Unprocessable"),
            None,
        ),
        (
            "selfheal shut down during verification",
            vec![changed(), Input::Shutdown],
            Ending::interrupted(),
            None,
        ),
    ];
    for (case, inputs, expected, pr) in cases {
        let (mut m, t0) = agent_done(Purpose::Heal);
        let fx = feed(&mut m, t0, inputs);
        assert_eq!(
            ending(&fx),
            (expected, pr.map(str::to_string)),
            "case: {case}"
        );
        assert!(m.is_over(), "case: {case}");
    }
}

#[test]
fn a_change_the_agent_did_not_call_a_fix_is_not_proposed() {
    let (mut m, t0) = running(Workflow::Clone, Purpose::Heal);
    let fx = feed(
        &mut m,
        t0,
        vec![
            Input::Agent(Result {
                outcome: Outcome::NoFix,
                summary: "a data problem".into(),
            }),
            Input::Exited { code: Some(0) },
            Input::Changes(vec!["models/orders.sql".into()]),
        ],
    );
    let (end, _) = ending(&fx);
    assert_eq!(end.status(), Status::NoFix);
    assert_eq!(
        end.summary(),
        "a data problem (the agent changed models/orders.sql but did not call it a fix, so nothing was proposed)"
    );
    assert!(!steps(&fx).contains(&Step::Verify));
}

#[test]
fn a_follow_up_continues_its_pull_requests_branch_and_skips_the_duplicate_search() {
    let t0 = Instant::now();
    let purpose = Purpose::FollowUp {
        pr: Some(PR.into()),
    };
    let mut m = Machine::new(brief(Workflow::Clone, purpose.clone()), t0, EDIT);
    let fx = feed(&mut m, t0, vec![Input::SlotTaken, log(&["orders"])]);
    assert_eq!(
        steps(&fx),
        [
            Step::ReadRunLog,
            Step::PrepareClone(Branch::Continue(BRANCH.into()))
        ]
    );
    let (mut m, t0) = agent_done(purpose);
    let fx = feed(
        &mut m,
        t0,
        vec![
            Input::Changes(vec!["models/orders.sql".into()]),
            passed(),
            Input::Committed(change()),
            Input::Pushed,
        ],
    );
    assert_eq!(
        steps(&fx),
        [
            Step::Verify,
            Step::Commit("selfheal: follow-up for run 42\n\nrenamed the ref".into()),
            Step::Push(BRANCH.into()),
        ]
    );
    assert_eq!(
        ending(&fx),
        (Ending::fixed("renamed the ref"), Some(PR.into()))
    );
}

#[test]
fn a_follow_up_without_a_pull_request_opens_one() {
    let (mut m, t0) = agent_done(Purpose::FollowUp { pr: None });
    let fx = feed(
        &mut m,
        t0,
        vec![Input::Changes(vec!["models/orders.sql".into()]), passed()],
    );
    assert_eq!(steps(&fx), [Step::Verify, Step::FindOpenPr]);
}

#[test]
fn an_open_pull_request_for_the_same_error_ends_the_session_before_the_agent() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    let fx = feed(
        &mut m,
        t0,
        vec![Input::SlotTaken, log(&[]), Input::OpenPr(Some(PR.into()))],
    );
    assert!(!fx.contains(&Effect::ShowRunLog));
    assert!(fx.contains(&Effect::SavePr(PR.into())));
    assert_eq!(ending(&fx), (Ending::duplicate(PR), Some(PR.into())));
    assert_eq!(
        posts(&fx).last(),
        Some(&Message::Final {
            ending: Ending::duplicate(PR),
            pr_url: Some(PR.into())
        })
    );
}

#[test]
fn what_the_run_log_says_is_shown_and_an_unreadable_source_is_said() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::AgentAlone, Purpose::Heal), t0, EDIT);
    let fx = feed(
        &mut m,
        t0,
        vec![
            Input::SlotTaken,
            Input::RunLogRead(LogRead {
                origin: "notification".into(),
                failing: vec!["orders".into(), "customers".into()],
                unreadable: Some("401 Unauthorized".into()),
                class: FailureClass::Code,
                why: "Compilation Error in model orders".into(),
                earlier: None,
            }),
        ],
    );
    assert_eq!(
        fx,
        [
            Effect::OpenProgress,
            Effect::Do(Step::ReadRunLog),
            Effect::Post(Message::Bot("Could not read the run log (401 Unauthorized); working from the Slack notification instead".into())),
            Effect::Record {
                kind: EventKind::Note,
                text: "Could not read the run log (401 Unauthorized); working from the Slack notification instead".into(),
            },
            Effect::ShowRunLog,
            Effect::Record {
                kind: EventKind::Note,
                text: "read the run log (notification): 2 failing node(s)".into(),
            },
            Effect::Post(Message::Sorted {
                class: FailureClass::Code,
                why: "Compilation Error in model orders".into(),
            }),
            Effect::Record {
                kind: EventKind::Note,
                text: "sorted as code: Compilation Error in model orders".into(),
            },
            Effect::Do(Step::FindOpenPr),
        ]
    );
    // Without a repository the agent starts right after the search.
    assert_eq!(
        steps(&m.handle(Input::OpenPr(None), t0)),
        [Step::StartAgent]
    );
}

#[test]
fn what_stops_preparation_ends_the_session_as_not_started() {
    let cases: Vec<(Vec<Input>, &str)> = vec![
        (
            vec![Input::Cloned(Err("no such branch".into()))],
            "the agent could not be started: could not prepare the repository: no such branch",
        ),
        (
            vec![
                Input::Cloned(Ok("cloned".into())),
                Input::DbtPrepared(Err("no profile".into())),
            ],
            "the agent could not be started: could not prepare a safe place to run dbt: no profile",
        ),
        (
            vec![
                Input::Cloned(Ok("cloned".into())),
                dbt_ready(Depth::Builds),
                Input::SpawnFailed("no such file".into()),
            ],
            "the agent could not be started: no such file",
        ),
    ];
    for (inputs, summary) in cases {
        let t0 = Instant::now();
        let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
        feed(
            &mut m,
            t0,
            vec![Input::SlotTaken, log(&["orders"]), Input::OpenPr(None)],
        );
        let (end, _) = ending(&feed(&mut m, t0, inputs));
        assert_eq!((end.status(), end.summary()), (Status::Failed, summary));
    }
}

#[test]
fn compile_only_verification_is_said_before_the_agent_and_after_it() {
    let hint = || Depth::CompilesOnly {
        hint: "set SELFHEAL_DBT_TARGET".into(),
    };
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    let fx = feed(
        &mut m,
        t0,
        vec![
            Input::SlotTaken,
            log(&["orders"]),
            Input::OpenPr(None),
            Input::Cloned(Ok("cloned".into())),
            Input::DbtPrepared(Ok(DbtReady {
                note: "ready".into(),
                verification: Verification {
                    depth: hint(),
                    ..verification(Depth::Builds)
                },
            })),
            Input::AgentStarted,
            fixed("done"),
            Input::Exited { code: Some(0) },
            Input::Changes(vec!["models/orders.sql".into()]),
            passed(),
        ],
    );
    let said: Vec<Message> = posts(&fx);
    assert!(said.contains(&Message::Bot(
        "⚠️ Verification will only compile: builds in a throwaway copy of production's DuckDB"
            .into()
    )));
    assert!(said.contains(&Message::Bot(
        "✅ Compiles: `dbt build --select orders+` (2.5s) — nothing was built or tested (set SELFHEAL_DBT_TARGET)".into()
    )));
}

#[test]
fn a_queued_session_says_so_and_ends_without_a_progress_message_when_stopped() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    let queued = "⏳ Queued: other healing sessions are running (at most 8 at once, 2 per schedule); this one starts when a slot frees up.";
    let fx = m.handle(
        Input::SlotBusy {
            at_once: 8,
            per_schedule: 2,
        },
        t0,
    );
    assert_eq!(
        fx,
        [
            Effect::Record {
                kind: EventKind::Queued,
                text: queued.into()
            },
            Effect::Post(Message::Bot(queued.into())),
            Effect::Do(Step::WaitForSlot),
        ]
    );
    let fx = m.handle(Input::Stop { by: "U1".into() }, t0);
    assert_eq!(edits(&fx), 0);
    assert!(!fx.contains(&Effect::Kill));
    assert_eq!(ending(&fx).0, Ending::stopped_while_queued("U1"));

    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    let fx = m.handle(Input::Shutdown, t0);
    assert_eq!(edits(&fx), 0);
    assert_eq!(ending(&fx).0, Ending::interrupted_while_queued());
}

#[test]
fn the_clock_starts_when_the_session_gets_a_slot() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::AgentAlone, Purpose::Heal), t0, EDIT);
    let t1 = t0 + Duration::from_secs(60);
    m.handle(Input::SlotTaken, t1);
    assert_eq!(m.view(t1 + Duration::from_secs(5)).elapsed_secs, 5);
}

#[test]
fn an_answer_the_machine_did_not_ask_for_changes_nothing() {
    let (mut m, t0) = running(Workflow::Clone, Purpose::Heal);
    for input in [
        Input::Pushed,
        Input::OpenPr(Some(PR.into())),
        Input::Changes(vec!["a.sql".into()]),
        Input::SlotTaken,
    ] {
        assert!(m.handle(input, t0).is_empty());
    }
    assert!(!m.is_over());
}

#[test]
fn a_flood_of_progress_is_coalesced_into_one_edit_per_interval() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let mut total_edits = 0;
    // 10,000 lines over 10 seconds, with a tick every 100 ms.
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_millis(i);
        m.handle(Input::Agent(Progress(format!("line {i}"))), now);
        if i % 100 == 0 {
            total_edits += edits(&m.handle(Input::Tick, now));
        }
    }
    assert!((9..=11).contains(&total_edits), "edits: {total_edits}");
    let view = m.view(t0 + Duration::from_secs(10));
    // Two lines are the bot's, before the agent: the run log it read, and how it sorted it.
    assert_eq!(view.total_lines, 10_002);
    assert_eq!(view.recent.last().unwrap(), "line 9999");
}

#[test]
fn no_edit_without_news() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::AgentAlone, Purpose::Heal), t0, EDIT);
    assert_eq!(edits(&m.handle(Input::Tick, t0 + EDIT * 5)), 0);
}

#[test]
fn a_tool_call_is_recorded_and_shown_as_one_line() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(
        Input::Agent(Tool {
            name: "read_file".into(),
            input: r#"{"path":"models/a.sql"}"#.into(),
            output: "\nselect 1\nfrom x".into(),
        }),
        t0,
    );
    assert_eq!(
        fx,
        [Effect::Record {
            kind: EventKind::Tool,
            text: "read_file {\"path\":\"models/a.sql\"} -> \nselect 1\nfrom x".into(),
        }]
    );
    assert_eq!(m.view(t0).recent.last().unwrap(), "↳ read_file: select 1");
}

#[test]
fn the_first_pr_url_is_announced_once() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(Input::Agent(Pr(PR.into())), t0);
    assert!(fx.contains(&Effect::SavePr(PR.into())));
    assert_eq!(posts(&fx), [Message::PrFound(PR.into())]);
    assert!(m.handle(Input::Agent(Pr(PR.into())), t0).is_empty());
}

#[test]
fn the_exit_decides_the_outcome() {
    let pr = || Pr(PR.into());
    let fixed = || Result {
        outcome: Outcome::Fixed,
        summary: "done".into(),
    };
    let no_fix = || Result {
        outcome: Outcome::NoFix,
        summary: "data issue".into(),
    };
    let cases: Vec<(Vec<AgentEvent>, Option<i32>, Status)> = vec![
        (vec![pr(), fixed()], Some(0), Status::Fixed),
        (vec![pr()], Some(0), Status::Fixed),
        (vec![fixed()], Some(0), Status::NoFix),
        (vec![no_fix()], Some(0), Status::NoFix),
        (vec![], Some(0), Status::NoFix),
        (vec![], Some(3), Status::Failed),
        (vec![], None, Status::Failed),
        (vec![no_fix()], Some(1), Status::NoFix),
    ];
    for (events, code, expected) in cases {
        let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
        feed(
            &mut m,
            t0,
            events.iter().cloned().map(Input::Agent).collect(),
        );
        let (end, _) = ending(&m.handle(Input::Exited { code }, t0));
        assert_eq!(end.status(), expected, "events {events:?}, code {code:?}");
    }
}

#[test]
fn with_a_clone_the_agents_own_pull_request_ends_the_session() {
    let (mut m, t0) = running(Workflow::Clone, Purpose::Heal);
    let fx = feed(
        &mut m,
        t0,
        vec![
            Input::Agent(Pr(PR.into())),
            fixed("done"),
            Input::Exited { code: Some(0) },
        ],
    );
    assert!(fx.contains(&Effect::Record {
        kind: EventKind::AgentEnd,
        text: "fixed: done".into()
    }));
    assert!(steps(&fx).is_empty());
    assert_eq!(ending(&fx), (Ending::fixed("done"), Some(PR.into())));
}

#[test]
fn a_crash_is_explained_with_the_last_stderr_lines() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    for i in 0..8 {
        m.handle(Input::Stderr(format!("err {i}")), t0);
    }
    let (end, _) = ending(&m.handle(Input::Exited { code: Some(2) }, t0));
    assert_eq!(
        end.summary(),
        "the agent exited with code 2; its last words: err 3 / err 4 / err 5 / err 6 / err 7"
    );
}

#[test]
fn a_timeout_kills_the_agent_and_ends_the_session_once() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(
        Input::TimedOut {
            limit: Duration::from_secs(1800),
        },
        t0,
    );
    assert!(fx.contains(&Effect::Kill));
    assert_eq!(ending(&fx).0, Ending::timed_out(Duration::from_secs(1800)));
    assert!(m.handle(Input::Exited { code: None }, t0).is_empty());
    assert!(m.is_over());
}

#[test]
fn the_end_is_recorded_shown_stored_and_said_in_that_order() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(Input::Shutdown, t0);
    let end = Ending::interrupted();
    assert_eq!(
        fx,
        [
            Effect::Kill,
            Effect::Record {
                kind: EventKind::End,
                text: "interrupted: selfheal was shut down while the session ran".into(),
            },
            Effect::EditProgress,
            Effect::Finish {
                ending: end.clone(),
                pr_url: None
            },
            Effect::Post(Message::Final {
                ending: end.clone(),
                pr_url: None
            }),
        ]
    );
    assert_eq!(m.view(t0).ending, Some(end));
}

#[test]
fn a_person_can_stop_the_session_and_sees_what_was_done() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    m.handle(Input::Agent(Progress("read the log".into())), t0);
    let fx = m.handle(Input::Stop { by: "U1".into() }, t0);
    assert!(fx.contains(&Effect::Kill));
    let (end, _) = ending(&fx);
    assert_eq!(end.status(), Status::Stopped);
    assert_eq!(
        end.summary(),
        "stopped by <@U1>; what it had done so far: read the run log (dir:/runs/42): 1 failing node(s) / sorted as code: the evidence / read the log"
    );
}

#[test]
fn guidance_from_a_person_is_a_progress_line_of_its_own_kind() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(
        Input::Guidance {
            by: "U1".into(),
            text: "try the staging ref".into(),
        },
        t0,
    );
    let text = "💬 guidance from <@U1>: try the staging ref";
    assert_eq!(
        fx,
        [Effect::Record {
            kind: EventKind::Guidance,
            text: text.into()
        }]
    );
    assert_eq!(m.view(t0).recent.last().unwrap(), text);
}

#[test]
fn milestones_get_their_own_message() {
    let (mut m, t0) = running(Workflow::AgentAlone, Purpose::Heal);
    let fx = m.handle(Input::Agent(Milestone("found <it>".into())), t0);
    assert_eq!(posts(&fx), [Message::Milestone("found <it>".into())]);
}

#[test]
fn branch_names_are_safe_for_git() {
    for (schedule, run, expected) in [
        ("hourly_marts", "48213", "selfheal/hourly_marts/run-48213"),
        (
            "Daily Finance!",
            "manual__2024-01-01T00:00:00+00:00",
            "selfheal/Daily-Finance/run-manual__2024-01-01T00-00-00-00-00",
        ),
        ("a..b", "1", "selfheal/a--b/run-1"),
    ] {
        assert_eq!(branch_name(schedule, run), expected);
    }
}

// ---------------------------------------------------------------------------
// Sorting the failure: each kind has its own path.
// ---------------------------------------------------------------------------

/// A heal session past its slot, given a run log of `class`.
/// Returns the effects of the run log alone.
fn sorted(workflow: Workflow, class: FailureClass) -> (Machine, Instant, Vec<Effect>) {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(workflow, Purpose::Heal), t0, EDIT);
    m.handle(Input::SlotTaken, t0);
    let fx = m.handle(sorted_log(&["orders"], class), t0);
    (m, t0, fx)
}

#[test]
fn each_kind_of_failure_takes_its_own_path_and_the_thread_says_which_and_why() {
    let cases: &[(FailureClass, Workflow, Option<Step>, Option<Status>)] = &[
        (
            FailureClass::Code,
            Workflow::Clone,
            Some(Step::FindOpenPr),
            None,
        ),
        // A data failure proposes nothing, so there is no duplicate to look for.
        (
            FailureClass::Data,
            Workflow::Clone,
            Some(Step::PrepareClone(Branch::Start(BRANCH.into()))),
            None,
        ),
        (
            FailureClass::Data,
            Workflow::AgentAlone,
            Some(Step::StartAgent),
            None,
        ),
        (
            FailureClass::Transient,
            Workflow::Clone,
            Some(Step::Retry),
            None,
        ),
        (
            FailureClass::Transient,
            Workflow::AgentAlone,
            Some(Step::Retry),
            None,
        ),
        // Permissions and configuration: no agent, a word for people.
        (
            FailureClass::Setup,
            Workflow::Clone,
            None,
            Some(Status::NeedsPeople),
        ),
    ];
    for (class, workflow, step, status) in cases {
        let (_, _, fx) = sorted(*workflow, *class);
        assert!(
            posts(&fx).contains(&Message::Sorted {
                class: *class,
                why: "the evidence".into()
            }),
            "{class:?}: {fx:?}"
        );
        assert_eq!(steps(&fx).first(), step.as_ref(), "{class:?} {workflow:?}");
        match status {
            Some(status) => assert_eq!(ending(&fx).0.status(), *status, "{class:?}"),
            None => assert!(!fx.iter().any(|e| matches!(e, Effect::Finish { .. }))),
        }
    }
}

#[test]
fn a_follow_up_is_not_sorted_again() {
    let t0 = Instant::now();
    let mut m = Machine::new(
        brief(
            Workflow::Clone,
            Purpose::FollowUp {
                pr: Some(PR.into()),
            },
        ),
        t0,
        EDIT,
    );
    m.handle(Input::SlotTaken, t0);
    let fx = m.handle(sorted_log(&["orders"], FailureClass::Transient), t0);
    assert!(!posts(&fx)
        .iter()
        .any(|p| matches!(p, Message::Sorted { .. })));
    assert_eq!(
        steps(&fx),
        [Step::PrepareClone(Branch::Continue(BRANCH.into()))]
    );
}

#[test]
fn a_recurrence_links_the_earlier_thread() {
    let t0 = Instant::now();
    let mut m = Machine::new(brief(Workflow::Clone, Purpose::Heal), t0, EDIT);
    let earlier = Earlier {
        run_id: "41".into(),
        channel: "C1".into(),
        thread_ts: "1.2".into(),
        pr_url: Some(PR.into()),
    };
    let Input::RunLogRead(mut read) = log(&["orders"]) else {
        unreachable!()
    };
    read.earlier = Some(earlier.clone());
    let fx = feed(&mut m, t0, vec![Input::SlotTaken, Input::RunLogRead(read)]);
    assert!(posts(&fx).contains(&Message::Recurrence(earlier)));
}

#[test]
fn a_data_failure_is_diagnosed_only_whatever_the_agent_changed() {
    let (mut m, t0, _) = sorted(Workflow::Clone, FailureClass::Data);
    feed(
        &mut m,
        t0,
        vec![
            Input::Cloned(Ok("clone".into())),
            dbt_ready(Depth::Builds),
            Input::AgentStarted,
            Input::Agent(Pr(PR.into())),
        ],
    );
    let fx = feed(
        &mut m,
        t0,
        vec![fixed("relaxed the test"), Input::Exited { code: Some(0) }],
    );
    // No listing of changes, no verification, no pull request.
    assert!(steps(&fx).is_empty(), "{fx:?}");
    let (end, pr) = ending(&fx);
    assert_eq!(end.status(), Status::NoFix);
    assert!(
        end.summary().contains("diagnosed only"),
        "{}",
        end.summary()
    );
    assert_eq!(pr, None);
}

fn rerun_started(run: Option<&str>) -> Input {
    Input::Retry(RetryAnswer::Started {
        by: "Paradime".into(),
        run_id: run.map(str::to_string),
        attempt: 1,
        budget: 1,
    })
}

#[test]
fn a_transient_failure_is_re_run_and_followed_until_the_re_run_ends() {
    // (answers after the retry, the last step asked for, the ending's status and words)
    type Case = (Vec<Input>, Option<Step>, Option<(Status, &'static str)>);
    let poll = || Some(Step::PollRerun("43".into()));
    let cases: Vec<Case> = vec![
        (vec![rerun_started(Some("43"))], poll(), None),
        (
            vec![
                rerun_started(Some("43")),
                Input::Rerun(Ok(RerunState::Running)),
            ],
            poll(),
            None,
        ),
        (
            vec![
                rerun_started(Some("43")),
                Input::Rerun(Ok(RerunState::Passed)),
            ],
            Some(Step::ClosePassed("43".into())),
            None,
        ),
        (
            vec![
                rerun_started(Some("43")),
                Input::Rerun(Ok(RerunState::Passed)),
                Input::LoopClosed,
            ],
            None,
            Some((Status::Retried, "run 43) passed")),
        ),
        (
            vec![
                rerun_started(Some("43")),
                Input::Rerun(Ok(RerunState::Failed("FAILED".into()))),
            ],
            None,
            Some((Status::Retried, "failed too (FAILED)")),
        ),
        (
            vec![rerun_started(None)],
            None,
            Some((Status::Retried, "Paradime was asked to re-run it")),
        ),
        (
            vec![Input::Retry(RetryAnswer::AlreadyAsked {
                attempt: 1,
                run_id: Some("43".into()),
            })],
            poll(),
            None,
        ),
        (
            vec![Input::Retry(RetryAnswer::Spent {
                root: "40".into(),
                used: 1,
            })],
            None,
            Some((Status::NeedsPeople, "run 40 was re-run once already")),
        ),
        (
            vec![Input::Retry(RetryAnswer::Off)],
            None,
            Some((Status::NeedsPeople, "re-runs are off for hourly_marts")),
        ),
        (
            vec![Input::Retry(RetryAnswer::NoWay)],
            None,
            Some((Status::NeedsPeople, "re-run it (selfheal cannot re-run")),
        ),
        (
            vec![Input::Retry(RetryAnswer::Refused(
                "RETRY_NOT_LATEST_RUN".into(),
            ))],
            None,
            Some((Status::NeedsPeople, "RETRY_NOT_LATEST_RUN")),
        ),
    ];
    for (answers, last_step, end) in cases {
        let (mut m, t0, _) = sorted(Workflow::Clone, FailureClass::Transient);
        let all = feed(&mut m, t0, answers.clone());
        let last = answers.len() - 1;
        let (mut again, t0, _) = sorted(Workflow::Clone, FailureClass::Transient);
        feed(&mut again, t0, answers[..last].to_vec());
        let fx = again.handle(answers[last].clone(), t0);
        assert_eq!(steps(&fx).last(), last_step.as_ref(), "{answers:?}");
        match end {
            Some((status, words)) => {
                let (end, pr) = ending(&fx);
                assert_eq!(end.status(), status, "{answers:?}");
                assert!(end.summary().contains(words), "{}", end.summary());
                assert_eq!(pr, None, "a re-run never has a pull request");
            }
            None => assert!(!m.is_over(), "{answers:?}"),
        }
        // A transient failure never reaches an agent or the clone.
        assert!(!steps(&all).iter().any(|s| matches!(
            s,
            Step::StartAgent | Step::PrepareClone(_) | Step::OpenPr(_)
        )));
    }
}

#[test]
fn following_a_re_run_gives_up_after_unreadable_states_or_too_long() {
    let (mut m, t0, _) = sorted(Workflow::Clone, FailureClass::Transient);
    feed(&mut m, t0, vec![rerun_started(Some("43"))]);
    let unreadable = |n| vec![Input::Rerun(Err("502 from Paradime".into())); n];
    let fx = feed(&mut m, t0, unreadable(RERUN_UNREADABLE as usize - 1));
    assert!(!m.is_over(), "{fx:?}");
    // A good read resets the count.
    feed(&mut m, t0, vec![Input::Rerun(Ok(RerunState::Running))]);
    feed(&mut m, t0, unreadable(RERUN_UNREADABLE as usize - 1));
    assert!(!m.is_over());
    let fx = feed(&mut m, t0, unreadable(1));
    assert!(ending(&fx)
        .0
        .summary()
        .contains("could not be read: 502 from Paradime"));

    let (mut m, t0, _) = sorted(Workflow::Clone, FailureClass::Transient);
    feed(&mut m, t0, vec![rerun_started(Some("43"))]);
    let fx = m.handle(Input::Rerun(Ok(RerunState::Running)), t0 + RERUN_WAIT);
    assert!(ending(&fx).0.summary().contains("still running after"));
}

#[test]
fn a_person_can_stop_a_followed_re_run() {
    let (mut m, t0, _) = sorted(Workflow::Clone, FailureClass::Transient);
    feed(&mut m, t0, vec![rerun_started(Some("43"))]);
    let fx = feed(&mut m, t0, vec![Input::Stop { by: "U1".into() }]);
    assert_eq!(ending(&fx).0.status(), Status::Stopped);
}
