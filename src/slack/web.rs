//! The Web API gateway: every call selfheal makes to Slack's HTTP API.
//!
//! It owns Slack manners for writes: per-channel pacing (Slack allows a short
//! burst, then about one message per second per channel; slack-morphism's own
//! throttle is per team), with the slots booked in a [`SlotBook`] that a fleet
//! of replicas may share; honouring `429 Retry-After`; timeouts on every call
//! and bounded retries of transient failures. A post that timed out or met a
//! 5xx may have landed all the same, so before it is retried the channel is
//! searched for it: a retry never posts a message twice. Writes to one channel
//! are serialised in this process, so they also land in the order they were
//! made, except that a first answer to a notification ([`SlackWeb::answer`])
//! goes ahead of routine writes (progress, queue notes, pointers): in a storm
//! of failures, every one is acknowledged first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tracing::{debug, warn};

use crate::recognize::Identity;

use super::pace::{Booked, MemoryBook, Pace, Write};

pub type Connector = SlackClientHyperHttpsConnector;

/// Where a channel's write slots are booked: in this process's memory, or in
/// the store that a fleet of replicas shares.
pub trait SlotBook: Send + Sync + 'static {
    /// Books the channel's next write slot at or after `now` for a `write`,
    /// and says when it may go (GCRA: `interval` apart, up to `burst` at
    /// once), or, for a routine write while answers are going, when to ask
    /// again (see [`super::pace::Slots::book`]).
    fn book(
        &self,
        channel: &str,
        now: std::time::SystemTime,
        write: Write,
    ) -> anyhow::Result<Booked>;
    /// After a 429: no slot of `channel` before `until`.
    fn hold(&self, channel: &str, until: std::time::SystemTime) -> anyhow::Result<()>;
    /// The write booked for `booked` reached Slack as much as `by` later. If
    /// it opened its spell, Slack's bucket started refilling that much later,
    /// so every later slot moves `by` on (once); otherwise nothing changes.
    fn delay(
        &self,
        channel: &str,
        booked: std::time::SystemTime,
        by: Duration,
    ) -> anyhow::Result<()>;
}

/// What a person administers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The Enterprise Grid org: every workspace of it.
    OrgAdmin,
    /// Their own workspace (its `T…` id), as an admin or owner.
    WorkspaceAdmin(String),
    Member,
}

/// A workspace of an Enterprise Grid org, as `auth.teams.list` names it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
}

/// What callers act on when a Slack call fails.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Still rate limited after the retries we allow ourselves.
    #[error("rate limited by Slack (retry after {retry_after:?})")]
    RateLimited { retry_after: Duration },
    /// The call took longer than the configured timeout, every time we tried.
    #[error("Slack did not answer within the timeout")]
    Timeout,
    /// The message, thread or channel is gone (deleted, archived, not joined).
    #[error("Slack says the target is gone: {0}")]
    NotFound(String),
    /// Slack answered `ok: false` with this error code.
    #[error("Slack API error: {0}")]
    Api(String),
    /// The HTTP exchange itself failed; said in a few words ("DNS lookup
    /// failed", "HTTP 503"), never as the HTTP client's internals.
    #[error("cannot reach Slack: {0}")]
    Http(String),
}

/// How hard to try.
#[derive(Clone)]
pub struct WebSettings {
    /// Where each channel's write slots are booked, at Slack's pace.
    pub book: Arc<dyn SlotBook>,
    /// Each channel's pace. Routine writes also keep its interval after this
    /// process's last write to the channel: they leave the burst to answers.
    pub pace: Pace,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Attempts for a call that failed transiently (5xx, timeout, connection).
    pub max_attempts: u32,
    /// Attempts for a call that keeps getting 429.
    pub max_rate_limited_attempts: u32,
    /// Where 429s and call latencies are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl WebSettings {
    /// The configured pacing (booked in this process's memory) and timeout,
    /// with the bot's retry limits.
    pub fn from_config(cfg: &crate::config::Config) -> WebSettings {
        let pace = Pace {
            interval: cfg.channel_interval,
            burst: cfg.channel_burst,
            leeway: cfg.channel_leeway,
        };
        WebSettings {
            book: Arc::new(MemoryBook::new(pace)),
            pace,
            timeout: cfg.api_timeout,
            max_attempts: 3,
            max_rate_limited_attempts: 5,
            metrics: Default::default(),
        }
    }
}

/// A posted message's coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// The Web API client. Cheap to clone.
#[derive(Clone)]
pub struct SlackWeb {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    settings: WebSettings,
    /// Per channel: the write in flight, and who goes first.
    pacers: Arc<Mutex<HashMap<String, Arc<Pacer>>>>,
    /// The latest messages we know we posted (channel, ts), so that looking for
    /// a post whose answer got lost never mistakes one of them for it.
    posted: Arc<Mutex<VecDeque<(String, String)>>>,
}

/// How many of our own posts [`SlackWeb::posted`] remembers.
const REMEMBERED_POSTS: usize = 512;

/// How far before a post its lost copy is looked for: Slack's clock, which
/// stamps the message, may run behind ours.
const CLOCK_MARGIN: Duration = Duration::from_secs(10);

/// One channel's writes in this process.
struct Pacer {
    /// The channel's slots as this process sees them. The async mutex is held
    /// across the call on purpose: it is what serialises a channel's writes.
    slot: tokio::sync::Mutex<Slot>,
    /// Answers waiting for the slot; routine writes let them go first.
    answers: AtomicUsize,
    /// Signalled whenever an answer is done.
    answered: tokio::sync::Notify,
}

/// One channel's slots as this process sees them.
#[derive(Default)]
struct Slot {
    /// Booked and not used yet: a routine write waiting for it lets an answer
    /// take it.
    booked: Option<SystemTime>,
    /// When this process last wrote to the channel; routine writes keep
    /// the pace's interval after it.
    went: Option<SystemTime>,
    /// Until when, as the book last said, answers are going: routine writes
    /// wait without asking the book again.
    answers_until: Option<SystemTime>,
}

/// Counts an answer as waiting until it is done or cancelled.
struct Answering<'a>(&'a Pacer);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.answers.fetch_sub(1, Ordering::SeqCst);
        self.0.answered.notify_waiters();
    }
}

/// Builds a connector that speaks https and, for local fakes and proxies, plain http.
pub fn connector(api_url: &str) -> anyhow::Result<Connector> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Connector::from(https).with_slack_api_url(api_url.trim_end_matches('/')))
}

impl SlackWeb {
    /// A client of the Web API at `api_url` (`https://slack.com/api/`, or a
    /// local fake) with `bot_token`. Nothing is sent yet.
    pub fn connect(api_url: &str, bot_token: &str, settings: WebSettings) -> anyhow::Result<Self> {
        Ok(SlackWeb {
            client: Arc::new(SlackClient::new(connector(api_url)?)),
            token: SlackApiToken::new(bot_token.into()),
            settings,
            pacers: Arc::default(),
            posted: Arc::default(),
        })
    }

    /// Who the bot is.
    pub async fn auth_test(&self) -> Result<Identity, SlackError> {
        let this = self;
        let res = self
            .call(move || async move { this.session().auth_test().await })
            .await?;
        Ok(Identity {
            user_id: res.user_id.to_string(),
            bot_id: res.bot_id.map(|b| b.to_string()).unwrap_or_default(),
            app_id: None,
        })
    }

    /// Posts a message (in a thread when `thread_ts` is given).
    pub async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<Posted, SlackError> {
        self.post_as(false, channel, thread_ts, text, blocks).await
    }

    /// Posts the first answer to a notification: it takes the channel's next
    /// write slot ahead of routine writes already waiting for it.
    pub async fn answer(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> Result<Posted, SlackError> {
        self.post_as(true, channel, thread_ts, text, None).await
    }

    async fn post_as(
        &self,
        first: bool,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<Posted, SlackError> {
        let content = content(text, blocks);
        let req = SlackApiChatPostMessageRequest::new(channel.into(), content)
            .opt_thread_ts(thread_ts.map(|t| t.into()))
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let (this, req) = (self, &req);
        let posted = self
            .paced(channel, first, || async move {
                // Taken once the slot is ours: a lost post can only be newer.
                let since = slack_ts(std::time::SystemTime::now() - CLOCK_MARGIN);
                self.call_checking(
                    Some(channel),
                    move || async move {
                        let res = this.session().chat_post_message(req).await?;
                        Ok(Posted {
                            channel: res.channel.to_string(),
                            ts: res.ts.to_string(),
                        })
                    },
                    || this.find_own_post(channel, thread_ts, text, &since),
                )
                .await
            })
            .await?;
        let mut known = self.posted.lock().unwrap_or_else(|p| p.into_inner());
        known.push_back((channel.to_string(), posted.ts.clone()));
        if known.len() > REMEMBERED_POSTS {
            known.pop_front();
        }
        Ok(posted)
    }

    /// Our message with `text` in `channel` (in `thread_ts`, if given), posted
    /// since `since` and not one we already know of: a post Slack made although
    /// its answer never reached us. Writes to a channel are serialised, so no
    /// other post of ours can be in flight there. Best effort: a failed lookup
    /// finds nothing.
    async fn find_own_post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        since: &str,
    ) -> Option<Posted> {
        let lookup = async {
            match thread_ts {
                Some(thread) => {
                    let req =
                        SlackApiConversationsRepliesRequest::new(channel.into(), thread.into())
                            .with_oldest(since.into())
                            .with_limit(200);
                    self.session()
                        .conversations_replies(&req)
                        .await
                        .map(|r| r.messages)
                }
                None => {
                    let req = SlackApiConversationsHistoryRequest::new()
                        .with_channel(channel.into())
                        .with_oldest(since.into())
                        .with_limit(200);
                    self.session()
                        .conversations_history(&req)
                        .await
                        .map(|r| r.messages)
                }
            }
        };
        let messages = match tokio::time::timeout(self.settings.timeout, lookup).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => {
                debug!(error = %e, "could not look for a post whose answer got lost");
                return None;
            }
            Err(_) => return None,
        };
        let known = self.posted.lock().unwrap_or_else(|p| p.into_inner());
        messages
            .into_iter()
            .filter(|m| m.sender.bot_id.is_some() && m.content.text.as_deref() == Some(text))
            .map(|m| m.origin.ts.to_string())
            .find(|ts| !known.iter().any(|(c, t)| c == channel && t == ts))
            .map(|ts| Posted {
                channel: channel.to_string(),
                ts,
            })
    }

    /// Replaces the text (and blocks) of a message the bot posted.
    pub async fn update(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(), SlackError> {
        let req = SlackApiChatUpdateRequest::new(channel.into(), content(text, blocks), ts.into());
        let (this, req) = (self, &req);
        self.paced(channel, false, || {
            self.write(channel, move || async move {
                this.session().chat_update(req).await
            })
        })
        .await?;
        Ok(())
    }

    /// A message only `user` sees.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        let req = SlackApiChatPostEphemeralRequest::new(
            channel.into(),
            user.into(),
            SlackMessageContent::new().with_text(text.to_string()),
        );
        let (this, req) = (self, &req);
        self.call(move || async move { this.session().chat_post_ephemeral(req).await })
            .await?;
        Ok(())
    }

    /// Publishes `view` (a `{"type": "home", …}` view) as `user`'s Home tab.
    /// It writes to no channel, so it takes no channel's slot.
    pub async fn views_publish(&self, user: &str, view: &Value) -> Result<(), SlackError> {
        let view: SlackView = serde_json::from_value(view.clone())
            .map_err(|e| SlackError::Api(format!("a view the client cannot send: {e}")))?;
        let req = SlackApiViewsPublishRequest::new(user.into(), view);
        let (this, req) = (self, &req);
        self.call(move || async move { this.session().views_publish(req).await })
            .await?;
        Ok(())
    }

    /// What a user administers, as `users.info` says: the Enterprise Grid
    /// org (`enterprise_user`'s admin or owner flags: an org-wide install is
    /// run by org admins, who need not administer each workspace), their
    /// own workspace (`team_id`), or nothing.
    pub async fn role(&self, user: &str) -> Result<Role, SlackError> {
        let req = SlackApiUsersInfoRequest::new(user.into());
        let (this, req) = (self, &req);
        let res = self
            .call(move || async move { this.session().users_info(req).await })
            .await?;
        let admin = |flags: &SlackUserFlags| {
            flags.is_admin.unwrap_or(false)
                || flags.is_owner.unwrap_or(false)
                || flags.is_primary_owner.unwrap_or(false)
        };
        let org = res.user.enterprise_user.as_ref();
        Ok(if org.is_some_and(|org| admin(&org.flags)) {
            Role::OrgAdmin
        } else if admin(&res.user.flags) {
            Role::WorkspaceAdmin(res.user.team_id.map(|t| t.to_string()).unwrap_or_default())
        } else {
            Role::Member
        })
    }

    /// A link to a message.
    pub async fn permalink(&self, channel: &str, ts: &str) -> Result<String, SlackError> {
        let req = SlackApiChatGetPermalinkRequest::new(channel.into(), ts.into());
        let (this, req) = (self, &req);
        let res = self
            .call(move || async move { this.session().chat_get_permalink(req).await })
            .await?;
        Ok(res.permalink.to_string())
    }

    /// The name of a channel by id.
    pub async fn channel_name(&self, channel: &str) -> Result<Option<String>, SlackError> {
        let req = SlackApiConversationsInfoRequest::new(channel.into());
        let (this, req) = (self, &req);
        let res = self
            .call(move || async move { this.session().conversations_info(req).await })
            .await?;
        Ok(res.channel.name)
    }

    /// Every channel the bot can see, as (id, name, the workspace it is
    /// in). An Enterprise Grid org-wide install's token lists channels one
    /// workspace at a time (without `team_id` Slack answers
    /// `missing_argument`), so then each workspace the app was added to
    /// (`auth.teams.list`) is listed in turn; otherwise the workspace is the
    /// token's own, and `None`.
    pub async fn list_channels(
        &self,
    ) -> Result<Vec<(String, String, Option<Workspace>)>, SlackError> {
        match self.list_channels_in(None).await {
            Err(SlackError::Api(code)) if code == "missing_argument" => {
                let mut out = vec![];
                for team in self.org_workspaces().await? {
                    for (id, name) in self.list_channels_in(Some(&team.id)).await? {
                        out.push((id, name, Some(team.clone())));
                    }
                }
                Ok(out)
            }
            listed => Ok(listed?
                .into_iter()
                .map(|(id, name)| (id, name, None))
                .collect()),
        }
    }

    /// The channels of one workspace (`team`), or of the token's own.
    async fn list_channels_in(
        &self,
        team: Option<&str>,
    ) -> Result<Vec<(String, String)>, SlackError> {
        // slack-morphism's request has no `team_id`, hence a request of our
        // own (a GET with query parameters, as slack-morphism sends it).
        let mut out = vec![];
        let mut cursor: Option<String> = None;
        // A bound on pages protects against a server that never stops paging.
        for _ in 0..100 {
            let params: Vec<(&str, Option<String>)> = vec![
                ("limit", Some("200".into())),
                ("exclude_archived", Some("true".into())),
                ("types", Some("public_channel,private_channel".into())),
                ("cursor", cursor.clone()),
                ("team_id", team.map(str::to_string)),
            ];
            let res: SlackApiConversationsListResponse =
                self.get("conversations.list", params).await?;
            out.extend(
                res.channels
                    .into_iter()
                    .filter_map(|c| Some((c.id.to_string(), c.name?))),
            );
            cursor = res
                .response_metadata
                .and_then(|m| m.next_cursor)
                .map(|c| c.to_string())
                .filter(|c| !c.is_empty());
            if cursor.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The workspaces an org-wide install was added to (`auth.teams.list`).
    async fn org_workspaces(&self) -> Result<Vec<Workspace>, SlackError> {
        #[derive(serde::Deserialize)]
        struct Teams {
            teams: Vec<Workspace>,
        }
        let params = vec![("limit", Some("1000".to_string()))];
        let res: Teams = self.get("auth.teams.list", params).await?;
        Ok(res.teams)
    }

    /// A Web API `GET` of `method` with `params`, for the requests
    /// slack-morphism has no model of (`team_id` on an org-wide install).
    async fn get<T>(
        &self,
        method: &str,
        params: Vec<(&str, Option<String>)>,
    ) -> Result<T, SlackError>
    where
        T: serde::de::DeserializeOwned + Send,
    {
        let (this, params) = (self, &params);
        self.call(move || async move {
            this.session()
                .http_session_api
                .http_get(method, params, None)
                .await
        })
        .await
    }

    /// Runs `op` when the channel's next write slot comes, holding the slot
    /// until the write is done. An `answer` takes the slot before routine writes.
    async fn paced<T, F, Fut>(&self, channel: &str, answer: bool, op: F) -> Result<T, SlackError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, SlackError>>,
    {
        let pacer = {
            let mut pacers = self.pacers.lock().unwrap_or_else(|p| p.into_inner());
            pacers
                .entry(channel.to_string())
                .or_insert_with(|| {
                    Arc::new(Pacer {
                        slot: tokio::sync::Mutex::default(),
                        answers: AtomicUsize::new(0),
                        answered: tokio::sync::Notify::new(),
                    })
                })
                .clone()
        };
        let _answering = answer.then(|| {
            pacer.answers.fetch_add(1, Ordering::SeqCst);
            Answering(&pacer)
        });
        let mut slot = if answer {
            pacer.slot.lock().await
        } else {
            loop {
                // Registered before the check, so an answer finishing in between
                // still wakes us.
                let answered = pacer.answered.notified();
                tokio::pin!(answered);
                answered.as_mut().enable();
                if pacer.answers.load(Ordering::SeqCst) == 0 {
                    let mut slot = pacer.slot.lock().await;
                    if pacer.answers.load(Ordering::SeqCst) == 0 {
                        // A routine write books no slot before its turn at the
                        // steady pace, so the burst is left to answers.
                        let turn = slot.went.map(|went| went + self.settings.pace.interval);
                        let turn = turn.max(slot.answers_until);
                        let at = match (slot.booked, turn) {
                            (Some(at), _) => at,
                            (None, Some(turn)) if turn > SystemTime::now() => turn,
                            (None, _) => match self.book(channel, Write::Routine) {
                                Booked::Go(at) => *slot.booked.insert(at),
                                // Another replica's answers are going: ask again
                                // once they are done.
                                Booked::AfterAnswers(at) => {
                                    slot.answers_until = Some(at);
                                    drop(slot);
                                    sleep_until(at).await;
                                    continue;
                                }
                            },
                        };
                        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                        if wait.is_zero() && slot.booked.is_some() {
                            break slot;
                        }
                        // Not yet time: wait without holding the slot, so an
                        // answer that comes meanwhile can still take it first.
                        drop(slot);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    // An answer queued while we waited for the slot: it goes first.
                }
                answered.await;
            }
        };
        // A routine write comes with its slot booked; an answer books now.
        let at = match slot.booked.take() {
            Some(at) => at,
            None => self.book_now(channel, Write::Answer),
        };
        sleep_until(at).await;
        slot.went = Some(SystemTime::now());
        let result = op().await;
        self.arrived_by(channel, at, SystemTime::now());
        result
    }

    /// A write booked for `at` had its answer by `answered`, so it reached
    /// Slack no later: when that is later than the book's leeway allows (a
    /// connection being opened, a busy machine) and the write opened its
    /// spell, later slots move on by the difference (see [`SlotBook::delay`]).
    /// It costs that much once per busy spell, and prevents the 429 that a
    /// late opener followed by punctual writes would meet.
    fn arrived_by(&self, channel: &str, at: SystemTime, answered: SystemTime) {
        let leeway = self.settings.pace.leeway;
        let Some(late) = answered
            .duration_since(at)
            .ok()
            .and_then(|late| late.checked_sub(leeway))
            .filter(|late| !late.is_zero())
        else {
            return;
        };
        if let Err(e) = self.settings.book.delay(channel, at, late) {
            warn!(
                error = format!("{e:#}"),
                channel, "cannot move the channel's write slots on"
            );
        }
    }

    /// What booking the channel's next slot for a `write` gave. A book that
    /// cannot answer (a store gone away) lets the write go now: Slack's 429
    /// is the safety net, and not writing at all would be worse.
    fn book(&self, channel: &str, write: Write) -> Booked {
        let now = SystemTime::now();
        self.settings
            .book
            .book(channel, now, write)
            .unwrap_or_else(|e| {
                warn!(
                    error = format!("{e:#}"),
                    channel, "cannot book a write slot; writing now"
                );
                Booked::Go(now)
            })
    }

    /// When a write that never waits for answers (an answer, a retry) may go.
    fn book_now(&self, channel: &str, write: Write) -> SystemTime {
        match self.book(channel, write) {
            Booked::Go(at) | Booked::AfterAnswers(at) => at,
        }
    }

    /// Tells the book that Slack wants no write to `channel` before
    /// `retry_after` from now.
    fn hold(&self, channel: &str, retry_after: Duration) {
        let until = SystemTime::now() + retry_after;
        if let Err(e) = self.settings.book.hold(channel, until) {
            warn!(
                error = format!("{e:#}"),
                channel, "cannot hold the channel's write slots"
            );
        }
    }

    /// Holds the channel's slots as Slack's 429 asks, then waits for the
    /// channel's next slot.
    async fn wait_out_rate_limit(&self, channel: &str, retry_after: Duration) {
        self.hold(channel, retry_after);
        // Never sooner than told, whatever the book says.
        let at = self
            .book_now(channel, Write::Retry)
            .max(SystemTime::now() + retry_after);
        sleep_until(at).await;
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }

    /// One Web API call with a timeout, 429 handling and bounded retries.
    /// `op` makes a fresh request future for each attempt.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, SlackError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        self.call_checking(None, op, || std::future::ready(None))
            .await
    }

    /// [`Self::call`] for a write to `channel` made in its paced slot: a 429
    /// holds the channel's slots in the book, and the retry takes a new slot.
    async fn write<T, F, Fut>(&self, channel: &str, op: F) -> Result<T, SlackError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        self.call_checking(Some(channel), op, || std::future::ready(None))
            .await
    }

    /// [`Self::call`] for a write that must not happen twice. After a timeout
    /// or a 5xx Slack may have done the work and only the answer got lost, so
    /// before retrying (or giving up) `landed` looks for the result; what it
    /// finds is returned instead of writing again. A write names its `channel`,
    /// whose slots a 429 holds.
    async fn call_checking<T, F, Fut, L, LFut>(
        &self,
        channel: Option<&str>,
        op: F,
        landed: L,
    ) -> Result<T, SlackError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
        L: Fn() -> LFut,
        LFut: std::future::Future<Output = Option<T>>,
    {
        let mut transient_failures = 0;
        let mut rate_limited = 0;
        loop {
            let timer = self.settings.metrics.slack_call_seconds.start();
            let outcome = tokio::time::timeout(self.settings.timeout, op()).await;
            drop(timer);
            let err = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => classify(err),
                Err(_) => SlackError::Timeout,
            };
            match err {
                SlackError::RateLimited { retry_after } => {
                    self.settings.metrics.slack_rate_limited.inc();
                    rate_limited += 1;
                    if rate_limited >= self.settings.max_rate_limited_attempts {
                        if let Some(channel) = channel {
                            self.hold(channel, retry_after);
                        }
                        return Err(SlackError::RateLimited { retry_after });
                    }
                    warn!(?retry_after, "Slack rate limited us; waiting as told");
                    match channel {
                        Some(channel) => self.wait_out_rate_limit(channel, retry_after).await,
                        None => tokio::time::sleep(retry_after).await,
                    }
                }
                SlackError::Timeout | SlackError::Http(_) => {
                    transient_failures += 1;
                    let retry = transient_failures < self.settings.max_attempts;
                    if retry {
                        let backoff = Duration::from_millis(200 * 2u64.pow(transient_failures));
                        debug!(error = %err, ?backoff, "transient Slack failure; retrying");
                        tokio::time::sleep(backoff).await;
                    }
                    if let Some(done) = landed().await {
                        debug!(error = %err, "Slack had done it after all; not repeating it");
                        return Ok(done);
                    }
                    if !retry {
                        return Err(err);
                    }
                }
                other => return Err(other),
            }
        }
    }
}

/// Sleeps until the wall-clock time `at` (at once if it has passed).
async fn sleep_until(at: SystemTime) {
    if let Ok(wait) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

/// A time as a Slack message timestamp (`"1700000000.000100"`).
fn slack_ts(at: std::time::SystemTime) -> String {
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:06}",
        since_epoch.as_secs(),
        since_epoch.subsec_micros()
    )
}

fn content(text: &str, blocks: Option<&Value>) -> SlackMessageContent {
    let blocks: Option<Vec<SlackBlock>> =
        blocks.and_then(|b| serde_json::from_value(b.clone()).ok());
    SlackMessageContent::new()
        .with_text(text.to_string())
        .opt_blocks(blocks)
}

fn classify(err: SlackClientError) -> SlackError {
    match err {
        SlackClientError::RateLimitError(e) => SlackError::RateLimited {
            retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
        },
        SlackClientError::ApiError(e) => match e.code.as_str() {
            "message_not_found"
            | "thread_not_found"
            | "channel_not_found"
            | "is_archived"
            | "not_in_channel"
            | "cant_update_message" => SlackError::NotFound(e.code),
            "ratelimited" => SlackError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                SlackError::Http(e.code)
            }
            _ => SlackError::Api(e.code),
        },
        SlackClientError::HttpError(e) if e.status_code.is_server_error() => {
            SlackError::Http(format!("HTTP {}", e.status_code))
        }
        SlackClientError::HttpError(e) => SlackError::Api(format!("HTTP {}", e.status_code)),
        SlackClientError::HttpProtocolError(e) => SlackError::Http(match &e.cause {
            Some(cause) => crate::http::unreachable_reason(cause.as_ref()),
            None => "the HTTP exchange failed".into(),
        }),
        SlackClientError::EndOfStream(_) => {
            SlackError::Http("the server closed the connection".into())
        }
        other => SlackError::Api(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use selfheal_fakes::slack::FakeSlack;

    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);
    const BURST: u32 = 3;

    /// A fake Slack with one channel, limiting writes to a burst of 3, then
    /// one per 100 ms.
    async fn paced_slack() -> FakeSlack {
        let fake = FakeSlack::builder().start().await;
        fake.add_channel("C0ALERTS", "alerts");
        fake.set_channel_rate_limit_burst(INTERVAL, BURST);
        fake
    }

    fn client(fake: &FakeSlack, book: Arc<dyn SlotBook>) -> SlackWeb {
        let settings = WebSettings {
            book,
            pace: Pace::new(INTERVAL, BURST),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            max_rate_limited_attempts: 5,
            metrics: Default::default(),
        };
        SlackWeb::connect(&fake.api_url(), fake.bot_token(), settings).expect("a client")
    }

    /// Answers `count` notifications in the channel through each client at once
    /// and returns how long Slack took to take them all. Each client has opened
    /// its connection first, as the bot does with `auth.test` when it starts.
    async fn answer_through(clients: &[SlackWeb], count: usize) -> Duration {
        for web in clients {
            web.auth_test().await.expect("the fake knows the token");
        }
        let started = Instant::now();
        let posts = clients.iter().flat_map(|web| {
            (0..count).map(move |i| async move {
                web.answer("C0ALERTS", None, &format!("answer {i}"))
                    .await
                    .expect("the post lands")
            })
        });
        futures_util::future::join_all(posts).await;
        started.elapsed()
    }

    fn statuses(fake: &FakeSlack) -> Vec<u16> {
        fake.calls_to("chat.postMessage")
            .iter()
            .map(|c| c.status)
            .collect()
    }

    #[tokio::test]
    async fn writes_to_one_channel_use_slacks_burst_then_its_pace_without_a_429() {
        let fake = paced_slack().await;
        let web = client(&fake, Arc::new(MemoryBook::new(Pace::new(INTERVAL, BURST))));

        let took = answer_through(&[web], 10).await;

        assert_eq!(statuses(&fake), [200; 10]);
        assert_eq!(fake.messages("C0ALERTS").len(), 10);
        // 3 at once, then 7 at 100 ms apart.
        let floor = INTERVAL * 7;
        assert!(took >= floor - INTERVAL / 5, "took {took:?}");
        assert!(took < floor * 2, "took {took:?}, floor {floor:?}");
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn replicas_sharing_one_book_share_the_channels_pace_without_a_429() {
        let fake = paced_slack().await;
        let book: Arc<dyn SlotBook> = Arc::new(MemoryBook::new(Pace::new(INTERVAL, BURST)));
        let replicas = [client(&fake, book.clone()), client(&fake, book)];

        let took = answer_through(&replicas, 5).await;

        assert_eq!(statuses(&fake), [200; 10]);
        assert_eq!(fake.messages("C0ALERTS").len(), 10);
        assert!(took < INTERVAL * 14, "took {took:?}");
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn routine_writes_keep_the_steady_pace_and_leave_the_burst_to_answers() {
        let fake = paced_slack().await;
        let web = client(&fake, Arc::new(MemoryBook::new(Pace::new(INTERVAL, BURST))));
        web.auth_test().await.expect("the fake knows the token");

        for i in 0..3 {
            web.post("C0ALERTS", None, &format!("progress {i}"), None)
                .await
                .expect("the post lands");
        }
        let started = Instant::now();
        answer_through(&[web], 2).await;

        let at: Vec<_> = fake
            .calls_to("chat.postMessage")
            .iter()
            .map(|c| c.at)
            .collect();
        for pair in at[..3].windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap >= INTERVAL - INTERVAL / 20,
                "routine writes {gap:?} apart"
            );
        }
        // Two of the burst were left: the answers went at once.
        assert!(
            started.elapsed() < INTERVAL,
            "answers took {:?}",
            started.elapsed()
        );
        assert_eq!(statuses(&fake), [200; 5]);
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn a_429_holds_the_channel_until_retry_after() {
        let fake = paced_slack().await;
        let book = Arc::new(MemoryBook::new(Pace::new(INTERVAL, BURST)));
        let web = client(&fake, book.clone());
        fake.fail_next(
            "chat.postMessage",
            selfheal_fakes::slack::Failure::RateLimited {
                retry_after_secs: 1,
            },
            1,
        );

        let started = Instant::now();
        answer_through(&[web], 1).await;

        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(statuses(&fake), [429, 200]);
        // The book knows: after the hold, no burst is left either.
        let next = book
            .book("C0ALERTS", SystemTime::now(), Write::Retry)
            .expect("memory never fails");
        assert!(
            matches!(next, Booked::Go(at) if at > SystemTime::now()),
            "the burst was spent by the hold"
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn an_org_wide_install_lists_the_channels_of_every_workspace_it_was_added_to() {
        let fake = FakeSlack::builder().start().await;
        fake.add_channel("C0FIRST", "first-alerts");
        fake.add_channel("C0SECOND", "second-alerts");
        fake.set_org_install("E0ORG");
        fake.set_channel_team("C0SECOND", "T0SECOND");
        fake.name_team("T0SECOND", "Acme EU");
        let web = client(&fake, Arc::new(MemoryBook::new(Pace::new(INTERVAL, BURST))));

        let mut channels: Vec<(String, String, String)> = web
            .list_channels()
            .await
            .expect("the channels")
            .into_iter()
            .map(|(id, name, ws)| (id, name, ws.expect("listed per workspace").name))
            .collect();

        channels.sort();
        let first_workspace = format!("Workspace {}", fake.team_id());
        assert_eq!(
            channels,
            [
                ("C0FIRST".into(), "first-alerts".into(), first_workspace),
                ("C0SECOND".into(), "second-alerts".into(), "Acme EU".into())
            ]
        );
        let lists = fake.calls_to("conversations.list");
        assert_eq!(lists[0].error.as_deref(), Some("missing_argument"));
        assert_eq!(
            lists.len(),
            3,
            "once without a workspace, once per workspace"
        );
    }
}
