//! Prometheus metrics in the text exposition format: counters of received, rejected (by
//! reason) and processed instances, and latency histograms per stage.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use crate::store::Source;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    received: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    processed: BTreeMap<String, u64>,
    explanations: BTreeMap<String, u64>,
    sent: u64,
    send_failures: u64,
    stages: BTreeMap<String, Histogram>,
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    /// An instance was received through `source`.
    pub fn received(&self, source: Source) {
        self.with(|m| *m.received.entry(source.as_str().into()).or_default() += 1);
    }

    /// An instance was rejected (by intake or quality control) for `reason`.
    pub fn rejected(&self, reason: &str) {
        self.with(|m| *m.rejected.entry(reason.into()).or_default() += 1);
    }

    /// An instance was processed with `outcome` (`result`, `indeterminate`, `rejected`,
    /// `failed`).
    pub fn processed(&self, outcome: &str) {
        self.with(|m| *m.processed.entry(outcome.into()).or_default() += 1);
    }

    /// An explanation secondary capture was made (`made`) or could not be (`failed`).
    pub fn explained(&self, outcome: &str) {
        self.with(|m| *m.explanations.entry(outcome.into()).or_default() += 1);
    }

    /// A report was delivered (or not).
    pub fn sent(&self, ok: bool) {
        self.with(|m| {
            if ok {
                m.sent += 1;
            } else {
                m.send_failures += 1;
            }
        });
    }

    /// A stage took `seconds`.
    pub fn observe(&self, stage: &str, seconds: f64) {
        self.with(|m| {
            let h = m.stages.entry(stage.into()).or_insert_with(|| Histogram {
                counts: vec![0; BUCKETS.len()],
                ..Histogram::default()
            });
            for (i, &b) in BUCKETS.iter().enumerate() {
                if seconds <= b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        });
    }

    /// The text exposition, with `queue` (rows per state) as a gauge.
    pub fn render(&self, queue: &[(String, i64)]) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let counter =
            |out: &mut String, name: &str, help: &str, label: &str, map: &BTreeMap<String, u64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, v) in map {
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
                }
            };
        counter(
            &mut out,
            "bedside_serve_received_total",
            "Instances received.",
            "source",
            &m.received,
        );
        counter(
            &mut out,
            "bedside_serve_rejected_total",
            "Instances rejected, by reason.",
            "reason",
            &m.rejected,
        );
        counter(
            &mut out,
            "bedside_serve_processed_total",
            "Instances processed, by outcome.",
            "outcome",
            &m.processed,
        );
        counter(
            &mut out,
            "bedside_serve_explanations_total",
            "Explanation secondary captures, by outcome.",
            "outcome",
            &m.explanations,
        );
        let _ = writeln!(
            out,
            "# HELP bedside_serve_reports_sent_total Reports delivered to the destination.\n# TYPE bedside_serve_reports_sent_total counter\nbedside_serve_reports_sent_total {}",
            m.sent
        );
        let _ = writeln!(
            out,
            "# HELP bedside_serve_send_failures_total Failed deliveries.\n# TYPE bedside_serve_send_failures_total counter\nbedside_serve_send_failures_total {}",
            m.send_failures
        );
        let _ = writeln!(
            out,
            "# HELP bedside_serve_queue Instances in the queue, by state.\n# TYPE bedside_serve_queue gauge"
        );
        for (state, n) in queue {
            let _ = writeln!(out, "bedside_serve_queue{{state=\"{state}\"}} {n}");
        }
        let name = "bedside_serve_stage_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency per stage.\n# TYPE {name} histogram"
        );
        for (stage, h) in &m.stages {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{stage=\"{stage}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{stage=\"{stage}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {}", h.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe("qc", 0.003);
        m.observe("qc", 0.2);
        m.rejected("too_few_frames");
        let text = m.render(&[("pending".into(), 2)]);
        assert!(text.contains("bedside_serve_stage_seconds_bucket{stage=\"qc\",le=\"0.005\"} 1"));
        assert!(text.contains("bedside_serve_stage_seconds_bucket{stage=\"qc\",le=\"0.25\"} 2"));
        assert!(text.contains("bedside_serve_stage_seconds_count{stage=\"qc\"} 2"));
        assert!(text.contains("bedside_serve_rejected_total{reason=\"too_few_frames\"} 1"));
        assert!(text.contains("bedside_serve_queue{state=\"pending\"} 2"));
    }
}
