//! The `selfheal` binary: parses the command line, loads configuration,
//! initialises logging and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use selfheal::config::settings::{LogFormat, SELFHEAL_DB, SELFHEAL_LOG, SELFHEAL_LOG_FORMAT};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// A self-hosted Slack bot that heals failed dbt pipeline runs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the set-up for real, as `dbt debug` does: the configuration, both
    /// Slack tokens and the bot's scopes, every channel, the repository, the run
    /// logs, dbt (and `dbt debug` where verification builds), the forge token and
    /// each model endpoint. One ✓/⚠/✗ line each, with what to do; exits 1 when
    /// anything fails.
    Check {
        /// Only the checks that need no network (files, paths, dbt, the
        /// verification plan).
        #[arg(long)]
        offline: bool,
    },
    /// Run the bot until SIGINT or SIGTERM.
    Run,
    /// Tell the whole story locally: a broken commit, the failed run, the
    /// healing thread in a local Slack, the pull request. Needs no configuration.
    #[cfg(feature = "demo")]
    Demo {
        /// Keep the demo's folder (project, warehouse, database) and print its path.
        #[arg(long)]
        keep: bool,
        /// The breakage to push, one of: accepted_values_failure, column_typo,
        /// macro_typo, missing_package, not_null_failure, ref_ambiguous,
        /// ref_typo, source_typo, syntax_error, yaml_error (`--list` says what each breaks).
        #[arg(long, default_value = "ref_typo")]
        case: String,
        /// List the cases and what each breaks, then exit.
        #[arg(long)]
        list: bool,
    },
    /// Heal one failed run in the terminal, without Slack: the verified fix is
    /// left on a selfheal/... branch of the project's repository.
    Fix {
        /// The dbt project directory (inside a git repository).
        #[arg(long, default_value = ".")]
        project: std::path::PathBuf,
        /// The failed run's run-log directory (run_results.json, dbt.log,
        /// console.txt); its name is the run id.
        #[arg(long)]
        run: std::path::PathBuf,
        /// The agent to heal with (default: dbt-doctor).
        #[arg(long)]
        agent: Option<String>,
        /// The schedule name used in the branch name.
        #[arg(long, default_value = "manual")]
        schedule: String,
    },
    /// Fire drill: on a copy of a dbt project (DuckDB), inject realistic faults
    /// one at a time, heal each like `selfheal fix`, and print a scorecard. The
    /// project's repository and production are only read, never changed.
    Drill {
        /// The dbt project directory.
        #[arg(long, default_value = ".")]
        project: std::path::PathBuf,
        /// The folder of the project's profiles.yml (default: dbt's search).
        #[arg(long)]
        profiles_dir: Option<std::path::PathBuf>,
        /// The agent to heal with (default: dbt-doctor).
        #[arg(long)]
        agent: Option<String>,
        /// Only these cases (e.g. ref_typo,column_typo).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// A target of the profile that is safe to build into (slim CI).
        #[arg(long)]
        ci_target: Option<String>,
        /// Print the scorecard as JSON.
        #[arg(long)]
        json: bool,
        /// Keep the drill's folder (copy, origin, production, run logs, transcripts).
        #[arg(long)]
        keep: bool,
    },
    /// Measure this build against the local Slack fake (ack and reply latency,
    /// a burst of failures, streaming, memory, history at scale) and print each
    /// figure beside its target. Build with --release for figures that mean anything.
    #[cfg(feature = "demo")]
    Bench {
        /// Runs per scenario; medians are printed.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these scenarios (traffic, burst, streaming, memory, history,
        /// history-postgres, replicas).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Sessions stored for the history scenario.
        #[arg(long, default_value_t = 1_000_000)]
        history_sessions: usize,
        /// The selfheal binary to measure (default: this one), e.g. a build
        /// without the demo, or a wrapper such as a profiler.
        #[arg(long, env = "SELFHEAL_BENCH_BOT")]
        bin: Option<std::path::PathBuf>,
        /// A PostgreSQL URL (postgres://…) for the history-postgres and
        /// replicas scenarios, which use and then drop schemas of their own
        /// there; both are skipped without.
        #[arg(long, env = "SELFHEAL_BENCH_PG_URL")]
        postgres: Option<String>,
    },
    /// Inspect stored healing sessions.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Store a dbt Core run's artifacts as its run log and, when it failed,
    /// post the failure notification to the schedule's channels (for cron/CI).
    Notify {
        /// The schedule the run belongs to (a name in SELFHEAL_SCHEDULES).
        #[arg(long)]
        schedule: String,
        /// The run's id; its artifacts go to SELFHEAL_RUN_LOGS/<run-id>/.
        #[arg(long)]
        run_id: String,
        /// The dbt project directory (holding target/ and logs/).
        #[arg(long, default_value = ".")]
        project: std::path::PathBuf,
        /// The run's console output: a file, or - for stdin.
        #[arg(long)]
        console: Option<String>,
        /// Whether the run failed or passed (default: read from run_results.json).
        #[arg(long, value_enum)]
        status: Option<selfheal::notify::RunStatus>,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Print a session's transcript: the prompt, every request to the model and
    /// its answer, tool calls and results, verification, outcome, tokens and cost.
    Show {
        /// The session id (as in the thread's buttons and /selfheal history).
        id: i64,
        /// The database (default: SELFHEAL_DB, else data/selfheal.db).
        #[arg(long)]
        db: Option<std::path::PathBuf>,
        /// Print long texts whole instead of cutting them.
        #[arg(long)]
        full: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and notify print their own story; the bot's logs would drown it.
    let default_log = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { .. } | Command::Bench { .. } => "warn",
        Command::Notify { .. }
        | Command::Fix { .. }
        | Command::Drill { .. }
        | Command::Session { .. } => "warn",
        _ => SELFHEAL_LOG.default_text(),
    };
    let format = match SELFHEAL_LOG_FORMAT.from_process_env() {
        Ok(format) => format.unwrap_or(LogFormat::Text),
        Err(e) => {
            eprintln!("selfheal: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(SELFHEAL_LOG.name())
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr);
    match format {
        // One JSON object per line, for a log collector.
        LogFormat::Json => logs.json().init(),
        // Colour codes only for a person at a terminal, never into a log file.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }

    // The demo brings its own world and needs no configuration.
    #[cfg(feature = "demo")]
    if let Command::Demo { keep, case, list } = cli.command {
        if list {
            return match selfheal::demo::cases() {
                Ok(cases) => {
                    for (name, b) in cases {
                        println!("{name:<24} {}", b.description);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("selfheal demo: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        return block_on(async {
            match selfheal::demo::run_demo(selfheal::demo::DemoOptions { keep, case }).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("selfheal demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        });
    }

    #[cfg(feature = "demo")]
    if let Command::Bench {
        runs,
        only,
        history_sessions,
        bin,
        postgres,
    } = cli.command
    {
        return block_on(async {
            let opts = selfheal::bench::BenchOptions {
                runs: runs.max(1),
                only,
                history_sessions: history_sessions.max(1000),
                bin,
                postgres,
            };
            match selfheal::bench::run_bench(opts).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("selfheal bench: {e:#}");
                    ExitCode::from(2)
                }
            }
        });
    }

    // Reading the store needs no Slack configuration either.
    if let Command::Session {
        command: SessionCommand::Show { id, db, full },
    } = cli.command
    {
        let _ = dotenvy::dotenv();
        // A path is never invalid, so the default always stands in.
        let db = db
            .or_else(|| SELFHEAL_DB.from_process_env().ok().flatten())
            .unwrap_or_default();
        return match selfheal::transcript::show(&db, id, full) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("selfheal session show: {e:#}");
                ExitCode::from(2)
            }
        };
    }

    // `fix` works on a local project and needs no Slack configuration.
    if let Command::Fix {
        project,
        run,
        agent,
        schedule,
    } = cli.command
    {
        return block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            let dbt = match selfheal::config::DbtSettings::from_process_env() {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("selfheal fix: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let opts = selfheal::fix::FixOptions {
                project,
                run,
                agent,
                schedule,
                dbt,
                transcript: None,
            };
            match selfheal::fix::run_fix(opts, shutdown).await {
                Ok(status) => ExitCode::from(selfheal::fix::exit_code(status)),
                Err(e) => {
                    eprintln!("selfheal fix: {e:#}");
                    ExitCode::from(2)
                }
            }
        });
    }

    // `drill` brings its own world and needs no Slack configuration.
    if let Command::Drill {
        project,
        profiles_dir,
        agent,
        only,
        ci_target,
        json,
        keep,
    } = cli.command
    {
        return block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            let settings =
                selfheal::config::DbtSettings::from_process_env().map_err(anyhow::Error::from);
            let dbt = selfheal::drill::default_dbt().await;
            let (settings, dbt) = match (settings, dbt) {
                (Ok(s), Ok(d)) => (s, d),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("selfheal drill: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let opts = selfheal::drill::DrillOptions {
                project,
                profiles_dir,
                agent,
                only,
                ci_target,
                keep,
                dbt,
                timeout: settings.timeout,
            };
            match selfheal::drill::run_drill(opts, shutdown).await {
                Ok(card) => {
                    if json {
                        println!("{:#}", card.json());
                    } else {
                        print!("{}", card.table());
                    }
                    ExitCode::from(if card.passed() { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("selfheal drill: {e:#}");
                    ExitCode::from(2)
                }
            }
        });
    }

    let config = match selfheal::config::Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            match e.lines().as_slice() {
                [one] => eprintln!("selfheal: configuration error: {one}"),
                lines => {
                    eprintln!("selfheal: {} configuration problems:", lines.len());
                    for line in lines {
                        eprintln!("  - {line}");
                    }
                }
            }
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check { offline } => block_on(async {
            print!("{}", selfheal::config::summary(&config));
            println!();
            let results = selfheal::check::probe::run(&config, offline).await;
            print!("{}", selfheal::check::report(&results));
            if offline {
                println!("(--offline: Slack, remote repositories, hosted run logs, dbt debug, the forge and model endpoints were not checked)");
            }
            if selfheal::check::failed(&results) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }),
        Command::Run => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("selfheal: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                match selfheal::app::run(config, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        // `{:#}`, not `{:?}`: the cause chain on one line, and no
                        // backtrace even when RUST_BACKTRACE is set — a stop like
                        // this is an expected failure, not a bug.
                        eprintln!("selfheal run: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        #[cfg(feature = "demo")]
        Command::Demo { .. } | Command::Bench { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::Fix { .. } | Command::Drill { .. } | Command::Session { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::Notify {
            schedule,
            run_id,
            project,
            console,
            status,
        } => block_on(async {
            let request = selfheal::notify::Request {
                schedule,
                run_id,
                project,
                console,
                status,
            };
            match selfheal::notify::run(&config, &request).await {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("selfheal notify: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

/// Runs `f` on a fresh multi-threaded runtime.
fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(f),
        Err(e) => {
            eprintln!("selfheal: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}
