//! The healing policy: what to do about a failure, a lapsed courtesy window,
//! a restart or a person's words in a thread, decided from facts alone.
//!
//! [`decide`] is a pure function from a [`Moment`] (what happened, with the
//! facts the app gathered for it: the schedule's switch, where a notification
//! arrived, the claims already held, whether someone mentioned selfheal) to a
//! [`Decision`] (heal here, heal top-level, point, wait for a copy, follow up,
//! ignore, refuse a shortcut, …). It does no IO, is not async, and imports nothing that does:
//! the app gathers the facts and carries the decision out.
//!
//! Queueing is not decided here: a session waits for a slot in
//! `session::controls::Caps`, whose semaphores count running sessions and hand out
//! slots in one atomic step, which a decision over counts read earlier could
//! not. Exactly-once is not decided here either: the store's claims make it,
//! so a decision to heal or point is always safe to carry out twice.

use crate::recognize::Unrecognized;

/// Whether a schedule heals automatically right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Self-healing is on for it (YAML or `/selfheal enable`) and it has a
    /// channel to heal in.
    On,
    /// Off for it (YAML or `/selfheal disable`), or no channel to heal in.
    Off,
    /// `/selfheal pause` stopped all automatic healing.
    Paused,
}

/// Where a failure notification arrived, as far as its schedule is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The channel healing happens in.
    HealingChannel,
    /// Another channel the schedule notifies on failure.
    NotifiedChannel,
    /// A channel the schedule does not notify (a forward, a test post).
    Elsewhere,
}

/// The newest session in a thread a person wrote in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSession<'a> {
    /// The session reached a terminal status.
    pub ended: bool,
    /// Its agent: a follow-up uses it unless another is asked for.
    pub agent: &'a str,
}

/// A moment at which the app decides, with the facts it gathered for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment<'a> {
    /// A failure notification of a configured schedule arrived in a channel.
    Notification {
        /// False when this channel's copy was recorded before.
        first_in_channel: bool,
        switch: Switch,
        place: Place,
        /// The failure has a session whose thread exists (a session claimed
        /// top-level may not have posted its first message yet).
        healing_thread: bool,
    },
    /// The courtesy window ran out while a failure first seen outside the
    /// healing channel waited for that channel's copy.
    CopyOverdue {
        /// A session was claimed meanwhile (the copy came, or a person asked).
        session_claimed: bool,
        switch: Switch,
    },
    /// selfheal started again within the hour of a failure: the timers of
    /// decisions that were waiting for a window are gone.
    Restarted {
        session_claimed: bool,
        switch: Switch,
    },
    /// The failure's healing thread exists: another channel the schedule
    /// notifies is to be pointed at it.
    OtherChannel {
        /// That channel's own copy of the notification was seen.
        copy_seen: bool,
    },
    /// A person (not a bot, not an edit) wrote in a thread.
    PersonInThread(Reply<'a>),
    /// A person used the "Fix with selfheal" message shortcut on a message.
    Shortcut(Shortcut<'a>),
}

/// What the message shortcut was used on, and what selfheal knows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortcut<'a> {
    /// Why the message is not a failure selfheal can heal; `None` when it is
    /// one, of a configured schedule (its self-healing on or off).
    pub unrecognized: Option<Unrecognized>,
    /// The failure has a session already, running or ended.
    pub session_exists: bool,
    pub paused: bool,
    /// `SELFHEAL_DEFAULT_AGENT`.
    pub default_agent: Option<&'a str>,
}

/// What a person wrote in a thread, and what the thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// They mentioned selfheal.
    pub mentioned: bool,
    /// Their words, without the mention.
    pub text: &'a str,
    pub session: Option<ThreadSession<'a>>,
    pub paused: bool,
    /// The thread is under a recognised failure notification.
    pub under_failure: bool,
    /// `SELFHEAL_DEFAULT_AGENT`.
    pub default_agent: Option<&'a str>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim the failure and heal in this channel, in the notification's thread.
    HealHere,
    /// Claim the failure and heal top-level in the healing channel: its copy
    /// of the notification never came.
    HealTopLevel,
    /// Point this channel at the healing thread: in its copy's thread when
    /// there is one, else top-level.
    Point,
    /// Wait the courtesy window for the healing channel's copy, then decide
    /// again ([`Moment::CopyOverdue`]).
    AwaitHealingCopy,
    /// Wait the courtesy window for this channel's copy, then point: in its
    /// thread if it came, else top-level.
    AwaitCopyThenPoint,
    /// After a restart: every notified channel whose pointer is not claimed
    /// waits its window again, then is pointed.
    ResumePointers,
    /// Stop the session running in the thread.
    StopSession,
    /// Pass the person's words to the session running in the thread.
    GuideSession,
    /// A new session in the thread after the last one ended, with this agent.
    FollowUp { agent: String },
    /// Heal the failure the thread is about, asked for by a person, with this
    /// agent; `None` (no agent named, no default agent) means the schedule's.
    HealOnRequest { agent: Option<String> },
    /// Tell the person (only them) that healing is paused.
    SayPaused,
    /// Tell the person (only them) where the failure's session is.
    ShowSession,
    /// Tell the person (only them) why selfheal cannot heal the message.
    Refuse(Unrecognized),
    /// Do nothing.
    Ignore(Ignored),
}

/// Why nothing is done; for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// This channel's copy of the failure was handled before.
    SeenHere,
    /// Self-healing is off for the schedule.
    Off,
    /// `/selfheal pause` is on.
    Paused,
    /// The notification is in a channel the schedule does not notify.
    NotNotified,
    /// A session was claimed for the failure already.
    Claimed,
    /// A person's words that are not for selfheal.
    NotForMe,
}

/// The one place the healing policy is written down.
pub fn decide(moment: &Moment<'_>) -> Decision {
    use Decision::*;
    match *moment {
        Moment::Notification {
            first_in_channel,
            switch,
            place,
            healing_thread,
        } => {
            if !first_in_channel {
                return Ignore(Ignored::SeenHere);
            }
            if let Some(off) = off(switch) {
                return Ignore(off);
            }
            match place {
                Place::HealingChannel => HealHere,
                Place::Elsewhere => Ignore(Ignored::NotNotified),
                Place::NotifiedChannel if healing_thread => Point,
                Place::NotifiedChannel => AwaitHealingCopy,
            }
        }
        Moment::CopyOverdue {
            session_claimed,
            switch,
        } => match off(switch) {
            _ if session_claimed => Ignore(Ignored::Claimed),
            Some(off) => Ignore(off),
            None => HealTopLevel,
        },
        Moment::Restarted {
            session_claimed,
            switch,
        } => match off(switch) {
            Some(off) => Ignore(off),
            None if session_claimed => ResumePointers,
            None => AwaitHealingCopy,
        },
        Moment::OtherChannel { copy_seen: true } => Point,
        Moment::OtherChannel { copy_seen: false } => AwaitCopyThenPoint,
        Moment::PersonInThread(Reply {
            mentioned,
            text,
            session,
            paused,
            under_failure,
            default_agent,
        }) => match session {
            // Anything said in a running session's thread is for its agent.
            Some(s) if !s.ended => {
                if text.eq_ignore_ascii_case("stop") {
                    StopSession
                } else {
                    GuideSession
                }
            }
            _ if !mentioned => Ignore(Ignored::NotForMe),
            _ if paused => SayPaused,
            Some(s) => FollowUp {
                agent: requested_agent(text).unwrap_or_else(|| s.agent.to_string()),
            },
            None if under_failure => HealOnRequest {
                agent: requested_agent(text).or(default_agent.map(str::to_string)),
            },
            None => Ignore(Ignored::NotForMe),
        },
        // Like a "fix this" mention: for any configured schedule, whether its
        // self-healing is on or off.
        Moment::Shortcut(Shortcut {
            unrecognized,
            session_exists,
            paused,
            default_agent,
        }) => match unrecognized {
            Some(why) => Refuse(why),
            None if session_exists => ShowSession,
            None if paused => SayPaused,
            None => HealOnRequest {
                agent: default_agent.map(str::to_string),
            },
        },
    }
}

/// Why a schedule does not heal now, if it does not.
fn off(switch: Switch) -> Option<Ignored> {
    match switch {
        Switch::On => None,
        Switch::Off => Some(Ignored::Off),
        Switch::Paused => Some(Ignored::Paused),
    }
}

/// The agent named in a fix request: `fix with <agent>`.
fn requested_agent(text: &str) -> Option<String> {
    // ASCII lower case keeps every byte offset, so `at` is one in `text` too.
    let lower = text.to_ascii_lowercase();
    let at = lower.find("with ")?;
    text[at + 5..]
        .split_whitespace()
        .next()
        .map(|a| {
            a.trim_matches(|c: char| c == '`' || c == '.' || c == ',')
                .to_string()
        })
        .filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::Ignored::*;
    use super::Place::{Elsewhere, HealingChannel, NotifiedChannel};
    use super::Switch::{Off as Disabled, On, Paused as PausedSwitch};
    use super::*;

    #[track_caller]
    fn check(moment: Moment<'_>, expected: Decision) {
        assert_eq!(decide(&moment), expected, "{moment:?}");
    }

    fn notification(first: bool, switch: Switch, place: Place, thread: bool) -> Moment<'static> {
        Moment::Notification {
            first_in_channel: first,
            switch,
            place,
            healing_thread: thread,
        }
    }

    fn overdue(claimed: bool, switch: Switch) -> Moment<'static> {
        Moment::CopyOverdue {
            session_claimed: claimed,
            switch,
        }
    }

    fn restarted(claimed: bool, switch: Switch) -> Moment<'static> {
        Moment::Restarted {
            session_claimed: claimed,
            switch,
        }
    }

    /// A person's words under a failure: `session` is `None`, `"running"` or `"ended"`.
    fn reply<'a>(text: &'a str, mentioned: bool, session: Option<&str>, paused: bool) -> Reply<'a> {
        Reply {
            mentioned,
            text,
            session: session.map(|state| ThreadSession {
                ended: state == "ended",
                agent: "scripted",
            }),
            paused,
            under_failure: true,
            default_agent: Some("dbt-doctor"),
        }
    }

    fn person<'a>(
        text: &'a str,
        mentioned: bool,
        session: Option<&str>,
        paused: bool,
    ) -> Moment<'a> {
        Moment::PersonInThread(reply(text, mentioned, session, paused))
    }

    fn agent(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    fn follow_up(name: &str) -> Decision {
        FollowUp {
            agent: name.to_string(),
        }
    }

    fn heal_with(name: Option<&str>) -> Decision {
        HealOnRequest {
            agent: name.map(str::to_string),
        }
    }

    // The tables below keep one case per line, aligned in columns; rustfmt
    // would fold them into several lines each.

    #[test]
    #[rustfmt::skip]
    fn a_notification_heals_in_the_healing_channel_and_points_or_waits_elsewhere() {
        //                 first  switch place            thread
        check(notification(true,  On,    HealingChannel,  false), HealHere);
        // The claim, not the policy, refuses a second session for the failure.
        check(notification(true,  On,    HealingChannel,  true),  HealHere);
        check(notification(true,  On,    NotifiedChannel, true),  Point);
        check(notification(true,  On,    NotifiedChannel, false), AwaitHealingCopy);
        check(notification(true,  On,    Elsewhere,       true),  Ignore(NotNotified));
        check(notification(true,  On,    Elsewhere,       false), Ignore(NotNotified));
    }

    #[test]
    #[rustfmt::skip]
    fn a_notification_is_ignored_when_seen_before_off_or_paused() {
        //                 first  switch        place            thread
        check(notification(false, On,           HealingChannel,  false), Ignore(SeenHere));
        check(notification(false, PausedSwitch, NotifiedChannel, true),  Ignore(SeenHere));
        check(notification(true,  Disabled,     HealingChannel,  false), Ignore(Off));
        check(notification(true,  Disabled,     NotifiedChannel, true),  Ignore(Off));
        check(notification(true,  PausedSwitch, HealingChannel,  false), Ignore(Paused));
        check(notification(true,  PausedSwitch, Elsewhere,       false), Ignore(Paused));
    }

    #[test]
    #[rustfmt::skip]
    fn a_lapsed_window_heals_top_level_unless_claimed_off_or_paused() {
        //            claimed switch
        check(overdue(false,  On),           HealTopLevel);
        check(overdue(true,   On),           Ignore(Claimed));
        check(overdue(true,   PausedSwitch), Ignore(Claimed));
        check(overdue(false,  Disabled),     Ignore(Off));
        check(overdue(false,  PausedSwitch), Ignore(Paused));
    }

    #[test]
    #[rustfmt::skip]
    fn a_restart_waits_again_for_copies_and_pointers() {
        //              claimed switch
        check(restarted(false,  On),           AwaitHealingCopy);
        check(restarted(true,   On),           ResumePointers);
        check(restarted(true,   Disabled),     Ignore(Off));
        check(restarted(false,  PausedSwitch), Ignore(Paused));
    }

    #[test]
    #[rustfmt::skip]
    fn another_channel_is_pointed_in_its_copy_or_after_the_window() {
        check(Moment::OtherChannel { copy_seen: true },  Point);
        check(Moment::OtherChannel { copy_seen: false }, AwaitCopyThenPoint);
    }

    #[test]
    #[rustfmt::skip]
    fn words_in_a_running_session_thread_go_to_its_agent() {
        //           text                     mention session          paused
        check(person("stop",                  false,  Some("running"), false), StopSession);
        check(person("STOP",                  true,   Some("running"), true),  StopSession);
        check(person("try the staging model", false,  Some("running"), false), GuideSession);
        check(person("stop it now",           false,  Some("running"), false), GuideSession);
        check(person("hm",                    false,  Some("running"), true),  GuideSession);
    }

    #[test]
    #[rustfmt::skip]
    fn a_mention_after_a_session_ended_follows_up() {
        //           text                     mention session        paused
        check(person("try again",             true,   Some("ended"), false), follow_up("scripted"));
        check(person("fix with `llm-agent`.", true,   Some("ended"), false), follow_up("llm-agent"));
        check(person("try again",             true,   Some("ended"), true),  SayPaused);
        check(person("thanks!",               false,  Some("ended"), false), Ignore(NotForMe));
    }

    #[test]
    #[rustfmt::skip]
    fn a_mention_under_a_failure_without_a_session_heals_on_request() {
        //           text               mention session paused
        check(person("fix this",        true,   None,   false), heal_with(Some("dbt-doctor")));
        check(person("Fix with DinoAI", true,   None,   false), heal_with(Some("DinoAI")));
        check(person("fix this",        true,   None,   true),  SayPaused);
        check(person("fix this",        false,  None,   false), Ignore(NotForMe));
        let fix_this = reply("fix this", true, None, false);
        check(Moment::PersonInThread(Reply { default_agent: None, ..fix_this }),  heal_with(None));
        check(Moment::PersonInThread(Reply { under_failure: false, ..fix_this }), Ignore(NotForMe));
        let paused = Reply { paused: true, under_failure: false, ..fix_this };
        check(Moment::PersonInThread(paused), SayPaused);
    }

    fn shortcut(
        unrecognized: Option<Unrecognized>,
        session_exists: bool,
        paused: bool,
    ) -> Moment<'static> {
        Moment::Shortcut(Shortcut {
            unrecognized,
            session_exists,
            paused,
            default_agent: Some("dbt-doctor"),
        })
    }

    #[test]
    #[rustfmt::skip]
    fn the_shortcut_heals_a_failure_once_and_says_why_it_cannot_otherwise() {
        use crate::recognize::Unrecognized::{Mine, NoRunId, NotAFailure, Person, UnknownSchedule};
        //             unrecognized           session paused
        check(shortcut(None,                  false,  false), heal_with(Some("dbt-doctor")));
        check(shortcut(None,                  true,   false), ShowSession);
        check(shortcut(None,                  true,   true),  ShowSession);
        check(shortcut(None,                  false,  true),  SayPaused);
        check(shortcut(Some(Person),          false,  false), Refuse(Person));
        check(shortcut(Some(Mine),            false,  true),  Refuse(Mine));
        check(shortcut(Some(NotAFailure),     false,  false), Refuse(NotAFailure));
        check(shortcut(Some(NoRunId),         false,  false), Refuse(NoRunId));
        check(shortcut(Some(UnknownSchedule), false,  false), Refuse(UnknownSchedule));
        let Moment::Shortcut(s) = shortcut(None, false, false) else { unreachable!() };
        check(Moment::Shortcut(Shortcut { default_agent: None, ..s }), heal_with(None));
    }

    #[test]
    fn the_requested_agent_is_the_word_after_with() {
        assert_eq!(requested_agent("fix with `llm-agent`."), agent("llm-agent"));
        assert_eq!(
            requested_agent("Fix WITH scripted, please"),
            agent("scripted")
        );
        assert_eq!(requested_agent("fix this"), None);
        assert_eq!(requested_agent("fix with"), None);
        assert_eq!(requested_agent("fix with ``"), None);
        assert_eq!(requested_agent("İİ fix with ünïcode"), agent("ünïcode"));
    }
}
