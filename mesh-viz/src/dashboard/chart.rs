//! The latency chart of a workload: p50, p95 and p99 over the last minutes, as inline SVG
//! rendered on the server from a [`TimeSeries`]. Steps without traffic are gaps.

use maud::{Markup, html};

use crate::metrics::{SeriesPoint, TimeSeries, format_window};

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 26.0;

type Pick = fn(&SeriesPoint) -> Option<u64>;

const LINES: [(&str, Pick); 3] = [
    ("p50", |p| p.latency_ms_p50),
    ("p95", |p| p.latency_ms_p95),
    ("p99", |p| p.latency_ms_p99),
];

/// A round upper bound for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 1.0 {
        return 1.0;
    }
    let mut unit = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if unit * m >= max {
                return unit * m;
            }
        }
        unit *= 10.0;
    }
}

/// The chart of `series`.
pub(crate) fn render(series: &TimeSeries) -> Markup {
    let points = &series.points;
    let span = points.first().map_or(0.0, |p| p.ago_secs) + series.step_secs;
    let max = points
        .iter()
        .flat_map(|p| LINES.iter().filter_map(move |(_, f)| f(p)))
        .max()
        .unwrap_or(0) as f64;
    let top = nice_ceiling(max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |ago: f64| LEFT + plot_w * (1.0 - ago / span.max(1.0));
    let y = |ms: f64| TOP + plot_h * (1.0 - ms / top);
    let minutes = (span / 60.0).floor() as u32;
    let tick_every = if minutes > 10 { 5 } else { 1 };
    let window = format_window(std::time::Duration::from_secs_f64(span.max(0.0)));

    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img"
            aria-label={ (direction(series)) " latency over the last " (window) }
            data-points=(points.len()) {
            // Grid and axes.
            @for i in 0..=4 {
                @let v = top * f64::from(i) / 4.0;
                @let gy = y(v);
                line.grid x1=(LEFT) y1=(gy) x2=(W - RIGHT) y2=(gy) {}
                text.axis x=(LEFT - 6.0) y=(gy + 4.0) text-anchor="end" { (trim(v)) "ms" }
            }
            @for m in (0..=minutes).step_by(tick_every) {
                text.axis x=(x(f64::from(m) * 60.0)) y=(H - 8.0) text-anchor="middle" {
                    @if m == 0 { "now" } @else { "-" (m) "m" }
                }
            }
            // One polyline per run of points with a value (a lone point is a dot).
            @for (name, pick) in LINES {
                @for run in runs(points, pick, |ago, v| (x(ago), y(v as f64))) {
                    @match run.as_slice() {
                        [] => {}
                        [(cx, cy)] => {
                            circle.dot.(name) r="2.5" cx=(format!("{cx:.1}"))
                                cy=(format!("{cy:.1}")) {}
                        }
                        run => {
                            polyline.line.(name) points=(polyline(run)) {}
                        }
                    }
                }
            }
            // Legend.
            @for (i, (name, _)) in LINES.iter().enumerate() {
                @let lx = LEFT + 10.0 + i as f64 * 70.0;
                line.line.(name) x1=(lx) y1=(TOP) x2=(lx + 18.0) y2=(TOP) {}
                text.legend x=(lx + 22.0) y=(TOP + 4.0) { (name) }
            }
        }
        @if max == 0.0 {
            p.empty { "No requests in this window yet." }
        }
    }
}

/// The runs of `points` that have a value by `pick`, each point placed by `at(seconds ago,
/// value)`: a step without a value ends a run.
fn runs(
    points: &[SeriesPoint],
    pick: Pick,
    at: impl Fn(f64, u64) -> (f64, f64),
) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for p in points {
        match pick(p) {
            Some(v) => {
                if let Some(run) = runs.last_mut() {
                    run.push(at(p.ago_secs, v));
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    runs
}

/// The `points` of a polyline, to a tenth.
fn polyline(run: &[(f64, f64)]) -> String {
    run.iter()
        .map(|(px, py)| format!("{px:.1},{py:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn direction(series: &TimeSeries) -> &'static str {
    match series.direction {
        crate::metrics::Direction::Inbound => "inbound",
        crate::metrics::Direction::Outbound => "outbound",
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Direction;

    fn point(ago: f64, p50: Option<u64>) -> SeriesPoint {
        SeriesPoint {
            ago_secs: ago,
            success: p50.map(|_| 1.0),
            rps: p50.map(|_| 1.0),
            latency_ms_p50: p50,
            latency_ms_p95: p50.map(|v| v * 2),
            latency_ms_p99: p50.map(|v| v * 3),
        }
    }

    #[test]
    fn draws_one_line_per_run_and_leaves_gaps() {
        let series = TimeSeries {
            namespace: "emojivoto".into(),
            name: "web".into(),
            direction: Direction::Inbound,
            step_secs: 10.0,
            points: vec![
                point(50.0, Some(4)),
                point(40.0, Some(5)),
                point(30.0, None),
                point(20.0, Some(6)),
                point(10.0, Some(7)),
                point(0.0, Some(8)),
            ],
        };
        let svg = render(&series).into_string();
        assert_eq!(svg.matches(r#"<polyline class="line p50""#).count(), 2);
        assert_eq!(svg.matches(r#"<polyline class="line p99""#).count(), 2);
        assert!(svg.contains(r#"data-points="6""#));
        // p99 peaks at 24 ms: the axis goes to 50 ms.
        assert!(svg.contains(">50ms<"), "{svg}");
        assert!(svg.contains(">now<"));
        assert!(!svg.contains("No requests"));
    }

    #[test]
    fn an_empty_series_says_so() {
        let series = TimeSeries {
            namespace: "emojivoto".into(),
            name: "web".into(),
            direction: Direction::Outbound,
            step_secs: 10.0,
            points: vec![point(10.0, None), point(0.0, None)],
        };
        let svg = render(&series).into_string();
        assert!(svg.contains("No requests in this window yet"));
        assert!(!svg.contains("<polyline"));
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(24.0), 50.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
    }
}
