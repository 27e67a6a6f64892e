//! The metrics book: what each component of each stage used and how its service answered,
//! sampled every [`SAMPLE_SECS`] — CPU and memory from the runtime, requests, errors and
//! latency from the share-link proxy — kept in memory as 10-second points for an hour (the
//! cards' sparklines), summarized every 5 minutes on the clock's marks, and written out in the
//! Prometheus text format. What [`MetricsBook::sample`] makes is kept in the database by the
//! services (the charts read every server's points from there).

use crate::{ComponentUsage, StageKey};
use chrono::{DateTime, Duration, Utc};
use pergola_domain::metrics::{ComponentMetrics, MetricPoint, MetricsWindow, Sparkline, SAMPLE_SECS, SUMMARY_SECS};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;

/// At most this many latencies are kept per component and interval (the rest still count).
const LATENCIES_KEPT: usize = 4096;
/// Points a sparkline shows (the last hour, averaged).
const SPARK_POINTS: i64 = 30;

#[derive(Default)]
struct Pending {
    requests: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

#[derive(Default)]
struct Series {
    /// The last CPU reading: when, and the seconds used then.
    last_cpu: Option<(DateTime<Utc>, f64)>,
    pending: Pending,
    fine: VecDeque<MetricPoint>,
    /// The end of the last summary (the start of the next).
    summarized_to: Option<DateTime<Utc>>,
    /// Counters since the server started, for Prometheus.
    requests_total: u64,
    errors_total: u64,
    cpu_secs: f64,
    memory_bytes: Option<u64>,
    last_seen: Option<DateTime<Utc>>,
}

/// A point [`MetricsBook::sample`] made: of `component` of the stage `key`, a 10-second point
/// or a 5-minute `summary`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPoint {
    pub key: StageKey,
    pub component: String,
    pub summary: bool,
    pub point: MetricPoint,
}

/// Every component's series (see the module's documentation).
#[derive(Default)]
pub struct MetricsBook {
    series: Mutex<HashMap<(StageKey, String), Series>>,
    last_sample: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for MetricsBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBook").finish_non_exhaustive()
    }
}

impl MetricsBook {
    /// One request the proxy forwarded to `component` (status 502/504 when it did not answer).
    pub fn record_request(&self, key: &StageKey, component: &str, status: u16, elapsed_ms: f64) {
        let mut series = self.series.lock().expect("metrics lock");
        let s = series.entry((key.clone(), component.to_owned())).or_default();
        s.pending.requests += 1;
        s.requests_total += 1;
        if status >= 500 {
            s.pending.errors += 1;
            s.errors_total += 1;
        }
        if s.pending.latencies_ms.len() < LATENCIES_KEPT && elapsed_ms.is_finite() {
            s.pending.latencies_ms.push(elapsed_ms.max(0.0));
        }
    }

    /// Closes the interval ending `now`: a point for each component that ran or was asked
    /// something in it (and a summary where 5 minutes are over). Returns the points made.
    pub fn sample(&self, now: DateTime<Utc>, usage: Vec<ComponentUsage>) -> Vec<NewPoint> {
        let secs = {
            let mut last = self.last_sample.lock().expect("metrics lock");
            let secs = last.map_or(SAMPLE_SECS, |t| (now - t).num_seconds().clamp(1, 3600));
            *last = Some(now);
            secs
        };
        let mut series = self.series.lock().expect("metrics lock");
        let mut used: HashMap<(StageKey, String), (f64, u64)> = HashMap::new();
        for u in usage {
            used.insert((u.key, u.component), (u.cpu_secs, u.memory_bytes));
        }
        for id in used.keys() {
            series.entry(id.clone()).or_default();
        }
        let mut made = Vec::new();
        for (id, s) in series.iter_mut() {
            let usage = used.get(id).copied();
            if usage.is_none() && s.pending.requests == 0 {
                s.last_cpu = None;
                continue;
            }
            let cpu_percent = usage.and_then(|(cpu, _)| {
                let before = s.last_cpu.replace((now, cpu));
                before.and_then(|(at, was)| {
                    let wall = (now - at).num_milliseconds() as f64 / 1000.0;
                    (cpu >= was && wall > 0.0).then(|| (cpu - was) / wall * 100.0)
                })
            });
            if let Some((cpu, memory)) = usage {
                s.cpu_secs = cpu;
                s.memory_bytes = Some(memory);
            }
            let pending = std::mem::take(&mut s.pending);
            let (p50_ms, p95_ms) = percentiles(pending.latencies_ms);
            let point = MetricPoint {
                at: now,
                secs,
                cpu_percent,
                memory_bytes: usage.map(|(_, m)| m),
                requests: pending.requests,
                errors: pending.errors,
                p50_ms,
                p95_ms,
            };
            s.fine.push_back(point.clone());
            s.last_seen = Some(now);
            made.push(NewPoint { key: id.0.clone(), component: id.1.clone(), summary: false, point });
        }
        // Summaries end on the clock's 5-minute marks, the same for every server: the points
        // up to the last mark passed that no summary holds yet.
        let mark = DateTime::from_timestamp(now.timestamp().div_euclid(SUMMARY_SECS) * SUMMARY_SECS, 0).unwrap_or(now);
        for (id, s) in series.iter_mut() {
            if s.summarized_to.is_some_and(|to| to >= mark) {
                continue;
            }
            if let Some(summary) = summary_up_to(s, mark) {
                made.push(NewPoint { key: id.0.clone(), component: id.1.clone(), summary: true, point: summary });
            }
        }
        for s in series.values_mut() {
            while s.fine.front().is_some_and(|p| now - p.at > Duration::seconds(MetricsWindow::Hour.secs())) {
                s.fine.pop_front();
            }
        }
        // A component not seen for a day is forgotten.
        series.retain(|_, s| s.last_seen.is_some_and(|t| now - t <= Duration::seconds(MetricsWindow::Day.secs())));
        made
    }

    /// Summarizes what no summary holds yet, up to `now` (the server is stopping: the next
    /// one starts its own series). Returns the summaries made.
    pub fn flush(&self, now: DateTime<Utc>) -> Vec<NewPoint> {
        let mut series = self.series.lock().expect("metrics lock");
        let mut made = Vec::new();
        for (id, s) in series.iter_mut() {
            if let Some(summary) = summary_up_to(s, now) {
                made.push(NewPoint { key: id.0.clone(), component: id.1.clone(), summary: true, point: summary });
            }
        }
        made
    }

    /// A stage's components and this server's 10-second points of the hour ending `now`.
    pub fn hour(&self, key: &StageKey, now: DateTime<Utc>) -> Vec<ComponentMetrics> {
        let from = now - Duration::seconds(MetricsWindow::Hour.secs());
        let series = self.series.lock().expect("metrics lock");
        let mut out: Vec<ComponentMetrics> = series
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, component), s)| ComponentMetrics {
                component: component.clone(),
                points: s.fine.iter().filter(|p| p.at >= from).cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| a.component.cmp(&b.component));
        out
    }

    /// Each component's CPU over the last hour, averaged into a few points (the cards). Read in
    /// place: a project page draws one per component of every card it shows.
    pub fn sparklines(&self, key: &StageKey, now: DateTime<Utc>) -> Vec<Sparkline> {
        let step = Duration::seconds(MetricsWindow::Hour.secs() / SPARK_POINTS);
        let from = now - Duration::seconds(MetricsWindow::Hour.secs());
        let series = self.series.lock().expect("metrics lock");
        let mut out: Vec<Sparkline> = series
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, component), s)| {
                // (sum, count) of each stretch's CPU readings.
                let mut buckets = [(0.0f64, 0u32); SPARK_POINTS as usize];
                for p in s.fine.iter().filter(|p| p.at >= from) {
                    if let Some(cpu) = p.cpu_percent {
                        let n = ((p.at - from).num_seconds() / step.num_seconds()).clamp(0, SPARK_POINTS - 1);
                        let bucket = &mut buckets[n as usize];
                        *bucket = (bucket.0 + cpu, bucket.1 + 1);
                    }
                }
                let values = (0..SPARK_POINTS)
                    .zip(buckets)
                    .filter(|(_, (_, count))| *count > 0)
                    .map(|(n, (sum, count))| (from + step * (n as i32 + 1), Some(sum / f64::from(count))))
                    .collect();
                Sparkline { component: component.clone(), from, to: now, values }
            })
            .collect();
        out.sort_by(|a, b| a.component.cmp(&b.component));
        out
    }

    /// Forgets a stage's series (it was purged).
    pub fn forget(&self, key: &StageKey) {
        self.series.lock().expect("metrics lock").retain(|(k, _), _| k != key);
    }

    /// Every component's counters and gauges in the Prometheus text format (after `# TYPE`
    /// lines of their own), appended to `out`.
    pub fn write_prometheus(&self, out: &mut String) {
        let series = self.series.lock().expect("metrics lock");
        let mut rows: Vec<(&(StageKey, String), &Series)> = series.iter().collect();
        rows.sort_by(|a, b| (&a.0 .0.project, &a.0 .0.stage, &a.0 .1).cmp(&(&b.0 .0.project, &b.0 .0.stage, &b.0 .1)));
        let families: [Family; 5] = [
            (
                "pergola_component_cpu_seconds_total",
                "counter",
                "CPU time of the component's processes since they started (resets when they restart).",
                &|s| s.last_cpu.map(|_| s.cpu_secs),
            ),
            (
                "pergola_component_memory_bytes",
                "gauge",
                "Resident memory of the component's processes at the last sample.",
                &|s| s.last_cpu.and(s.memory_bytes).map(|m| m as f64),
            ),
            (
                "pergola_proxy_requests_total",
                "counter",
                "Requests the share-link proxy forwarded to the component.",
                &|s| Some(s.requests_total as f64),
            ),
            ("pergola_proxy_errors_total", "counter", "Of those, answered with a 5xx or not at all.", &|s| {
                Some(s.errors_total as f64)
            }),
            (
                "pergola_proxy_latency_p95_seconds",
                "gauge",
                "95th percentile of the time to the answer's head in the last interval with requests.",
                &|s| s.fine.iter().rev().find_map(|p| p.p95_ms).map(|ms| ms / 1000.0),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((key, component), s) in &rows {
                if let Some(v) = value(s) {
                    let _ = writeln!(
                        out,
                        "{name}{{project=\"{}\",stage=\"{}\",component=\"{}\"}} {v}",
                        label(&key.project),
                        label(&key.stage),
                        label(component)
                    );
                }
            }
        }
    }
}

/// A metric family: name, type, help, and its value of one series.
type Family<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&Series) -> Option<f64>);

/// The summary, ending `to`, of the series' points after its last summary up to `to` (none
/// without such points); the series is then summarized to `to`.
fn summary_up_to(s: &mut Series, to: DateTime<Utc>) -> Option<MetricPoint> {
    let from = s.summarized_to;
    s.summarized_to = Some(to);
    let points: Vec<MetricPoint> =
        s.fine.iter().filter(|p| p.at <= to && from.is_none_or(|from| p.at > from)).cloned().collect();
    MetricPoint::summarize(&points).map(|summary| MetricPoint { at: to, ..summary })
}

/// A label value escaped as the text format asks (`\\`, `\"`, `\n`).
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The median and the 95th percentile (nearest rank).
fn percentiles(mut values: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (Some(rank(0.5)), Some(rank(0.95)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn used(key: &StageKey, component: &str, cpu: f64, memory: u64) -> ComponentUsage {
        ComponentUsage { key: key.clone(), component: component.into(), cpu_secs: cpu, memory_bytes: memory }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentiles(vec![]), (None, None));
        assert_eq!(percentiles(vec![7.0]), (Some(7.0), Some(7.0)));
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(v), (Some(50.0), Some(95.0)));
    }

    #[test]
    fn cpu_is_a_rate_requests_are_per_interval_and_a_restart_is_no_negative_spike() {
        let book = MetricsBook::default();
        let key = StageKey::new("shop", "dev");
        book.sample(t(0), vec![used(&key, "web", 10.0, 1000)]);
        for ms in [10.0, 20.0, 30.0, 1000.0] {
            book.record_request(&key, "web", 200, ms);
        }
        book.record_request(&key, "web", 502, 5.0);
        book.sample(t(10), vec![used(&key, "web", 15.0, 3000)]);
        // Restarted: its counter starts again.
        book.sample(t(20), vec![used(&key, "web", 0.5, 500)]);
        book.sample(t(30), vec![used(&key, "web", 1.5, 600)]);
        let points = &book.hour(&key, t(30))[0].points;
        let cpu: Vec<Option<f64>> = points.iter().map(|p| p.cpu_percent).collect();
        assert_eq!(cpu, [None, Some(50.0), None, Some(10.0)]);
        assert_eq!(points[1].memory_bytes, Some(3000));
        assert_eq!((points[1].requests, points[1].errors), (5, 1));
        assert_eq!((points[1].p50_ms, points[1].p95_ms), (Some(20.0), Some(1000.0)));
        assert_eq!((points[2].requests, points[2].p95_ms), (0, None));
        // Another stage's page sees none of it.
        assert!(book.hour(&StageKey::new("shop", "qa"), t(30)).is_empty());
    }

    #[test]
    fn an_hour_of_points_is_kept_summaries_are_made_on_the_marks_and_a_silent_component_is_forgotten() {
        let book = MetricsBook::default();
        let key = StageKey::new("shop", "dev");
        let mut cpu = 0.0;
        let mut summaries = Vec::new();
        for n in 0..=(25 * 360) {
            cpu += 1.0; // 10 % of a core
            let made = book.sample(t(n * 10), vec![used(&key, "worker", cpu, 42)]);
            summaries.extend(made.into_iter().filter(|p| p.summary).map(|p| p.point));
        }
        let now = t(25 * 3600);
        let hour = &book.hour(&key, now)[0].points;
        assert_eq!(hour.len(), 361);
        assert!(hour.iter().skip(1).all(|p| (p.cpu_percent.unwrap() - 10.0).abs() < 1e-9));
        // One summary per 5 minutes, each ending on a mark and holding what came since the last.
        // (The first point, taken on a mark, has a summary of its own.)
        assert_eq!(summaries.len(), 25 * 12 + 1, "{}", summaries.len());
        assert!(summaries.iter().all(|p| p.at.timestamp() % SUMMARY_SECS == 0));
        assert!(summaries.windows(2).all(|w| (w[1].at - w[0].at).num_seconds() == SUMMARY_SECS));
        assert!(summaries.iter().skip(1).all(|p| p.secs == SUMMARY_SECS));
        assert!(summaries.iter().skip(1).all(|p| (p.cpu_percent.unwrap() - 10.0).abs() < 1e-9));
        let spark = &book.sparklines(&key, now)[0];
        assert_eq!(spark.values.len(), SPARK_POINTS as usize);
        assert!(spark.values.iter().all(|(_, cpu)| (cpu.unwrap() - 10.0).abs() < 1e-9), "{:?}", spark.values);
        assert_eq!(spark.values.last().unwrap().0, now);
        assert!(spark.values.windows(2).all(|w| (w[1].0 - w[0].0).num_seconds() == 3600 / SPARK_POINTS));
        // Stopped: no new points, the hour empties; after a day it is forgotten.
        book.sample(now + Duration::hours(2), vec![]);
        assert!(book.hour(&key, now + Duration::hours(2))[0].points.is_empty());
        book.sample(now + Duration::hours(25), vec![]);
        assert!(book.hour(&key, now + Duration::hours(25)).is_empty());
    }

    #[test]
    fn the_prometheus_text_is_well_formed_and_escapes_labels() {
        let book = MetricsBook::default();
        let key = StageKey::new("shop", "dev");
        book.sample(t(0), vec![used(&key, "we\"b\\\n", 1.0, 2048)]);
        book.record_request(&key, "we\"b\\\n", 500, 12.0);
        book.sample(t(10), vec![used(&key, "we\"b\\\n", 2.0, 4096)]);
        let mut text = String::new();
        book.write_prometheus(&mut text);
        check_exposition(&text);
        assert!(
            text.contains(
                "pergola_component_memory_bytes{project=\"shop\",stage=\"dev\",component=\"we\\\"b\\\\\\n\"} 4096\n"
            ),
            "{text}"
        );
        assert!(text
            .contains("pergola_proxy_errors_total{project=\"shop\",stage=\"dev\",component=\"we\\\"b\\\\\\n\"} 1\n"));
        assert!(text.contains(
            "pergola_proxy_latency_p95_seconds{project=\"shop\",stage=\"dev\",component=\"we\\\"b\\\\\\n\"} 0.012\n"
        ));
    }

    /// Checks Prometheus' text exposition format: `# HELP`/`# TYPE` before a family's samples,
    /// metric names, label sets with escaped quoted values, and a float value on every line.
    pub(crate) fn check_exposition(text: &str) {
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind), "{line}");
                assert!(typed.insert(name.to_owned()), "declared twice: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "stray line: {line:?}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
            assert!(typed.contains(name), "a sample before its TYPE: {line}");
            let mut rest = &line[name_end..];
            if let Some(labels) = rest.strip_prefix('{') {
                let mut chars = labels.char_indices();
                let mut end = None;
                let mut in_value = false;
                while let Some((i, c)) = chars.next() {
                    match (in_value, c) {
                        (true, '\\') => {
                            let (_, next) = chars.next().unwrap();
                            assert!(matches!(next, '\\' | '"' | 'n'), "bad escape in {line}");
                        }
                        (true, '"') => in_value = false,
                        (true, '\n') => panic!("raw newline in a label value: {line}"),
                        (false, '"') => in_value = true,
                        (false, '}') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &labels[end.expect("closed label set") + 1..];
            }
            let value = rest.strip_prefix(' ').expect("a space before the value");
            assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
        }
    }
}
