//! Counts over time as a small hand-written SVG: one panel per run, a
//! line per series that ever counted something (orders by state for
//! `orderflow-fleet bench --plot` and the console, decisions by class for the
//! console). No chart library, nothing fetched by the page.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

/// The counts of each series at one moment.
#[derive(Debug, Clone)]
pub struct Sample<K> {
    /// Where on the x axis, in the axis's unit.
    pub at: f64,
    pub counts: BTreeMap<K, u64>,
}

const WIDTH: f64 = 760.0;
const PANEL: f64 = 250.0;
const LEFT: f64 = 55.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// A colour per series, in the order the series are given.
const COLOURS: [&str; 12] = [
    "#9e9e9e", "#7b1fa2", "#1976d2", "#f57c00", "#0097a7", "#fbc02d", "#5d4037", "#2e7d32",
    "#c62828", "#455a64", "#d81b60", "#e65100",
];

/// One panel per `(title, samples)`, stacked; `series` in legend order,
/// `axis` names the x axis and its unit.
pub fn svg<K: Ord + Display>(
    panels: &[(String, &[Sample<K>])],
    axis: &str,
    series: &[K],
) -> String {
    let height = PANEL * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    for (i, (title, samples)) in panels.iter().enumerate() {
        panel(&mut out, PANEL * i as f64, title, samples, axis, series);
    }
    out.push_str("</svg>\n");
    out
}

fn panel<K: Ord + Display>(
    out: &mut String,
    y0: f64,
    title: &str,
    samples: &[Sample<K>],
    axis: &str,
    series: &[K],
) {
    let (x_left, x_right) = (LEFT, WIDTH - RIGHT);
    let (y_top, y_bottom) = (y0 + TOP, y0 + PANEL - BOTTOM);
    let max_t = samples.iter().map(|s| s.at).fold(0.0, f64::max).max(1.0);
    let max_n = samples
        .iter()
        .flat_map(|s| s.counts.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = |t: f64| x_left + t / max_t * (x_right - x_left);
    let y = |n: f64| y_bottom - n / max_n * (y_bottom - y_top);

    let _ = writeln!(
        out,
        r#"<text x="{x_left}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        y0 + 18.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<path d="M{x_left},{y_top} V{y_bottom} H{x_right}" fill="none" stroke="#333"/>"##
    );
    for t in ticks(max_t) {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{y_bottom}" x2="{0:.1}" y2="{1}" stroke="#333"/><text x="{0:.1}" y="{2}" text-anchor="middle">{t}</text>"##,
            x(t),
            y_bottom + 4.0,
            y_bottom + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x_left + x_right) / 2.0,
        y_bottom + 32.0,
        escape(axis)
    );
    for n in ticks(max_n) {
        let _ = writeln!(
            out,
            r##"<line x1="{x_left}" y1="{0:.1}" x2="{x_right}" y2="{0:.1}" stroke="#eee"/><text x="{1}" y="{2:.1}" text-anchor="end">{n}</text>"##,
            y(n),
            x_left - 4.0,
            y(n) + 4.0
        );
    }
    let mut legend = 0.0;
    for (key, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        if !samples
            .iter()
            .any(|s| s.counts.get(key).is_some_and(|n| *n > 0))
        {
            continue;
        }
        let points: Vec<String> = samples
            .iter()
            .map(|s| {
                let n = s.counts.get(key).copied().unwrap_or(0) as f64;
                format!("{:.1},{:.1}", x(s.at), y(n))
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
            points.join(" ")
        );
        let ly = y_top + 6.0 + legend * 16.0;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            x_right + 15.0,
            ly - 9.0,
            x_right + 30.0,
            ly,
            escape(&key.to_string())
        );
        legend += 1.0;
    }
}

/// Up to about six round tick values from 0 to `max`.
fn ticks(max: f64) -> Vec<f64> {
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude)
        .max(1.0);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= max + 1e-9)
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_core::OrderState;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(500.0), [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert_eq!(ticks(1.0), [0.0, 1.0]);
    }

    #[test]
    fn every_state_that_held_orders_gets_a_line_and_a_legend_entry() {
        let samples = vec![
            Sample {
                at: 0.0,
                counts: BTreeMap::from([(OrderState::Received, 10)]),
            },
            Sample {
                at: 2.0,
                counts: BTreeMap::from([(OrderState::Delivered, 10), (OrderState::Received, 0)]),
            },
        ];
        let svg = svg(
            &[("default <fast>".into(), &samples)],
            "seconds",
            &OrderState::ALL,
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">delivered</text>") && svg.contains(">received</text>"));
        assert!(svg.contains("default &lt;fast&gt;"));
        assert!(!svg.contains(">paid</text>"));
    }
}
