//! Runs an external command as the agent (Claude Code, Codex, aider, a script…).
//!
//! The child gets the prompt in a file named by `SELFHEAL_PROMPT_FILE` and as the
//! first JSON line on stdin; stdin stays open for the agent's whole life so that
//! later messages (thread replies) can be sent as more JSON lines. Its stdout is
//! read line by line and interpreted by [`super::protocol`]. It runs in its own
//! process group so that stopping it also stops every child it forked.
//!
//! The child does not inherit selfheal's environment (which holds the Slack and
//! forge tokens): it gets a small allowlist plus the agent's own `env`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::protocol::MAX_LINE;

/// Variables passed through from selfheal's own environment.
const PASSED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "TERM",
];

/// What to run and with what.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub prompt_file: PathBuf,
    /// `SELFHEAL_*` variables describing the session.
    pub session_env: Vec<(String, String)>,
}

/// Something the running agent produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout(String),
    Stderr(String),
    /// An already-interpreted event, from a built-in agent.
    Event(crate::domain::AgentEvent),
    /// The process exited; `code` is None when a signal ended it.
    Exited {
        code: Option<i32>,
    },
}

/// A running agent: a child process, or a built-in agent's task.
pub struct Running {
    pub output: mpsc::Receiver<Output>,
    stdin: Option<mpsc::Sender<String>>,
    pgid: Option<i32>,
    task: Option<tokio::task::AbortHandle>,
}

impl Running {
    /// Wraps a built-in agent running as a task that reports on `output`.
    /// `input` receives what [`Running::send_line`] sends, if the agent listens.
    pub fn in_process(
        output: mpsc::Receiver<Output>,
        task: tokio::task::AbortHandle,
        input: Option<mpsc::Sender<String>>,
    ) -> Running {
        Running {
            output,
            stdin: input,
            pgid: None,
            task: Some(task),
        }
    }

    /// Sends one JSON line to the agent's stdin. Fails quietly if the agent closed it.
    pub async fn send_line(&self, line: String) {
        if let Some(stdin) = &self.stdin {
            let _ = stdin.send(line).await;
        }
    }

    /// Ends the agent and all its children: SIGTERM to the process group, then
    /// SIGKILL after `grace`.
    pub fn terminate(&self, grace: Duration) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let Some(pgid) = self.pgid else { return };
        signal_group(pgid, libc::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            signal_group(pgid, libc::SIGKILL);
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        // Whatever happens to the session, no agent process outlives it.
        if let Some(pgid) = self.pgid {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// The environment variable naming an agent's session (see
/// [`crate::store::Store::session_tag`]); the agent's children inherit it.
pub const SESSION_TAG_ENV: &str = "SELFHEAL_SESSION_TAG";

/// Kills every process whose environment carries `tag`: what is left of an
/// agent whose bot was killed (`kill -9`, OOM, power loss) before it could
/// stop it. Returns how many were killed.
pub fn kill_tagged(tag: &str) -> usize {
    let wanted = format!("{SESSION_TAG_ENV}={tag}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Unreadable (another user's process, or gone): not ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            // SAFETY: kill(2) has no memory-safety preconditions.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid
    // addresses the process group we created for the agent.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Starts the command and writes `first_line` (the prompt as JSON) to its stdin.
pub async fn spawn(spec: &CommandSpec, first_line: String) -> Result<Running> {
    let (program, args) = spec
        .argv
        .split_first()
        .context("the agent command is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.workdir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in PASSED_ENV {
        if let Ok(value) = std::env::var(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(spec.session_env.iter().map(|(k, v)| (k, v)));
    cmd.env("SELFHEAL_PROMPT_FILE", &spec.prompt_file);
    cmd.env("SELFHEAL_WORKDIR", &spec.workdir);

    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting the agent command `{program}`"))?;
    let pgid = child.id().map(|pid| pid as i32);

    let (out_tx, out_rx) = mpsc::channel(256);
    let (in_tx, in_rx) = mpsc::channel::<String>(64);

    let stdin = child.stdin.take().context("agent stdin")?;
    tokio::spawn(write_stdin(stdin, first_line, in_rx));
    let stdout = child.stdout.take().context("agent stdout")?;
    let stderr = child.stderr.take().context("agent stderr")?;
    tokio::spawn(supervise(child, pgid, stdout, stderr, out_tx));

    Ok(Running {
        output: out_rx,
        stdin: Some(in_tx),
        pgid,
        task: None,
    })
}

async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    first_line: String,
    mut lines: mpsc::Receiver<String>,
) {
    let mut next = Some(first_line);
    while let Some(line) = next {
        if stdin.write_all(line.as_bytes()).await.is_err()
            || stdin.write_all(b"\n").await.is_err()
            || stdin.flush().await.is_err()
        {
            // The agent closed its stdin or exited; nothing more to deliver.
            return;
        }
        next = lines.recv().await;
    }
}

/// Forwards stdout and stderr lines, then the exit status. When the agent
/// exits, whatever it left running in its process group is killed: a
/// grandchild holding the pipes open must neither outlive the session nor
/// keep it from ending.
async fn supervise(
    mut child: Child,
    pgid: Option<i32>,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    tx: mpsc::Sender<Output>,
) {
    let out = tokio::spawn(forward_lines(stdout, tx.clone(), Output::Stdout));
    let err = tokio::spawn(forward_lines(stderr, tx.clone(), Output::Stderr));
    let code = match child.wait().await {
        Ok(status) => status.code(),
        Err(_) => None,
    };
    if let Some(pgid) = pgid {
        signal_group(pgid, libc::SIGKILL);
    }
    // What the agent printed before it exited is still read to the end.
    let drained = async {
        let _ = out.await;
        let _ = err.await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
    let _ = tx.send(Output::Exited { code }).await;
}

/// Reads lines of at most [`MAX_LINE`] bytes (longer ones are cut, never
/// buffered whole) and forwards them lossily decoded as UTF-8.
async fn forward_lines<R: AsyncRead + Unpin>(
    reader: R,
    tx: mpsc::Sender<Output>,
    wrap: fn(String) -> Output,
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut overlong = false;
        // Read one line, keeping at most MAX_LINE bytes of it.
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => return,
            };
            if buf.is_empty() {
                if line.is_empty() {
                    return;
                }
                break;
            }
            let (chunk, consumed, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            if chunk.len() > room {
                overlong = true;
            }
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            reader.consume(consumed);
            if done {
                break;
            }
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if overlong {
            text.push('…');
        }
        if tx.send(wrap(text)).await.is_err() {
            return;
        }
    }
}
