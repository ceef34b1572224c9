//! The bot's counters, gauges and histograms, and their Prometheus text
//! exposition (format 0.0.4).
//!
//! A tiny registry of its own (atomics, and a lock only for labelled
//! families) rather than a metrics crate: the bot has a dozen fixed metrics.
//! The parts that count hold an `Arc<Metrics>` and add one line where the
//! thing happens; `service` renders it on `GET /metrics`. Nothing here does
//! IO.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything `/metrics` shows, one field per metric.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Socket Mode envelopes received, by `type` (events_api, slash_commands…).
    pub envelopes: Family<Counter>,
    /// From an envelope's arrival until the callback returns and it is acked.
    pub ack_seconds: Histogram,
    /// Failure notifications recognised.
    pub failures_recognised: Counter,
    /// Sessions ended, by `outcome` (the status text: fixed, failed…).
    pub sessions_ended: Family<Counter>,
    /// Sessions holding a slot, and sessions waiting for one (set on scrape).
    pub sessions_running: Gauge,
    pub sessions_queued: Gauge,
    /// Slack Web API answers of 429.
    pub slack_rate_limited: Counter,
    /// One Slack Web API attempt, answered or not.
    pub slack_call_seconds: Histogram,
    /// An agent's run in a session.
    pub agent_seconds: Histogram,
    /// The bot's own dbt check of an agent's change.
    pub verification_seconds: Histogram,
    /// Whether the Socket Mode connection is up: a `hello` arrived and no
    /// connection error since. A readiness fact, not shown as a metric.
    pub slack_connected: AtomicBool,
}

impl Metrics {
    /// The exposition of every metric, in a fixed order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut m = |name: &str, help: &str, metric: &dyn Render| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", metric.kind());
            metric.render(name, &mut out);
        };
        m(
            "selfheal_socket_envelopes_total",
            "Socket Mode envelopes received, by type.",
            &self.envelopes.with_label("type"),
        );
        m(
            "selfheal_socket_ack_seconds",
            "Time from an envelope's arrival to its ack.",
            &self.ack_seconds,
        );
        m(
            "selfheal_failures_recognised_total",
            "Failure notifications recognised.",
            &self.failures_recognised,
        );
        m(
            "selfheal_sessions_ended_total",
            "Healing sessions ended, by outcome.",
            &self.sessions_ended.with_label("outcome"),
        );
        m(
            "selfheal_sessions_running",
            "Healing sessions running now.",
            &self.sessions_running,
        );
        m(
            "selfheal_sessions_queued",
            "Healing sessions waiting for a slot.",
            &self.sessions_queued,
        );
        m(
            "selfheal_slack_rate_limited_total",
            "Slack Web API answers of 429 (rate limited).",
            &self.slack_rate_limited,
        );
        m(
            "selfheal_slack_call_seconds",
            "Latency of one Slack Web API attempt.",
            &self.slack_call_seconds,
        );
        m(
            "selfheal_agent_seconds",
            "How long an agent ran in a session.",
            &self.agent_seconds,
        );
        m(
            "selfheal_verification_seconds",
            "How long the bot's dbt verification of a change took.",
            &self.verification_seconds,
        );
        out
    }

    /// A `hello` arrived (true) or the connection failed (false).
    pub fn set_slack_connected(&self, connected: bool) {
        self.slack_connected.store(connected, Ordering::Relaxed);
    }

    pub fn is_slack_connected(&self) -> bool {
        self.slack_connected.load(Ordering::Relaxed)
    }
}

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of every histogram's buckets: from a fast ack to a
/// long agent run.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// Observations counted per bucket (not cumulative; the exposition sums
/// them), with their sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound (only in `+Inf`).
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        match BUCKETS.iter().position(|&le| secs <= le) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observes the time until the returned guard is dropped.
    pub fn start(&self) -> Timer<'_> {
        Timer {
            histogram: self,
            since: Instant::now(),
        }
    }
}

/// Observes into its histogram when dropped (see [`Histogram::start`]).
pub struct Timer<'a> {
    histogram: &'a Histogram,
    since: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.since.elapsed());
    }
}

/// One metric per value of one label.
#[derive(Debug)]
pub struct Family<M>(Mutex<BTreeMap<String, M>>);

impl<M> Default for Family<M> {
    fn default() -> Self {
        Family(Mutex::new(BTreeMap::new()))
    }
}

impl<M: Default> Family<M> {
    /// Runs `f` on the metric for `value`, made on first use.
    pub fn with(&self, value: &str, f: impl FnOnce(&M)) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(value.to_string()).or_default());
    }

    fn with_label<'a>(&'a self, label: &'a str) -> Labelled<'a, M> {
        Labelled {
            family: self,
            label,
        }
    }
}

impl Family<Counter> {
    pub fn inc(&self, value: &str) {
        self.with(value, Counter::inc);
    }
}

/// A family with the name of its label, for rendering.
struct Labelled<'a, M> {
    family: &'a Family<M>,
    label: &'a str,
}

trait Render {
    fn kind(&self) -> &'static str;
    /// Writes the sample lines of metric `name`, each with `labels`
    /// (`{…}` contents, possibly empty) first.
    fn samples(&self, name: &str, labels: &str, out: &mut String);
    fn render(&self, name: &str, out: &mut String) {
        self.samples(name, "", out);
    }
}

impl Render for Counter {
    fn kind(&self) -> &'static str {
        "counter"
    }
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), self.get());
    }
}

impl Render for Gauge {
    fn kind(&self) -> &'static str {
        "gauge"
    }
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        let value = self.0.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{} {value}", braces(labels));
    }
}

impl Render for Histogram {
    fn kind(&self) -> &'static str {
        "histogram"
    }
    fn samples(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (le, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

impl<M: Render + Default> Render for Labelled<'_, M> {
    fn kind(&self) -> &'static str {
        M::default().kind()
    }
    fn samples(&self, name: &str, _labels: &str, out: &mut String) {
        let all = self.family.0.lock().unwrap_or_else(|p| p.into_inner());
        for (value, metric) in all.iter() {
            let labels = format!("{}=\"{}\"", self.label, escape(value));
            metric.samples(name, &labels, out);
        }
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// A label value as the format wants it: backslash, double quote and line
/// feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_registry_renders_the_text_format() {
        let metrics = Metrics::default();
        metrics.failures_recognised.inc();
        metrics.sessions_ended.inc("fixed");
        metrics.sessions_ended.inc("fixed");
        metrics.sessions_ended.inc("failed");
        metrics.sessions_running.set(3);
        let text = metrics.render();
        let golden = "\
# HELP selfheal_failures_recognised_total Failure notifications recognised.
# TYPE selfheal_failures_recognised_total counter
selfheal_failures_recognised_total 1
# HELP selfheal_sessions_ended_total Healing sessions ended, by outcome.
# TYPE selfheal_sessions_ended_total counter
selfheal_sessions_ended_total{outcome=\"failed\"} 1
selfheal_sessions_ended_total{outcome=\"fixed\"} 2
# HELP selfheal_sessions_running Healing sessions running now.
# TYPE selfheal_sessions_running gauge
selfheal_sessions_running 3
";
        assert!(text.contains(golden), "{text}");
        // An empty family shows its HELP and TYPE and no sample.
        assert!(text.contains(
            "# TYPE selfheal_socket_envelopes_total counter\n# HELP selfheal_socket_ack_seconds"
        ));
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(1000));
        let mut out = String::new();
        h.render("x_seconds", &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "x_seconds_bucket{le=\"0.005\"} 1");
        assert_eq!(lines[3], "x_seconds_bucket{le=\"0.05\"} 2");
        assert_eq!(lines[11], "x_seconds_bucket{le=\"600\"} 2");
        assert_eq!(lines[12], "x_seconds_bucket{le=\"+Inf\"} 3");
        assert_eq!(lines[13], "x_seconds_sum 1000.043");
        assert_eq!(lines[14], "x_seconds_count 3");
    }

    #[test]
    fn label_values_are_escaped() {
        let family = Family::<Counter>::default();
        family.inc("a \"b\" \\ c\nd");
        let mut out = String::new();
        family.with_label("outcome").render("x_total", &mut out);
        assert_eq!(out, "x_total{outcome=\"a \\\"b\\\" \\\\ c\\nd\"} 1\n");
    }

    #[test]
    fn labelled_histograms_put_le_after_their_labels() {
        let family = Family::<Histogram>::default();
        family.with("chat.postMessage", |h| h.observe(Duration::from_millis(1)));
        let mut out = String::new();
        family.with_label("method").render("y_seconds", &mut out);
        assert!(out.starts_with("y_seconds_bucket{method=\"chat.postMessage\",le=\"0.005\"} 1\n"));
        assert!(out.contains("y_seconds_count{method=\"chat.postMessage\"} 1\n"));
    }
}
