//! Local fakes of the services selfheal talks to, for its tests, its demo and
//! its benchmarks: each serves the real protocol on a loopback port, holds
//! its world in memory, records what it was asked and can be told to fail.
//!
//! This crate must not depend on `selfheal` (the demo depends on it, and
//! cargo forbids cycles): whatever the bot decides — the Slack scopes it is
//! granted, say — the caller passes in.
//!
//! # Layout
//! - [`server`]: what every fake shares — the server's lifecycle (loopback
//!   port 0, serve, stop, abort on drop) and the HTTP plumbing (credentials,
//!   request records, injected failures, JSON answers).
//! - [`slack`]: Slack's Web API and Socket Mode.
//! - [`github`]: GitHub's REST API for pull requests.
//! - [`azure_devops`]: Azure DevOps' Git REST API for pull requests.
//! - [`bitbucket`]: Bitbucket Cloud's REST 2.0 API for pull requests.
//! - [`gitea`]: a Gitea or Forgejo server's API v1 for pull requests.
//! - [`gitlab`]: GitLab's REST v4 API for merge requests.
//! - [`llm`]: an OpenAI-compatible chat-completions endpoint replaying scripts.
//! - [`paradime`]: Paradime's GraphQL API for Bolt runs, their logs and
//!   retries, in the documents Paradime's SDK sends.
//! - [`dbt_cloud`]: dbt Cloud's v2 API for runs, their artifacts and retries.
//! - [`retry`]: what those two share about the runs a retry starts.

pub mod azure_devops;
pub mod bitbucket;
pub mod dbt_cloud;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod llm;
pub mod paradime;
pub mod retry;
pub mod server;
pub mod slack;
