//! What a stage's components use and how their services answer, over time: the points the
//! server samples every [`SAMPLE_SECS`] (kept for an hour) and their 5-minute summaries (kept
//! for a day), the windows a page or the API asks for, and the SVG paths of the charts and
//! sparklines (drawn by the page itself: no chart library in the browser).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How often the server samples.
pub const SAMPLE_SECS: i64 = 10;
/// The length of a summary point (the 24-hour window's step).
pub const SUMMARY_SECS: i64 = 300;

/// What a component did during one interval (ending at `at`). `None`: not known for it (a
/// worker answers no requests; a component not running uses nothing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    /// Seconds this point covers.
    pub secs: i64,
    /// CPU used, in percent of one core (200: two cores busy).
    pub cpu_percent: Option<f64>,
    /// Resident memory of all its processes, in bytes (the largest seen in the interval).
    pub memory_bytes: Option<u64>,
    /// Requests the share-link proxy forwarded to it.
    pub requests: u64,
    /// Of those, answered with a 5xx (or not answered at all: 502, 504).
    pub errors: u64,
    /// Time to the answer's head, in milliseconds: median and 95th percentile.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

impl MetricPoint {
    /// Requests per minute in this interval.
    pub fn requests_per_minute(&self) -> f64 {
        if self.secs <= 0 {
            return 0.0;
        }
        self.requests as f64 * 60.0 / self.secs as f64
    }

    /// The share of requests answered with an error, in percent (`None` without requests).
    pub fn error_percent(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 * 100.0 / self.requests as f64)
    }

    /// The summary of consecutive `points` (oldest first) as one point ending at the last.
    pub fn summarize(points: &[MetricPoint]) -> Option<MetricPoint> {
        let last = points.last()?;
        let mean = |f: &dyn Fn(&MetricPoint) -> Option<f64>| {
            let v: Vec<f64> = points.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let max = |f: &dyn Fn(&MetricPoint) -> Option<f64>| points.iter().filter_map(f).reduce(f64::max);
        Some(MetricPoint {
            at: last.at,
            secs: points.iter().map(|p| p.secs).sum(),
            cpu_percent: mean(&|p| p.cpu_percent),
            memory_bytes: points.iter().filter_map(|p| p.memory_bytes).max(),
            requests: points.iter().map(|p| p.requests).sum(),
            errors: points.iter().map(|p| p.errors).sum(),
            // Percentiles cannot be merged exactly: the busiest interval's median, the worst p95.
            p50_ms: points.iter().filter(|p| p.p50_ms.is_some()).max_by_key(|p| p.requests).and_then(|p| p.p50_ms),
            p95_ms: max(&|p| p.p95_ms),
        })
    }

    /// The points several servers took of one component (each with its server), as one
    /// series, oldest first: the points in one `bucket_secs`-long stretch are one point — each
    /// server's summarized ([`MetricPoint::summarize`]), then added up: requests and errors
    /// (each server proxies its own), CPU and memory (each server's runtime sees its own
    /// processes), the time covered as the longest of theirs, the latencies weighted by each
    /// server's requests.
    pub fn combine(points: Vec<(String, MetricPoint)>, bucket_secs: i64) -> Vec<MetricPoint> {
        use std::collections::BTreeMap;
        // One server's points are shown as it took them (its sampling may drift across a
        // stretch's edge: two of its points in one stretch are not one point).
        if points.windows(2).all(|w| w[0].0 == w[1].0) {
            let mut points: Vec<MetricPoint> = points.into_iter().map(|(_, p)| p).collect();
            points.sort_by_key(|p| p.at);
            return points;
        }
        let bucket_ms = bucket_secs.max(1) * 1000;
        let mut buckets: BTreeMap<i64, BTreeMap<String, Vec<MetricPoint>>> = BTreeMap::new();
        for (server, point) in points {
            // A point ends at its time: one at a stretch's very end belongs to that stretch
            // (a summary made at a 5-minute mark covers the 5 minutes before it).
            let bucket = (point.at.timestamp_millis() - 1).div_euclid(bucket_ms);
            buckets.entry(bucket).or_default().entry(server).or_default().push(point);
        }
        buckets
            .into_values()
            .filter_map(|servers| {
                let each: Vec<MetricPoint> = servers
                    .into_values()
                    .filter_map(|mut p| {
                        p.sort_by_key(|p| p.at);
                        MetricPoint::summarize(&p)
                    })
                    .collect();
                let sum = |f: &dyn Fn(&MetricPoint) -> Option<f64>| {
                    let v: Vec<f64> = each.iter().filter_map(f).collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>())
                };
                let requests: u64 = each.iter().map(|p| p.requests).sum();
                let weighted = |f: &dyn Fn(&MetricPoint) -> Option<f64>| {
                    let with: Vec<(f64, u64)> = each.iter().filter_map(|p| Some((f(p)?, p.requests))).collect();
                    let weight: u64 = with.iter().map(|(_, n)| n).sum();
                    if weight == 0 {
                        return with.iter().map(|(v, _)| *v).reduce(f64::max);
                    }
                    Some(with.iter().map(|(v, n)| v * *n as f64).sum::<f64>() / weight as f64)
                };
                Some(MetricPoint {
                    at: each.iter().map(|p| p.at).max()?,
                    secs: each.iter().map(|p| p.secs).max()?,
                    cpu_percent: sum(&|p| p.cpu_percent),
                    memory_bytes: each.iter().filter_map(|p| p.memory_bytes).reduce(|a, b| a.saturating_add(b)),
                    requests,
                    errors: each.iter().map(|p| p.errors).sum(),
                    p50_ms: weighted(&|p| p.p50_ms),
                    p95_ms: weighted(&|p| p.p95_ms),
                })
            })
            .collect()
    }
}

/// The window a chart shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MetricsWindow {
    /// The last hour, a point every 10 s.
    #[default]
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours, a point every 5 minutes.
    #[serde(rename = "24h")]
    Day,
}

impl MetricsWindow {
    pub fn parse(s: &str) -> Result<Self, crate::Error> {
        match s {
            "1h" => Ok(MetricsWindow::Hour),
            "24h" => Ok(MetricsWindow::Day),
            _ => Err(crate::Error::malformed("window must be 1h or 24h.")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricsWindow::Hour => "1h",
            MetricsWindow::Day => "24h",
        }
    }

    pub fn secs(self) -> i64 {
        match self {
            MetricsWindow::Hour => 3600,
            MetricsWindow::Day => 24 * 3600,
        }
    }
}

/// One component's points in a window, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentMetrics {
    pub component: String,
    pub points: Vec<MetricPoint>,
}

/// A stage's metrics in a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageMetrics {
    pub window: MetricsWindow,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub components: Vec<ComponentMetrics>,
}

/// A component's CPU over the last hour, a few points, for a card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sparkline {
    pub component: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// CPU in percent of one core, at the end of each stretch.
    pub values: Vec<(DateTime<Utc>, Option<f64>)>,
}

/// The SVG path (`M x y L x y …`) of `values` drawn over `(from, to)` in a `width` × `height`
/// box, 0 at the bottom and `top` at the top; a gap (`None`) starts a new line. Times outside
/// the window are left out.
pub fn chart_path(
    values: &[(DateTime<Utc>, Option<f64>)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    top: f64,
    width: f64,
    height: f64,
) -> String {
    let span = (to - from).num_milliseconds().max(1) as f64;
    let top = if top.is_finite() && top > 0.0 { top } else { 1.0 };
    let mut path = String::new();
    let mut pen_down = false;
    for (at, value) in values {
        let t = (*at - from).num_milliseconds() as f64;
        let Some(v) = value.filter(|v| v.is_finite() && (0.0..=span).contains(&t)) else {
            pen_down = false;
            continue;
        };
        let x = t / span * width;
        let y = height - (v.clamp(0.0, top) / top) * height;
        // A line starts with a zero-length step: drawn with round caps, a lone point is a dot.
        if pen_down {
            path.push_str(&format!(" L{x:.1} {y:.1}"));
        } else {
            path.push_str(&format!("{}{x:.1} {y:.1} l0 0", if path.is_empty() { "M" } else { " M" }));
        }
        pen_down = true;
    }
    path
}

/// A chart's top: the largest value, rounded up to a readable figure (1, 2, 5 × 10ⁿ).
pub fn nice_top(values: impl IntoIterator<Item = f64>) -> f64 {
    let max = values.into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|top| *top >= max).unwrap_or(10.0 * magnitude)
}

/// A byte count for people: `512 B`, `3.4 MB`.
pub fn format_bytes(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn point(s: i64, cpu: Option<f64>, mem: Option<u64>, requests: u64, errors: u64, p95: Option<f64>) -> MetricPoint {
        MetricPoint {
            at: t0() + Duration::seconds(s),
            secs: 10,
            cpu_percent: cpu,
            memory_bytes: mem,
            requests,
            errors,
            p50_ms: p95.map(|p| p / 2.0),
            p95_ms: p95,
        }
    }

    #[test]
    fn points_of_several_servers_add_up_per_stretch() {
        let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let point = |at: i64, requests: u64, errors: u64, p50: Option<f64>, cpu: Option<f64>| MetricPoint {
            at: t(at),
            secs: 10,
            cpu_percent: cpu,
            memory_bytes: cpu.map(|_| 1000),
            requests,
            errors,
            p50_ms: p50,
            p95_ms: p50.map(|v| v * 2.0),
        };
        // Stretches of 10 s from 1_700_000_000 (a multiple of 10): a (3 s in), b (7 s in) in the
        // first; a alone in the second.
        let combined = MetricPoint::combine(
            vec![
                ("a".into(), point(3, 30, 3, Some(10.0), Some(50.0))),
                ("b".into(), point(7, 10, 0, Some(50.0), None)),
                ("a".into(), point(13, 5, 0, None, Some(20.0))),
            ],
            10,
        );
        assert_eq!(combined.len(), 2);
        let first = &combined[0];
        assert_eq!((first.at, first.secs, first.requests, first.errors), (t(7), 10, 40, 3));
        // The latency weighted by requests: (10 × 30 + 50 × 10) / 40.
        assert_eq!(first.p50_ms, Some(20.0));
        assert_eq!(first.p95_ms, Some(40.0));
        // CPU and memory: only a's runtime saw the process.
        assert_eq!((first.cpu_percent, first.memory_bytes), (Some(50.0), Some(1000)));
        let second = &combined[1];
        assert_eq!((second.requests, second.p50_ms, second.cpu_percent), (5, None, Some(20.0)));
        // With another server, one server's two points in one stretch are its summary
        // (requests and time add up); a point at a stretch's end belongs to it.
        let two = MetricPoint::combine(
            vec![
                ("a".into(), point(1, 1, 0, None, Some(10.0))),
                ("a".into(), point(4, 2, 1, None, Some(30.0))),
                ("b".into(), point(10, 1, 0, None, None)),
            ],
            10,
        );
        assert_eq!(two.len(), 1);
        assert_eq!((two[0].requests, two[0].errors, two[0].secs, two[0].cpu_percent), (4, 1, 20, Some(20.0)));
        // One server alone: its points as it took them, oldest first.
        let one = MetricPoint::combine(
            vec![("a".into(), point(4, 2, 1, None, Some(30.0))), ("a".into(), point(1, 1, 0, None, Some(10.0)))],
            10,
        );
        assert_eq!(one.iter().map(|p| p.requests).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_summary_keeps_the_mean_cpu_the_peak_memory_and_every_request() {
        let points = [
            point(10, Some(10.0), Some(100), 6, 0, Some(20.0)),
            point(20, None, None, 0, 0, None),
            point(30, Some(30.0), Some(300), 4, 2, Some(80.0)),
        ];
        let s = MetricPoint::summarize(&points).unwrap();
        assert_eq!(s.at, points[2].at);
        assert_eq!(s.secs, 30);
        assert_eq!(s.cpu_percent, Some(20.0));
        assert_eq!(s.memory_bytes, Some(300));
        assert_eq!((s.requests, s.errors), (10, 2));
        assert_eq!(s.p95_ms, Some(80.0));
        assert_eq!(s.p50_ms, Some(10.0), "the busiest interval's median");
        assert_eq!(s.error_percent(), Some(20.0));
        assert_eq!(s.requests_per_minute(), 20.0);
        assert!(MetricPoint::summarize(&[]).is_none());
        assert_eq!(point(0, None, None, 0, 0, None).error_percent(), None);
    }

    #[test]
    fn windows_are_read_and_nonsense_refused() {
        assert_eq!(MetricsWindow::parse("1h").unwrap(), MetricsWindow::Hour);
        assert!(MetricsWindow::parse("").is_err() && MetricsWindow::parse(" 1h").is_err());
        assert_eq!(MetricsWindow::parse("24h").unwrap(), MetricsWindow::Day);
        assert!(MetricsWindow::parse("7d").is_err());
        assert_eq!(serde_json::to_value(MetricsWindow::Day).unwrap(), "24h");
    }

    #[test]
    fn a_chart_path_spans_the_box_and_breaks_at_gaps() {
        let values = vec![
            (t0(), Some(0.0)),
            (t0() + Duration::seconds(50), Some(50.0)),
            (t0() + Duration::seconds(60), None),
            (t0() + Duration::seconds(100), Some(100.0)),
            (t0() + Duration::seconds(200), Some(7.0)),
            (t0() + Duration::seconds(70), Some(f64::NAN)),
        ];
        let path = chart_path(&values, t0(), t0() + Duration::seconds(100), 100.0, 200.0, 50.0);
        assert_eq!(path, "M0.0 50.0 l0 0 L100.0 25.0 M200.0 0.0 l0 0");
        assert_eq!(chart_path(&[], t0(), t0(), 0.0, 10.0, 10.0), "");
    }

    #[test]
    fn tops_and_sizes_read_well() {
        assert_eq!(nice_top([0.3, 0.7]), 1.0);
        assert_eq!(nice_top([13.0]), 20.0);
        assert_eq!(nice_top([420.0, 10.0]), 500.0);
        assert_eq!(nice_top([]), 1.0);
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(3.5 * 1024.0 * 1024.0), "3.5 MB");
    }
}
