//! Real healing on real dbt: a broken commit, a failing scheduled run, the
//! notification, the agent's change verified by the bot, the pull request.

use std::time::Duration;

use selfheal::demo::{Breakage, World, ALERTS, HEALING};
use selfheal::store::{Status, Store};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(120);

/// A team whose main branch just got `breakage`, whose scheduled run `run_id`
/// failed on it, and a running selfheal.
struct Story {
    world: World,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    bot: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Story {
    async fn start(breakage: &Breakage, run_id: &str, agent: Option<&str>) -> Story {
        Story::start_with(breakage, run_id, agent, &[]).await
    }

    async fn start_with(
        breakage: &Breakage,
        run_id: &str,
        agent: Option<&str>,
        env: &[(&str, &str)],
    ) -> Story {
        let (world, dir) = crate::helpers::broken_world("demo", breakage, run_id).await;
        if let Some(script) = agent {
            use_command_agent(&world, script);
        }
        Story::serve(world, dir, env).await
    }

    /// The bot serving a staged world.
    async fn serve(world: World, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Story {
        let (shutdown, bot) = crate::helpers::start_world_bot(&world, env).await;
        Story {
            world,
            _dir: dir,
            shutdown,
            bot,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.world.root.join("selfheal.db")).unwrap()
    }

    async fn session_end(&self, run_id: &str) -> selfheal::store::SessionRow {
        crate::helpers::world_session_end(&self.world, run_id, WAIT).await
    }

    /// The final message of the healing thread (the last bot message).
    async fn final_message(&self, ts: &str) -> String {
        crate::helpers::world_final_message(&self.world, ts, WAIT).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.bot).await;
    }
}

/// Makes the schedule heal with a command agent running `script` (bash).
pub(crate) fn use_command_agent(world: &World, script: &str) {
    let agents = world.prod.join(".dinoai/agents");
    std::fs::write(world.root.join("agent.sh"), script).unwrap();
    std::fs::write(
        agents.join("scripted.yml"),
        format!(
            "name: scripted\nversion: 1\nrole: r\ngoal: g\nbackstory: b\nselfheal:\n  runner: command\n  command: [\"bash\", \"{}\"]\n",
            world.root.join("agent.sh").display()
        ),
    )
    .unwrap();
    crate::helpers::heal_hourly_marts_with(world, "scripted");
}

/// Fixes the ref; asked again in the thread, adds a note on the same branch.
pub(crate) const FIX_THEN_FOLLOW_UP: &str = r#"
if grep -q "Follow-up requested" "$SELFHEAL_PROMPT_FILE"; then
  printf -- "-- reviewed by selfheal follow-up\n" >> models/marts/orders.sql
  echo '{"type":"result","status":"fixed","summary":"added the note the reviewer asked for"}'
else
  sed -i "s/ref('stg_order')/ref('stg_orders')/" models/marts/orders.sql
  echo '{"type":"result","status":"fixed","summary":"orders now refs stg_orders"}'
fi
"#;

const SED_FIX: &str = r#"
sed -i "s/ref('stg_order')/ref('stg_orders')/" models/marts/orders.sql
echo "pointed orders at stg_orders"
echo '{"type":"result","status":"fixed","summary":"orders referenced stg_order, which does not exist; it now refs stg_orders"}'
"#;

#[tokio::test]
async fn a_verified_fix_becomes_a_pull_request_linked_in_the_thread_told_when_the_schedule_recovers_and_who_merged_it(
) {
    // Arrange: pull requests are asked about every second (two at most).
    let story = Story::start_with(
        &Breakage::fixture("ref_typo").unwrap(),
        "48213",
        Some(SED_FIX),
        &[
            ("SELFHEAL_PR_POLL_SECS", "1"),
            ("SELFHEAL_PR_POLL_MAX_SECS", "2"),
        ],
    )
    .await;

    // Act
    let (alerts_ts, ts) = story.world.notify_failure("hourly_marts", "48213").await;
    let row = story.session_end("48213").await;

    // Assert: one PR, from the selfheal branch into main, opened by the bot.
    let prs = story.world.github.prs();
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let pr = &prs[0];
    assert_eq!(pr.head, "selfheal/hourly_marts/run-48213");
    assert_eq!(pr.base, "main");
    assert_eq!(pr.title, "selfheal: fix orders in hourly_marts (run 48213)");
    assert!(
        pr.body
            .starts_with("## Root cause\norders referenced stg_order"),
        "{}",
        pr.body
    );
    assert!(
        pr.body.contains("models/marts/orders.sql"),
        "diff summary: {}",
        pr.body
    );
    assert!(
        pr.body.contains("`dbt build --select orders+` passed"),
        "{}",
        pr.body
    );
    assert!(
        pr.body.contains("https://fake.slack.local/archives/"),
        "thread link: {}",
        pr.body
    );
    assert_eq!(story.world.github.merge_calls(), 0);
    // The thread has the PR link; the session is recorded as fixed.
    assert_eq!(row.status, Status::Fixed);
    let pr_url = row.pr_url.clone().unwrap();
    let fin = story.final_message(&ts).await;
    assert!(
        fin.starts_with(&format!(
            "✅ Fix for run `48213` is ready for review: {pr_url}"
        )),
        "{fin}"
    );
    // The fix really passes dbt on the PR branch; main was not touched.
    assert!(story
        .world
        .build_branch("selfheal/hourly_marts/run-48213")
        .await
        .unwrap());
    let thread = story.world.slack.thread(HEALING, &ts);
    assert!(
        thread.iter().any(|m| m.text.starts_with("📄 Run log")),
        "{thread:#?}"
    );
    assert!(thread
        .iter()
        .any(|m| m.text.contains("✅ Verification passed")));
    let _ = alerts_ts;

    // Act: while nobody touches the pull request, selfheal asks with its
    // ETag and GitHub answers 304; then octocat merges it.
    let github = &story.world.github;
    let asked = story
        .world
        .slack
        .wait_until(WAIT, |_| {
            (github.pr_reads().not_modified >= 2).then_some(())
        })
        .await;
    assert!(asked.is_some(), "conditional asks: {:?}", github.pr_reads());

    // Act: the next scheduled run passes before anyone merged the fix (the
    // failure was a flaky one after all); Bolt says so in the channel.
    story
        .world
        .slack
        .post_as_bot(
            HEALING,
            selfheal_fakes::slack::BotPost {
                bot_id: selfheal::demo::NOTIFIER_BOT.into(),
                app_id: Some("A0PARADIME".into()),
                name: "Paradime".into(),
                text: ":white_check_mark: *Bolt run succeeded* — schedule *hourly_marts*\nRun ID: 48214".into(),
                ..Default::default()
            },
        )
        .await;

    // Assert: the thread closes the loop, and the open pull request is told.
    let said = story
        .world
        .slack
        .wait_until(WAIT, |s| {
            s.thread(HEALING, &ts)
                .into_iter()
                .find(|m| m.by_bot && m.text.contains("which is still open"))
        })
        .await
        .expect("the thread says the pull request is still open");
    assert!(said.text.contains(&pr_url), "{}", said.text);
    assert!(story
        .world
        .slack
        .thread(HEALING, &ts)
        .iter()
        .any(|m| m.text == "✅ hourly_marts passed again (run 48214)"));
    let comments = github.comments();
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert_eq!(comments[0].number, pr.number);
    assert!(
        comments[0]
            .body
            .starts_with("`hourly_marts` passed again in run 48214 without this change."),
        "{}",
        comments[0].body
    );

    // Act: octocat merges it anyway.
    assert!(github.merge_pr(pr.number, "octocat"));
    let merged = |s: &selfheal_fakes::slack::FakeSlack| -> Vec<String> {
        s.thread(HEALING, &ts)
            .into_iter()
            .filter(|m| m.by_bot && m.text.contains("was merged by @octocat"))
            .map(|m| m.text)
            .collect()
    };
    let said = story
        .world
        .slack
        .wait_until(WAIT, |s| merged(s).first().cloned())
        .await;
    let history = crate::helpers::slash(
        &story.world.slack,
        ALERTS,
        "U0ANYONE",
        "history hourly_marts",
    )
    .await;

    // Assert: one line in the thread, the state in the store and in history.
    assert_eq!(said, Some(format!("🔀 {pr_url} was merged by @octocat")));
    assert!(
        history.contains(&format!("<{pr_url}|pull request> (merged by @octocat)")),
        "{history}"
    );
    let watched = story.store().watched_pr(&pr_url).unwrap().expect("watched");
    assert_eq!(
        watched.state,
        selfheal::domain::PrState::Merged {
            by: Some("octocat".into())
        }
    );
    let reads = github.pr_reads();
    assert!(reads.full >= 2 && reads.not_modified >= 2, "{reads:?}");
    assert_eq!(merged(&story.world.slack).len(), 1, "told once");
    assert_eq!(github.merge_calls(), 0);
    story.stop().await;
}

#[tokio::test]
async fn a_change_that_fails_verification_opens_no_pull_request() {
    let wrong = r#"
sed -i "s/ref('stg_order')/ref('stg_payments')/" models/marts/orders.sql
echo '{"type":"result","status":"fixed","summary":"guessed stg_payments"}'
"#;
    let story = Story::start(&Breakage::fixture("ref_typo").unwrap(), "7", Some(wrong)).await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "7").await;
    let row = story.session_end("7").await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(story.world.github.prs().is_empty());
    let fin = story.final_message(&ts).await;
    assert!(
        fin.contains("did not pass `dbt build --select orders+`"),
        "{fin}"
    );
    // The thread shows the failing node and the database's error, taken from
    // the verification's own run_results.json, not dbt's closing chatter.
    let thread = story.world.slack.thread(HEALING, &ts);
    let failed = thread
        .iter()
        .find(|m| m.text.starts_with("❌ Verification failed"))
        .unwrap_or_else(|| panic!("{thread:#?}"));
    assert!(
        failed.text.contains("• `orders` (model): "),
        "{}",
        failed.text
    );
    assert!(failed.text.contains("Error"), "{}", failed.text);
    assert!(!failed.text.contains("Done. PASS="), "{}", failed.text);
    story.stop().await;
}

#[tokio::test]
async fn a_repeated_failure_links_the_open_pull_request_and_opens_none() {
    let story = Story::start(
        &Breakage::fixture("ref_typo").unwrap(),
        "100",
        Some(SED_FIX),
    )
    .await;
    story.world.notify_failure("hourly_marts", "100").await;
    let first = story.session_end("100").await;
    assert_eq!(
        first.status,
        Status::Fixed,
        "{first:#?} {:#?}",
        story.store().events(first.id)
    );

    // Main is still broken (nobody merged yet): the next hourly run fails the same way.
    assert!(!story.world.scheduled_run("101").await.unwrap().passed);
    let (_, ts) = story.world.notify_failure("hourly_marts", "101").await;
    let second = story.session_end("101").await;

    assert_eq!(second.status, Status::Duplicate);
    assert_eq!(second.pr_url, first.pr_url);
    assert_eq!(story.world.github.prs().len(), 1);
    let fin = story.final_message(&ts).await;
    assert_eq!(
        fin,
        format!(
            "🔁 An open pull request already addresses this error: {} — no new pull request for run `101`.",
            first.pr_url.unwrap()
        )
    );
    story.stop().await;
}

#[tokio::test]
async fn secrets_in_the_run_log_and_agent_output_are_redacted_everywhere() {
    let leaky = r#"
echo "using token ghp_agentLeakedTokenAAAAAAAAAAAAAAAAAAAA"
sed -i "s/ref('stg_order')/ref('stg_orders')/" models/marts/orders.sql
echo '{"type":"result","status":"fixed","summary":"fixed; connected to postgres://svc:SuperSecretPw1@db/x"}'
"#;
    let story = Story::start(&Breakage::fixture("ref_typo").unwrap(), "55", Some(leaky)).await;
    // The scheduler's console carried a credential.
    let console = story.world.run_logs.join("55/console.txt");
    let mut text = std::fs::read_to_string(&console).unwrap();
    text.push_str("\nDEBUG connecting with password=PlantedRunLogSecret99 and xoxb-1111-2222-plantedslacktoken\n");
    std::fs::write(&console, text).unwrap();

    let (_, ts) = story.world.notify_failure("hourly_marts", "55").await;
    let row = story.session_end("55").await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    story.final_message(&ts).await;

    let secrets = [
        "ghp_agentLeakedTokenAAAAAAAAAAAAAAAAAAAA",
        "SuperSecretPw1",
        "PlantedRunLogSecret99",
        "xoxb-1111-2222-plantedslacktoken",
    ];
    let mut haystack = String::new();
    for channel in [HEALING, ALERTS] {
        for m in story.world.slack.messages(channel) {
            haystack.push_str(&m.text);
            haystack.push_str(&m.edits.join("\n"));
            haystack.push_str(&format!("{:?}", m.blocks));
        }
    }
    for pr in story.world.github.prs() {
        haystack.push_str(&pr.title);
        haystack.push_str(&pr.body);
    }
    let db = rusqlite::Connection::open(story.world.root.join("selfheal.db")).unwrap();
    for table in ["sessions", "session_events", "failures", "sightings"] {
        let mut stmt = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..cols {
                if let Ok(Some(v)) = r.get::<_, Option<String>>(i) {
                    haystack.push_str(&v);
                }
            }
        }
    }
    assert!(
        haystack.contains("[REDACTED]"),
        "the secrets were seen and masked"
    );
    for s in secrets {
        assert!(!haystack.contains(s), "secret {s} leaked");
    }
    story.stop().await;
}

/// dbt-doctor, the built-in default agent, on each failure class it fixes
/// (a misspelt ref is the demo's story, `commands::demo_tells_the_story…`):
/// the session fixes it by editing exactly the broken file, dbt passes on
/// the PR branch, the PR reaches GitHub and its link lands in the thread.
async fn doctor_fixes(case: &str, node: &str, file: &str, run_id: &str) {
    let story = Story::start(&Breakage::fixture(case).unwrap(), run_id, None).await;

    let (_, ts) = story.world.notify_failure("hourly_marts", run_id).await;
    let row = story.session_end(run_id).await;

    assert_eq!(row.status, Status::Fixed, "{case}: {row:#?}");
    assert_eq!(row.agent, "dbt-doctor");
    let prs = story.world.github.prs();
    assert_eq!(prs.len(), 1, "{case}");
    let branch = format!("selfheal/hourly_marts/run-{run_id}");
    assert_eq!(prs[0].head, branch);
    assert_eq!(prs[0].base, "main");
    assert_eq!(
        prs[0].title,
        format!("selfheal: fix {node} in hourly_marts (run {run_id})")
    );
    assert!(prs[0].body.contains("## Root cause\n"), "{}", prs[0].body);
    assert!(prs[0].body.contains("passed:"), "{}", prs[0].body);
    assert!(
        prs[0]
            .body
            .contains(&format!("Files committed:\n- `{file}`\n\n```")),
        "{case}: only the broken file: {}",
        prs[0].body
    );
    let fin = story.final_message(&ts).await;
    assert!(fin.contains(row.pr_url.as_deref().unwrap()), "{fin}");
    assert!(
        story.world.build_branch(&branch).await.unwrap(),
        "{case}: dbt fails on the PR branch"
    );
    story.stop().await;
}

#[tokio::test]
async fn dbt_doctor_fixes_a_missing_source_table() {
    doctor_fixes(
        "source_typo",
        "stg_orders",
        "models/staging/stg_orders.sql",
        "202",
    )
    .await;
}

#[tokio::test]
async fn dbt_doctor_fixes_an_unknown_column_duckdb_names_candidates_for() {
    doctor_fixes(
        "column_typo",
        "stg_orders",
        "models/staging/stg_orders.sql",
        "203",
    )
    .await;
}

#[tokio::test]
async fn dbt_doctor_fixes_a_misspelt_macro() {
    doctor_fixes(
        "macro_typo",
        "customers",
        "models/marts/customers.sql",
        "204",
    )
    .await;
}

#[tokio::test]
async fn a_failing_data_test_gets_the_offending_rows_and_no_pull_request() {
    let story = Story::start(&Breakage::fixture("not_null_failure").unwrap(), "301", None).await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "301").await;
    let row = story.session_end("301").await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(story.world.github.prs().is_empty());
    let fin = story.final_message(&ts).await;
    assert!(fin.contains("not_null_stg_orders_customer_id"), "{fin}");
    assert!(
        fin.contains("2018-01-20"),
        "the offending row is shown: {fin}"
    );
    assert!(fin.contains("not changed"), "{fin}");
    story.stop().await;
}

/// The bot serving a world whose hourly_marts heals with a Paradime agent
/// file without a selfheal section (`extra`: more of its YAML), so it runs
/// on the fake model the test scripts.
async fn llm_story(
    breakage: &Breakage,
    run_id: &str,
    extra: &str,
) -> (selfheal_fakes::llm::FakeLlm, Story) {
    let llm = selfheal_fakes::llm::FakeLlm::start_with_key("sk-test-llm-key-0000000000000000")
        .await
        .unwrap();
    let base_url = llm.base_url();
    let env = [
        ("SELFHEAL_LLM_BASE_URL", base_url.as_str()),
        ("SELFHEAL_LLM_MODEL", "gpt-test"),
        ("SELFHEAL_LLM_API_KEY_ENV", "SELFHEAL_TEST_LLM_KEY"),
    ];
    std::env::set_var("SELFHEAL_TEST_LLM_KEY", "sk-test-llm-key-0000000000000000");
    let (world, dir) = crate::helpers::broken_world("demo", breakage, run_id).await;
    std::fs::write(
        world.prod.join(".dinoai/agents/bolt-pipeline-healer.yml"),
        format!(
            "name: bolt-pipeline-healer\nversion: 1\nrole: On-call analytics engineer for the dbt pipeline\n\
             goal: Find why the run failed and come back with the cause and a concrete fix\n\
             backstory: Read the run logs first, then the model, then its parents; never guess.\n{extra}"
        ),
    )
    .unwrap();
    crate::helpers::heal_hourly_marts_with(&world, "bolt-pipeline-healer");
    let story = Story::serve(world, dir, &env).await;
    (llm, story)
}

#[tokio::test]
async fn a_failing_data_test_given_to_an_llm_agent_ends_diagnose_only() {
    use selfheal_fakes::llm::Scripted;
    use serde_json::json;

    // Arrange: the team's healer is a model that would happily "fix" a test.
    let breakage = Breakage::fixture("not_null_failure").unwrap();
    let (llm, story) = llm_story(&breakage, "303", "").await;
    llm.script(vec![
        Scripted::tool(
            "write_file",
            json!({"path": "models/staging/schema.yml", "content": "version: 2\n"}),
        ),
        Scripted::answer("FIXED: removed the not_null test on stg_orders.customer_id"),
    ]);

    // Act
    let (_, ts) = story.world.notify_failure("hourly_marts", "303").await;
    let row = story.session_end("303").await;

    // Assert: sorted as data, diagnosed only, nothing proposed.
    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(story.world.github.prs().is_empty());
    let thread = story.world.slack.thread(HEALING, &ts);
    assert!(
        thread
            .iter()
            .any(|m| m.text.starts_with("🧪 Sorted as *data*")),
        "{thread:#?}"
    );
    // The model was told the rule and shown the offending rows; its write was refused.
    let requests = llm.requests();
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("You must not edit, weaken, disable or delete a test"),
        "{system}"
    );
    let user = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("Offending rows"), "{user}");
    assert!(
        requests[1].to_string().contains("is not allowed"),
        "the write was refused: {}",
        requests[1]
    );
    story.stop().await;
}

#[tokio::test]
async fn an_ambiguous_ref_gets_a_diagnosis_and_no_pull_request() {
    let story = Story::start(&Breakage::fixture("ref_ambiguous").unwrap(), "302", None).await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "302").await;
    let row = story.session_end("302").await;

    assert_eq!(row.status, Status::NoFix, "{row:#?}");
    assert!(story.world.github.prs().is_empty());
    let fin = story.final_message(&ts).await;
    assert!(
        fin.contains("`raw_orders` (3) and `stg_orders` (3)"),
        "{fin}"
    );
    assert!(fin.contains("models/marts/customers.sql"), "{fin}");
    story.stop().await;
}

#[tokio::test]
async fn a_dbt_core_run_reported_with_selfheal_notify_is_healed_and_its_next_pass_closes_the_loop()
{
    // The scheduler is plain cron: after `dbt build` it calls `selfheal notify`.
    let story = Story::start(
        &Breakage::fixture("ref_typo").unwrap(),
        "600",
        Some(SED_FIX),
    )
    .await;
    let console = story.world.run_logs.join("600/console.txt");
    let notify = |run_id: &str, status: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"));
        command
            .args(["notify", "--schedule", "hourly_marts", "--run-id", run_id])
            .args(["--status", status, "--console"])
            .arg(&console)
            .arg("--project")
            .arg(&story.world.prod)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(story.world.env());
        async move {
            let out = command.output().await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };

    notify("600", "failed").await;

    // The bot recognises its own notify post and heals in its thread.
    let row = story.session_end("600").await;
    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    assert_eq!(row.channel, HEALING);
    assert_eq!(story.world.github.prs().len(), 1);
    let fin = story.final_message(&row.thread_ts).await;
    assert!(fin.contains("is ready for review"), "{fin}");

    // The next cron run passes: notify announces the recovery where the
    // failure was announced, and the healing thread hears it once.
    let said = notify("601", "passed").await;
    assert!(said.contains("Run 601 passed: posted to"), "{said}");
    let recovered = story
        .world
        .slack
        .wait_until(WAIT, |s| {
            s.thread(HEALING, &row.thread_ts)
                .into_iter()
                .find(|m| m.by_bot && m.text == "✅ hourly_marts passed again (run 601)")
        })
        .await;
    assert!(
        recovered.is_some(),
        "{:#?}",
        story.world.slack.thread(HEALING, &row.thread_ts)
    );
    // A pass after a pass says nothing where nobody asked for passes.
    let again = notify("602", "passed").await;
    assert!(again.contains("Run 602 passed; nothing posted."), "{again}");
    story.stop().await;
}

#[tokio::test]
async fn without_a_forge_token_the_branch_is_pushed_and_the_compare_link_posted() {
    let story = Story::start_with(
        &Breakage::fixture("ref_typo").unwrap(),
        "700",
        Some(SED_FIX),
        &[
            ("SELFHEAL_GITHUB_TOKEN", ""),
            (
                "SELFHEAL_REPO_WEB_URL",
                "https://github.com/acme/jaffle-shop",
            ),
        ],
    )
    .await;

    let (_, ts) = story.world.notify_failure("hourly_marts", "700").await;
    let row = story.session_end("700").await;

    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    let compare =
        "https://github.com/acme/jaffle-shop/compare/main...selfheal/hourly_marts/run-700?expand=1";
    assert_eq!(row.pr_url.as_deref(), Some(compare));
    assert!(
        story.world.github.requests().is_empty(),
        "no API call without a token"
    );
    let fin = story.final_message(&ts).await;
    assert!(fin.contains(compare), "{fin}");
    assert!(story
        .world
        .build_branch("selfheal/hourly_marts/run-700")
        .await
        .unwrap());
    story.stop().await;
}

#[tokio::test]
async fn dbt_doctor_heals_from_paradimes_run_log_api() {
    // The scheduler is Paradime Bolt: the run log lives behind its GraphQL API.
    let paradime = selfheal_fakes::paradime::FakeParadime::start("pk_demo", "ps_demo_secret")
        .await
        .unwrap();
    let endpoint = paradime.endpoint();
    let env = [
        ("SELFHEAL_RUN_LOG_SOURCE", "paradime"),
        ("PARADIME_API_ENDPOINT", endpoint.as_str()),
        ("PARADIME_API_KEY", "pk_demo"),
        ("PARADIME_API_SECRET", "ps_demo_secret"),
    ];
    let story = Story::start_with(
        &Breakage::fixture("column_typo").unwrap(),
        "48213",
        None,
        &env,
    )
    .await;
    // What Bolt holds for the run: the failed `dbt build`, its log paged by cursor.
    let console = std::fs::read_to_string(story.world.run_logs.join("48213/console.txt")).unwrap();
    std::fs::remove_dir_all(story.world.run_logs.join("48213")).unwrap();
    paradime.set_page_size(10);
    paradime.add_run(
        48213,
        "FAILED",
        vec![selfheal_fakes::paradime::FakeCommand::stdout(
            1,
            "dbt build",
            1,
            &console,
        )],
    );

    let (_, ts) = story.world.notify_failure("hourly_marts", "48213").await;
    let row = story.session_end("48213").await;

    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    let thread = story.world.slack.thread(HEALING, &ts);
    assert!(
        thread
            .iter()
            .any(|m| m.text.starts_with("📄 Run log (paradime:127.0.0.1")),
        "the thread says which source was used: {thread:#?}"
    );
    assert!(paradime.requests().len() > 2, "the log was paged");
    assert_eq!(story.world.github.prs().len(), 1);
    story.stop().await;
}

#[tokio::test]
async fn an_llm_agent_fixes_the_run_and_the_bot_opens_the_pull_request() {
    use selfheal_fakes::llm::Scripted;
    use serde_json::json;

    // A Paradime agent file with no selfheal section runs on the configured model.
    let breakage = Breakage::fixture("ref_typo").unwrap();
    let tools = "tools:\n  mode: allowlist\n  list: [read_file, ripgrep_search, get_bolt_run_logs, apply_patch, run_terminal_command]\n";
    let (llm, story) = llm_story(&breakage, "800", tools).await;
    llm.script(vec![
        Scripted::tool("get_bolt_run_logs", json!({})),
        Scripted::tool("read_file", json!({"path": "models/marts/orders.sql"})),
        Scripted::tool(
            "apply_patch",
            json!({"path": "models/marts/orders.sql", "find": breakage.replace, "replace": breakage.find}),
        ),
        Scripted::tool("run_terminal_command", json!({"command": "dbt parse"})),
        Scripted::answer("FIXED: orders referenced `stg_order`, which does not exist; it now refs `stg_orders`."),
    ]);

    let (_, ts) = story.world.notify_failure("hourly_marts", "800").await;
    let row = story.session_end("800").await;

    assert_eq!(row.status, Status::Fixed, "{row:#?}");
    assert_eq!(row.agent, "bolt-pipeline-healer");
    let prs = story.world.github.prs();
    assert_eq!(prs.len(), 1);
    assert!(
        prs[0].body.contains("orders referenced `stg_order`"),
        "{}",
        prs[0].body
    );
    assert!(story
        .world
        .build_branch("selfheal/hourly_marts/run-800")
        .await
        .unwrap());
    // Every tool call is recorded and shown in the progress message.
    let tools = story
        .store()
        .events(row.id)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "tool")
        .count();
    assert_eq!(tools, 4);
    let progress = story
        .world
        .slack
        .thread(HEALING, &ts)
        .into_iter()
        .find(|m| m.text.contains("Healing run `800`"))
        .unwrap();
    assert!(
        progress.edits.iter().any(|e| e.contains("🔧"))
            || format!("{:?}", progress.blocks).contains("🔧")
    );
    // The model never saw the key, and saw the run log only as quoted data.
    let first = &llm.requests()[0];
    let sent = first.to_string();
    assert!(!sent.contains("sk-test-llm-key"));
    story.stop().await;
}

#[tokio::test]
async fn a_mention_after_the_fix_starts_a_follow_up_on_the_same_pull_request() {
    let story = Story::start(
        &Breakage::fixture("ref_typo").unwrap(),
        "950",
        Some(FIX_THEN_FOLLOW_UP),
    )
    .await;
    let (_, ts) = story.world.notify_failure("hourly_marts", "950").await;
    let first = story.session_end("950").await;
    assert_eq!(first.status, Status::Fixed);

    let bot = story.world.slack.bot_user_id().to_string();
    story
        .world
        .slack
        .post_as_user(
            HEALING,
            "U0REVIEWER",
            &format!("<@{bot}> also add a note for reviewers"),
            Some(&ts),
        )
        .await;

    // The follow-up is a second session in the same thread, on the same PR.
    let store = story.store();
    let deadline = tokio::time::Instant::now() + WAIT;
    let second = loop {
        let sessions = store.sessions_in_thread(HEALING, &ts).unwrap();
        if let Some(s) = sessions
            .iter()
            .find(|s| s.id != first.id && s.status.is_terminal())
        {
            break s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no follow-up: {sessions:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second.status, Status::Fixed, "{second:#?}");
    assert_eq!(second.pr_url, first.pr_url);
    assert_eq!(story.world.github.prs().len(), 1, "no second pull request");
    let prompt = store
        .events(second.id)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "prompt")
        .unwrap()
        .text;
    assert!(prompt.contains("also add a note for reviewers"), "{prompt}");
    assert!(
        prompt.contains("orders now refs stg_orders"),
        "history: {prompt}"
    );
    // The branch got the follow-up commit on top of the first fix.
    let log = std::process::Command::new("git")
        .args(["log", "--format=%s", "main..selfheal/hourly_marts/run-950"])
        .current_dir(&story.world.origin)
        .output()
        .unwrap();
    let subjects = String::from_utf8_lossy(&log.stdout);
    assert_eq!(subjects.lines().count(), 2, "{subjects}");
    assert!(story
        .world
        .build_branch("selfheal/hourly_marts/run-950")
        .await
        .unwrap());
    story.stop().await;
}
