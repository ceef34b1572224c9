//! `selfheal drill`: a fire drill for a team's own dbt project.
//!
//! On a copy of the project, in a repository and a production of the
//! drill's own ([`stage`]), it injects realistic faults one at a time
//! ([`faults`]), commits and pushes each like a real bad commit, runs the
//! real failing `dbt build` as the scheduler would, heals it through the
//! same code path as `selfheal fix`, and scores what the healer did
//! ([`score`]): fixed and verified, correctly declined, diagnosed, or wrong,
//! the seconds it took, and whether production stayed byte-identical.
//!
//! It never touches the team's repository or production: their files are
//! only read (the project folder and the DuckDB files its profile names are
//! copied), and every dbt command runs with the drill's profiles dir.

pub mod faults;
pub mod profile;
pub mod score;
pub mod stage;
pub mod text;
pub mod yml;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::{DbtSettings, DBT_DOCTOR};
use crate::fix::{run_fix, FixOptions};
use crate::session::sink::Sink;
use crate::store::Status;
use faults::{Case, Facts, Fault};
use score::{CaseResult, Outcome, Proposal, Scorecard};
use stage::{Setup, Stage};

/// The schedule name the drill heals under (`selfheal/drill/run-<case>`).
pub const SCHEDULE: &str = "drill";
/// Candidates tried per case until one makes the build fail.
const ATTEMPTS: usize = 3;

/// What to drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The team's dbt project folder (only read).
    pub project: PathBuf,
    /// The folder of the team's profiles.yml; None: dbt's own search.
    pub profiles_dir: Option<PathBuf>,
    /// The agent to heal with; None: dbt-doctor.
    pub agent: Option<String>,
    /// Case names to run; empty: all.
    pub only: Vec<String>,
    /// A target of the profile that is safe to build into (slim CI).
    pub ci_target: Option<String>,
    /// Keep the drill folder and print where it is.
    pub keep: bool,
    /// The dbt executable.
    pub dbt: PathBuf,
    /// The limit of one dbt command.
    pub timeout: Duration,
}

/// Runs the drill; progress goes to stderr, the scorecard is returned.
/// Errors mean the drill could not run (not a DuckDB project, a failing
/// baseline); a drill that ran and failed is a scorecard that did not pass.
pub async fn run_drill(opts: DrillOptions, shutdown: CancellationToken) -> Result<Scorecard> {
    let cases = parse_cases(&opts.only)?;
    let agent = opts.agent.clone().unwrap_or_else(|| DBT_DOCTOR.to_string());
    let root = std::env::temp_dir().join(format!("selfheal-drill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = drill(&opts, &cases, &agent, &root, shutdown).await;
    if opts.keep {
        eprintln!("The drill folder is kept at {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

/// The cases `only` names, in the drill's order; all of them when empty.
pub fn parse_cases(only: &[String]) -> Result<Vec<Case>> {
    let mut wanted = vec![];
    for name in only
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|n| !n.trim().is_empty())
    {
        match Case::parse(name) {
            Some(case) => wanted.push(case),
            None => {
                let known: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
                bail!(
                    "unknown case '{}' (known: {})",
                    name.trim(),
                    known.join(", ")
                );
            }
        }
    }
    Ok(Case::ALL
        .into_iter()
        .filter(|c| wanted.is_empty() || wanted.contains(c))
        .collect())
}

async fn drill(
    opts: &DrillOptions,
    cases: &[Case],
    agent: &str,
    root: &Path,
    shutdown: CancellationToken,
) -> Result<Scorecard> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stage = Stage::create(&Setup {
        project: &opts.project,
        profiles_dir: opts.profiles_dir.as_deref(),
        root,
        dbt: &opts.dbt,
        timeout: opts.timeout,
    })
    .await?;
    if let Some(ci) = &opts.ci_target {
        let outputs =
            crate::dbt::profile::profile(&stage.profile.yaml, &stage.settings.profile, &|_| None)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .outputs;
        if !outputs.contains_key(ci) {
            bail!(
                "--ci-target {ci} is not a DuckDB output of profile `{}`",
                stage.settings.profile
            );
        }
    }
    eprintln!(
        "🧯 Drill of {} with {agent}: a copy in {}, production target `{}` inside it",
        opts.project.display(),
        stage.project.display(),
        stage.profile.prod_target
    );
    for note in &stage.profile.dropped {
        eprintln!("   (left out of the drill's profile: {note})");
    }
    let baseline_started = Instant::now();
    let baseline = stage.baseline().await?;
    let baseline_secs = baseline_started.elapsed().as_secs_f64();
    eprintln!(
        "   baseline passes: {}dbt build {:.1} s",
        baseline
            .deps
            .map(|d| format!("dbt deps {:.1} s, ", d.as_secs_f64()))
            .unwrap_or_default(),
        baseline.build.as_secs_f64()
    );
    let facts = stage.facts(baseline.catalog).await?;

    let mut results = vec![];
    for &case in cases {
        if shutdown.is_cancelled() {
            break;
        }
        let result = run_case(&stage, &facts, case, agent, opts, &shutdown).await?;
        eprintln!("{}", end_line(&result));
        results.push(result);
    }
    Ok(Scorecard {
        project: opts.project.display().to_string(),
        agent: agent.to_string(),
        date: started_at,
        baseline_secs,
        cases: results,
    })
}

async fn run_case(
    stage: &Stage,
    facts: &Facts,
    case: Case,
    agent: &str,
    opts: &DrillOptions,
    shutdown: &CancellationToken,
) -> Result<CaseResult> {
    let started = Instant::now();
    let mut result = CaseResult {
        case,
        fault: None,
        outcome: Outcome::NotApplicable {
            why: faults::not_applicable(case, facts),
        },
        session: None,
        branch: None,
        heal_secs: 0.0,
        case_secs: 0.0,
        production: vec![],
    };
    let candidates = faults::candidates(case, facts);
    if candidates.is_empty() {
        return Ok(result);
    }
    let run_id = case.name();
    let mut injected: Option<(&Fault, String, Vec<String>)> = None;
    for fault in candidates.iter().take(ATTEMPTS) {
        eprintln!(
            "▶ {} ({}): {} at {}:{}",
            case.name(),
            case.title(),
            fault.what,
            fault.file,
            fault.line
        );
        let (bad, files) = stage.inject(fault).await?;
        let run = stage.scheduled_run(run_id).await?;
        if !run.success {
            injected = Some((fault, bad, files));
            break;
        }
        eprintln!("  that did not make `dbt build` fail; undoing it");
        stage.reset(&bad, case).await?;
    }
    let Some((fault, bad, broken)) = injected else {
        result.outcome = Outcome::NotApplicable {
            why: format!("`dbt build` passed with each of the first {ATTEMPTS} places tried"),
        };
        return Ok(result);
    };
    result.fault = Some((fault.what.clone(), fault.file.clone(), fault.line));

    let case_dir = stage.root.join("cases").join(case.name());
    std::fs::create_dir_all(&case_dir)?;
    let transcript = case_dir.join("session.txt");
    let before = stage.checksums()?;
    let heal_started = Instant::now();
    let file = std::fs::File::create(&transcript)
        .with_context(|| format!("creating {}", transcript.display()))?;
    let sink = Sink::writer(Box::new(file));
    let fix = FixOptions {
        project: stage.project.clone(),
        run: stage.run_logs.join(run_id),
        agent: Some(agent.to_string()),
        schedule: SCHEDULE.to_string(),
        dbt: DbtSettings {
            exe: opts.dbt.clone(),
            profiles_dir: Some(stage.profiles_dir.clone()),
            ci_target: opts.ci_target.clone(),
            prod_target: None,
            state_dir: None,
            timeout: opts.timeout,
        },
        transcript: Some(sink.clone()),
    };
    let status = match run_fix(fix, shutdown.child_token()).await {
        Ok(status) => status,
        Err(e) => {
            sink.say(&format!("selfheal fix: {e:#}\n"));
            Status::Failed
        }
    };
    result.heal_secs = heal_started.elapsed().as_secs_f64();
    result.production = stage::compare(&before, &stage.checksums()?);
    result.session = Some(status);

    let branch = crate::session::machine::branch_name(SCHEDULE, run_id);
    let proposal = match stage.changed_files(&bad, &branch).await? {
        None => None,
        Some(files) => {
            let matches_baseline = stage.matches_baseline(&branch, &files).await?;
            let builds = if matches_baseline {
                None
            } else {
                Some(stage.branch_builds(&branch).await?)
            };
            result.branch = Some(branch.clone());
            Some(Proposal {
                branch,
                files,
                matches_baseline,
                builds,
            })
        }
    };
    result.outcome = score::classify(case, &broken, status, proposal.as_ref());
    stage.reset(&bad, case).await?;
    result.case_secs = started.elapsed().as_secs_f64();
    if !result.passed() {
        let text = std::fs::read_to_string(&transcript).unwrap_or_default();
        let shown = stage::last_lines(text.trim_end(), 12);
        eprintln!("  the session's last words ({}):", transcript.display());
        for line in shown.lines() {
            eprintln!("  │ {line}");
        }
    }
    Ok(result)
}

/// The progress line that ends a case.
fn end_line(r: &CaseResult) -> String {
    if let Outcome::NotApplicable { why } = &r.outcome {
        return format!("– {}: not applicable ({why})", r.case.name());
    }
    let production = if r.production_unchanged() {
        "production unchanged"
    } else {
        "PRODUCTION CHANGED"
    };
    format!(
        "{} {}: {} in {:.1} s (case {:.1} s); {production}",
        if r.passed() { "✓" } else { "✗" },
        r.case.name(),
        r.outcome.describe(),
        r.heal_secs,
        r.case_secs
    )
}

/// The dbt executable for a drill (and the demo): `SELFHEAL_DBT`, else the
/// pinned one.
pub async fn default_dbt() -> Result<PathBuf> {
    crate::dbt::locate(crate::config::settings::SELFHEAL_DBT.set_in_process_env()?)
        .await
        .context("finding dbt")
}
