//! Printing results: text, one line per test (`-q`), CSV and JSON.
//!
//! Text and CSV follow redis-benchmark's layout where it has one, so the two
//! tools' outputs can be read side by side. Latencies are shown in
//! milliseconds with three decimals (microsecond resolution) and kept in
//! whole microseconds in JSON.

use std::fmt::Write;

use crate::args::{Config, Load};
use crate::stats::{Summary, Tally};
use crate::workload::Workload;

/// One server's results for one test.
pub struct TargetResult {
    pub name: String,
    pub address: String,
    /// One summary per round.
    pub rounds: Vec<Summary>,
    /// The single run's numbers, or the medians of the rounds.
    pub summary: Summary,
    /// Every round's counts added up: the histogram for the plot, and the
    /// error details.
    pub tally: Tally,
}

/// One test's results, for every server.
pub struct TestResult<'a> {
    pub workload: &'a Workload,
    pub targets: Vec<TargetResult>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn describe(load: &Load) -> String {
    let threads = if load.threads == 1 {
        "thread"
    } else {
        "threads"
    };
    let mut out = format!(
        "{} clients, pipeline {}, {} {threads}",
        load.clients, load.pipeline, load.threads
    );
    match load.rate {
        Some(rate) => {
            let _ = write!(out, ", open loop at {rate} requests/s");
        }
        None => out.push_str(", closed loop"),
    }
    if !load.warmup.is_zero() {
        let _ = write!(out, ", {:.1} s warm-up", load.warmup.as_secs_f64());
    }
    out
}

/// What went wrong, in words; `None` when nothing did.
fn describe_errors(tally: &Tally) -> Option<String> {
    let mut parts = Vec::new();
    if tally.error_replies > 0 {
        let first = tally.first_error.as_deref().unwrap_or_default();
        parts.push(format!(
            "{} error replies, the first: {first}",
            tally.error_replies
        ));
    }
    if tally.dropped > 0 {
        let first = tally.first_drop.as_deref().unwrap_or_default();
        parts.push(format!(
            "{} connections dropped with {} requests unanswered, the first: {first}",
            tally.dropped, tally.unanswered
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The full report of one test, as it finishes.
pub fn text(test: &TestResult, config: &Config) -> String {
    let mut out = String::new();
    let title = &test.workload.title;
    if !config.compare {
        let t = &test.targets[0];
        let s = &t.summary;
        let _ = writeln!(out, "====== {title} ======");
        let _ = writeln!(
            out,
            "  {} requests in {:.2} s: {:.0} ops/s",
            s.requests, s.seconds, s.ops_per_sec
        );
        let _ = writeln!(out, "  {} against {}", describe(&config.load), t.address);
        let _ = writeln!(
            out,
            "  latency (ms): min {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(s.min_us),
            ms(s.p50_us),
            ms(s.p95_us),
            ms(s.p99_us),
            ms(s.p999_us),
            ms(s.max_us)
        );
        if config.load.rate.is_some() {
            let lag = t.tally.max_send_lag.as_secs_f64() * 1000.0;
            let _ = writeln!(out, "  sends: at most {lag:.3} ms behind the timetable");
        }
        let errors = describe_errors(&t.tally);
        let _ = writeln!(out, "  errors: {}", errors.as_deref().unwrap_or("none"));
        return out;
    }

    let _ = writeln!(
        out,
        "====== {title}: medians of {} rounds ======",
        config.rounds
    );
    let _ = writeln!(out, "  {}", describe(&config.load));
    let width = test
        .targets
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(
        out,
        "  {:<width$} {:>10} {:>7} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7}",
        "target", "ops/s", "x ops", "p50 ms", "p99 ms", "x p99", "p99.9 ms", "max ms", "errors"
    );
    let first = &test.targets[0].summary;
    for t in &test.targets {
        let s = &t.summary;
        let _ = writeln!(
            out,
            "  {:<width$} {:>10.0} {:>6.2}x {:>8.3} {:>8.3} {:>6.2}x {:>9.3} {:>8.3} {:>7}",
            t.name,
            s.ops_per_sec,
            ratio(s.ops_per_sec, first.ops_per_sec),
            ms(s.p50_us),
            ms(s.p99_us),
            ratio(s.p99_us as f64, first.p99_us as f64),
            ms(s.p999_us),
            ms(s.max_us),
            s.errors
        );
    }
    for t in &test.targets {
        if let Some(errors) = describe_errors(&t.tally) {
            let _ = writeln!(out, "  {}: {errors}", t.name);
        }
    }
    out
}

fn ratio(value: f64, first: f64) -> f64 {
    if first > 0.0 {
        value / first
    } else {
        0.0
    }
}

/// `-q`: redis-benchmark's one line per test (per server when comparing).
pub fn quiet(test: &TestResult, config: &Config) -> String {
    let mut out = String::new();
    let first = test.targets[0].summary.ops_per_sec;
    for t in &test.targets {
        let s = &t.summary;
        let _ = write!(out, "{}", test.workload.title);
        if config.compare {
            let _ = write!(out, " {}", t.name);
        }
        let _ = write!(out, ": {:.2} requests per second", s.ops_per_sec);
        if config.compare {
            let _ = write!(out, " ({:.2}x)", ratio(s.ops_per_sec, first));
        }
        let _ = write!(out, ", p50={:.3} msec", ms(s.p50_us));
        if s.errors > 0 {
            let _ = write!(out, ", {} errors", s.errors);
        }
        out.push('\n');
    }
    out
}

/// The CSV header: redis-benchmark's eight columns, then ours. Comparing
/// adds a `target` column after `test`.
pub fn csv_header(config: &Config) -> String {
    let target = if config.compare { "\"target\"," } else { "" };
    format!(
        "\"test\",{target}\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
         \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\",\"p99_9_latency_ms\",\
         \"requests\",\"errors\"\n"
    )
}

pub fn csv(test: &TestResult, config: &Config) -> String {
    let mut out = String::new();
    for t in &test.targets {
        let s = &t.summary;
        let _ = write!(out, "{},", csv_field(&test.workload.title));
        if config.compare {
            let _ = write!(out, "{},", csv_field(&t.name));
        }
        let _ = write!(out, "\"{:.2}\"", s.ops_per_sec);
        // redis-benchmark's order (avg, min, p50, p95, p99, max), then p99.9.
        let percentiles = [s.min_us, s.p50_us, s.p95_us, s.p99_us, s.max_us, s.p999_us];
        let _ = write!(out, ",\"{:.3}\"", s.mean_us / 1000.0);
        for us in percentiles {
            let _ = write!(out, ",\"{:.3}\"", ms(us));
        }
        let _ = writeln!(out, ",\"{}\",\"{}\"", s.requests, s.errors);
    }
    out
}

/// A quoted CSV field: quotes inside are doubled.
fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The whole run as one JSON document. Single runs have the same shape as
/// comparisons: a list of tests, each with a list of targets.
pub fn json(tests: &[TestResult], config: &Config) -> String {
    let load = &config.load;
    let tests: Vec<String> = tests
        .iter()
        .map(|test| {
            let first = &test.targets[0].summary;
            let targets: Vec<String> = test.targets.iter().map(|t| target_json(t, first)).collect();
            format!(
                "    {{\"test\": {}, \"targets\": [\n{}\n    ]}}",
                json_string(&test.workload.title),
                targets.join(",\n")
            )
        })
        .collect();
    let mut out = String::from("{\n");
    let rate = load.rate.map_or("null".to_string(), |r| r.to_string());
    let _ = writeln!(
        out,
        "  \"clients\": {}, \"pipeline\": {}, \"threads\": {}, \"rate\": {rate}, \"warmup_s\": {},",
        load.clients,
        load.pipeline,
        load.threads,
        load.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  \"compare\": {}, \"rounds\": {},",
        config.compare, config.rounds
    );
    let _ = write!(out, "  \"tests\": [\n{}\n  ]\n}}\n", tests.join(",\n"));
    out
}

/// One target's object. When comparing, `requests` and `errors` are totals
/// over the rounds and the rest are medians; `rounds` lists each round.
fn target_json(t: &TargetResult, first: &Summary) -> String {
    let (s, tally) = (&t.summary, &t.tally);
    let optional = |text: &Option<String>| text.as_deref().map_or("null".into(), json_string);
    let rounds: Vec<String> = t
        .rounds
        .iter()
        .map(|r| {
            format!(
                "{{\"ops_per_sec\": {:.2}, \"p50_us\": {}, \"p99_us\": {}}}",
                r.ops_per_sec, r.p50_us, r.p99_us
            )
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "      {{\"name\": {}, \"address\": {},",
        json_string(&t.name),
        json_string(&t.address)
    );
    let _ = writeln!(
        out,
        "       \"requests\": {}, \"errors\": {}, \"error_replies\": {}, \
         \"dropped_connections\": {}, \"unanswered\": {},",
        s.requests, s.errors, tally.error_replies, tally.dropped, tally.unanswered
    );
    let _ = writeln!(
        out,
        "       \"first_error\": {}, \"first_drop\": {},",
        optional(&tally.first_error),
        optional(&tally.first_drop)
    );
    let _ = writeln!(
        out,
        "       \"seconds\": {:.3}, \"ops_per_sec\": {:.2}, \"max_send_lag_us\": {},",
        s.seconds,
        s.ops_per_sec,
        tally.max_send_lag.as_micros()
    );
    let _ = writeln!(
        out,
        "       \"latency_us\": {{\"min\": {}, \"mean\": {:.1}, \"p50\": {}, \"p95\": {}, \
         \"p99\": {}, \"p99_9\": {}, \"max\": {}}},",
        s.min_us, s.mean_us, s.p50_us, s.p95_us, s.p99_us, s.p999_us, s.max_us
    );
    let _ = writeln!(
        out,
        "       \"ratio_to_first\": {{\"ops_per_sec\": {:.3}, \"p50\": {:.3}, \"p99\": {:.3}}},",
        ratio(s.ops_per_sec, first.ops_per_sec),
        ratio(s.p50_us as f64, first.p50_us as f64),
        ratio(s.p99_us as f64, first.p99_us as f64)
    );
    let _ = write!(out, "       \"rounds\": [{}]}}", rounds.join(", "));
    out
}

/// A JSON string literal: quotes, backslashes and control characters are
/// escaped, since error messages come from the server and may hold anything.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, Parsed};
    use std::time::Duration;

    fn config(line: &str) -> Config {
        match parse(line.split_whitespace().map(String::from)) {
            Ok(Parsed::Run(config)) => config,
            other => panic!("{other:?}"),
        }
    }

    fn result(name: &str, micros: &[u64], errors: u64) -> TargetResult {
        let mut tally = Tally::new();
        for &us in micros {
            tally.record(Duration::from_micros(us));
        }
        for _ in 0..errors {
            tally.error_reply(b"ERR \"quoted\"\n");
        }
        let summary = Summary::new(&tally, Duration::from_secs(1));
        TargetResult {
            name: name.to_string(),
            address: "127.0.0.1:1".to_string(),
            rounds: vec![summary.clone()],
            summary,
            tally,
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn text_shows_percentiles_in_milliseconds_and_errors() {
        let c = config("-t get");
        let test = TestResult {
            workload: &c.workloads[0],
            targets: vec![result("a", &[100, 200, 1500], 2)],
        };
        let text = text(&test, &c);
        assert!(
            text.starts_with("====== GET ======\n  3 requests in 1.00 s: 3 ops/s\n"),
            "{text}"
        );
        assert!(text.contains("p50 0.200  p95 1.500"), "{text}");
        assert!(
            text.contains("errors: 2 error replies, the first: ERR \"quoted\""),
            "{text}"
        );
    }

    #[test]
    fn comparisons_show_ratios_to_the_first_target() {
        let c = config("--compare a:1,b:2 -t set -q");
        let test = TestResult {
            workload: &c.workloads[0],
            targets: vec![result("a", &[100, 100], 0), result("b", &[50], 0)],
        };
        let quiet = quiet(&test, &c);
        assert_eq!(
            quiet,
            "SET a: 2.00 requests per second (1.00x), p50=0.100 msec\n\
             SET b: 1.00 requests per second (0.50x), p50=0.050 msec\n"
        );
        let table = text(&test, &c);
        assert!(table.contains("medians of 3 rounds"), "{table}");
        assert!(table.contains("0.50x"), "{table}");
    }

    #[test]
    fn csv_starts_with_redis_benchmark_columns() {
        let c = config("-t ping --csv");
        let test = TestResult {
            workload: &c.workloads[0],
            targets: vec![result("a", &[1000], 0)],
        };
        assert!(csv_header(&c).starts_with("\"test\",\"rps\",\"avg_latency_ms\""));
        assert_eq!(
            csv(&test, &c),
            "\"PING\",\"1.00\",\"1.000\",\"1.000\",\"1.000\",\"1.000\",\"1.000\",\"1.000\",\"1.000\",\"1\",\"0\"\n"
        );
    }

    #[test]
    fn json_carries_counts_percentiles_and_the_first_error() {
        let c = config("-t get --json");
        let test = TestResult {
            workload: &c.workloads[0],
            targets: vec![result("a", &[10, 20, 30], 1)],
        };
        let json = json(&[test], &c);
        assert!(json.contains("\"requests\": 3, \"errors\": 1"), "{json}");
        assert!(json.contains("\"p50\": 20, \"p95\": 30"), "{json}");
        assert!(
            json.contains("\"first_error\": \"ERR \\\"quoted\\\"\\n\""),
            "{json}"
        );
        assert!(json.contains("\"rate\": null"), "{json}");
    }
}
