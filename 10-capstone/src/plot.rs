//! A latency-by-percentile chart, written as SVG by hand.
//!
//! The horizontal axis is the percentile on a log scale of `1 / (1 - p)`,
//! as HdrHistogram's own plots draw it: 90% is one step from 0%, 99% two,
//! 99.9% three, so the tail (where the interesting things happen) gets as
//! much room as the body. The vertical axis is the latency, on a log scale
//! too, so a 0.2 ms median and a 300 ms stall are both readable on one
//! chart. One line per histogram.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// The plot area: its left, top, right and bottom edges. The legend goes to
/// its right, outside, where it cannot hide a line.
const LEFT: f64 = 80.0;
const TOP: f64 = 50.0;
const RIGHT: f64 = 720.0;
const BOTTOM: f64 = 460.0;
const HEIGHT: f64 = 520.0;
/// Colours that stay apart for most eyes (the Tableau 10 palette). Lines
/// beyond the tenth reuse them, dashed.
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// One line on the chart: a label for the legend, and its latencies in µs.
pub struct Series<'a> {
    pub label: String,
    pub latency: &'a Histogram<u64>,
}

/// The stroke of line `i`: its colour, and a dash pattern after the tenth.
fn stroke(i: usize) -> String {
    let dash = if i >= COLOURS.len() {
        r#" stroke-dasharray="6 3""#
    } else {
        ""
    };
    format!(r#"stroke="{}"{dash}"#, COLOURS[i % COLOURS.len()])
}

/// The chart as a complete SVG document.
pub fn svg(title: &str, series: &[Series]) -> String {
    let series: Vec<&Series> = series.iter().filter(|s| !s.latency.is_empty()).collect();
    // The tail ends where one sample in `count` remains: 99.99% for 10^4.
    let nines = series
        .iter()
        .map(|s| (s.latency.len() as f64).log10())
        .fold(1.0, f64::max)
        .ceil();
    // Whole decades of milliseconds, from below the fastest to above the slowest.
    let fastest = series.iter().map(|s| s.latency.min()).min().unwrap_or(1);
    let slowest = series.iter().map(|s| s.latency.max()).max().unwrap_or(1);
    let low = (fastest.max(1) as f64 / 1000.0).log10().floor();
    let high = (slowest.max(1) as f64 / 1000.0)
        .log10()
        .ceil()
        .max(low + 1.0);
    let x = |n: f64| LEFT + (RIGHT - LEFT) * n / nines;
    let y = |ms: f64| BOTTOM - (BOTTOM - TOP) * (ms.log10().max(low) - low) / (high - low);
    // Wide enough for the longest label (about 7.5 px a character at 13 px).
    let longest = series
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(0);
    let width = RIGHT + 60.0 + 7.5 * longest as f64;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        width / 2.0,
        escape(title)
    );

    // Grid and tick labels: 0%, 50%, 90%, 99%, ... across; decades up.
    let mut ticks = vec![(0.0, "0%".to_string()), (2f64.log10(), "50%".to_string())];
    ticks.extend((1..=nines as u32).map(|n| (f64::from(n), percentile_label(n))));
    for (n, label) in ticks {
        let px = x(n);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{BOTTOM}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            BOTTOM + 18.0
        );
    }
    for decade in low as i32..=high as i32 {
        let ms = 10f64.powi(decade);
        let py = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="#ccc"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 8.0,
            py + 4.0,
            format_ms(ms)
        );
        // Fainter lines at 2 and 5 times the decade, to read values between.
        if decade < high as i32 {
            for py in [y(2.0 * ms), y(5.0 * ms)] {
                let _ = writeln!(
                    out,
                    r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="#eee"/>"##
                );
            }
        }
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">Percentile</text>"#,
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">Latency (ms)</text>"#,
        (TOP + BOTTOM) / 2.0
    );

    // The lines: sampled evenly along the log axis, up to each one's own
    // tail, then the maximum.
    for (i, s) in series.iter().enumerate() {
        let h = s.latency;
        let end = (h.len() as f64).log10();
        let mut points = String::new();
        for step in 0..=400 {
            let n = end * f64::from(step) / 400.0;
            let ms = h.value_at_quantile(1.0 - 10f64.powf(-n)) as f64 / 1000.0;
            let _ = write!(points, "{:.1},{:.1} ", x(n), y(ms));
        }
        let _ = write!(points, "{:.1},{:.1}", x(end), y(h.max() as f64 / 1000.0));
        let _ = writeln!(
            out,
            r#"<polyline points="{points}" fill="none" {} stroke-width="2"/>"#,
            stroke(i)
        );
    }

    // The legend, right of the plot, in the order of the lines.
    for (i, s) in series.iter().enumerate() {
        let row = TOP + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{row}" x2="{}" y2="{row}" {} stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            RIGHT + 15.0,
            RIGHT + 40.0,
            stroke(i),
            RIGHT + 48.0,
            row + 4.0,
            escape(&s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `n` nines: 90%, 99%, 99.9%, ...
fn percentile_label(n: u32) -> String {
    let digits = n.saturating_sub(2) as usize;
    format!("{:.digits$}%", 100.0 - 100.0 / 10f64.powi(n as i32))
}

/// An axis label with no more decimals than it needs: 0.01, 1, 100.
fn format_ms(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Text for inside an SVG (XML) element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_count_nines() {
        let labels: Vec<String> = (1..=5).map(percentile_label).collect();
        assert_eq!(labels, ["90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn latency_labels_drop_needless_decimals() {
        assert_eq!(format_ms(0.01), "0.01");
        assert_eq!(format_ms(1.0), "1");
        assert_eq!(format_ms(100.0), "100");
    }

    #[test]
    fn lines_beyond_the_palette_are_dashed() {
        assert_eq!(stroke(1), r##"stroke="#d62728""##);
        assert_eq!(stroke(11), r##"stroke="#d62728" stroke-dasharray="6 3""##);
    }

    #[test]
    fn a_chart_has_a_line_and_a_legend_entry_per_series() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        let mut b = a.clone();
        for us in 1..=10_000 {
            a.record(us).unwrap();
            b.record(us * 2).unwrap();
        }
        let svg = svg(
            "SET <fast> & slow",
            &[
                Series {
                    label: "redis".into(),
                    latency: &a,
                },
                Series {
                    label: "step03".into(),
                    latency: &b,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">redis</text>") && svg.contains(">step03</text>"));
        assert!(svg.contains("SET &lt;fast&gt; &amp; slow"));
        assert!(
            svg.contains(">99.99%</text>"),
            "10^4 samples reach four nines"
        );
        // 1 µs to 20 ms: decades from 0.001 ms to 100 ms.
        assert!(svg.contains(">0.001</text>") && svg.contains(">100</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
