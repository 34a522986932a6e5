//! Step 10: a load generator, to measure the servers of steps 02-09.
//!
//! Every step so far was a server; this one is the client that holds them
//! to account. It speaks RESP to any Redis-compatible server, takes
//! redis-benchmark's options, and records the latency of every single
//! request in an HDR histogram, so percentiles are exact to three digits
//! instead of averaged away. It adds what redis-benchmark lacks: an open
//! loop (`--rate`) that does not hide stalls, interleaved comparisons of
//! several servers (`--compare`), and a percentile plot (`--plot`).
//!
//! `args.rs` reads the options, `workload.rs` builds the requests,
//! `conn.rs` drives one connection, `run.rs` spreads the connections over
//! threads, `reply.rs` reads replies, `stats.rs` counts, and `report.rs` and
//! `plot.rs` show the results.

mod args;
mod conn;
mod plot;
mod reply;
mod report;
mod run;
mod stats;
mod workload;

use std::process::ExitCode;

use anyhow::{Context, Result};

use args::{Config, Format, Parsed};
use report::{TargetResult, TestResult};
use stats::{Summary, Tally};

fn main() -> ExitCode {
    let config = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("step10-capstone: {e:#}\nstep10-capstone --help lists the options");
            return ExitCode::from(2);
        }
    };
    match run_all(&config) {
        Ok(0) => ExitCode::SUCCESS,
        // The report already says what failed; the exit code makes sure a
        // script notices too.
        Ok(errors) => {
            eprintln!("step10-capstone: {errors} errors (error replies, dropped connections)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("step10-capstone: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every test against every target, round after round, printing each
/// test's report as soon as it is done. Returns the number of errors.
fn run_all(config: &Config) -> Result<u64> {
    if config.format == Format::Csv {
        print!("{}", report::csv_header(config));
    }
    let mut results = Vec::new();
    for workload in &config.workloads {
        let mut outcomes: Vec<Vec<run::Outcome>> =
            config.targets.iter().map(|_| Vec::new()).collect();
        // Round-robin over the targets, round after round (A B A B ...):
        // whatever else the machine is doing drifts over time, and this way
        // every target gets its share of the good and the bad moments.
        for round in 1..=config.rounds {
            for (target, runs) in config.targets.iter().zip(&mut outcomes) {
                let label = if config.compare {
                    format!(
                        "{} {} round {round}/{}",
                        workload.title, target.name, config.rounds
                    )
                } else {
                    workload.title.clone()
                };
                runs.push(run::run(target, workload, &config.load, &label)?);
            }
        }
        let test = TestResult {
            workload,
            targets: config
                .targets
                .iter()
                .zip(outcomes)
                .map(|(t, runs)| summarise(t, runs))
                .collect(),
        };
        match config.format {
            Format::Text => println!("{}", report::text(&test, config)),
            Format::Quiet => print!("{}", report::quiet(&test, config)),
            Format::Csv => print!("{}", report::csv(&test, config)),
            Format::Json => {} // one document, at the end
        }
        results.push(test);
    }
    if config.format == Format::Json {
        print!("{}", report::json(&results, config));
    }
    if let Some(path) = &config.plot {
        let svg = chart(&results, config);
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(results
        .iter()
        .flat_map(|test| &test.targets)
        .map(|t| t.tally.errors())
        .sum())
}

/// One target's runs of one test, reduced to what the reports need.
fn summarise(target: &args::Target, runs: Vec<run::Outcome>) -> TargetResult {
    let rounds: Vec<Summary> = runs
        .iter()
        .map(|r| Summary::new(&r.tally, r.elapsed))
        .collect();
    let mut tally = Tally::new();
    for run in &runs {
        tally.merge(&run.tally);
    }
    TargetResult {
        name: target.name.clone(),
        address: target.address(),
        summary: if rounds.len() == 1 {
            rounds[0].clone()
        } else {
            Summary::median_of(&rounds)
        },
        rounds,
        tally,
    }
}

/// The percentile chart: one line per target and test, each the histogram
/// of all its rounds together.
fn chart(results: &[TestResult], config: &Config) -> String {
    let mut series = Vec::new();
    for test in results {
        for t in &test.targets {
            let label = match (results.len(), config.targets.len()) {
                (1, _) => t.name.clone(),
                (_, 1) => test.workload.title.clone(),
                _ => format!("{} {}", test.workload.title, t.name),
            };
            series.push(plot::Series {
                label,
                latency: &t.tally.latency,
            });
        }
    }
    let titles: Vec<&str> = results.iter().map(|t| t.workload.title.as_str()).collect();
    let load = &config.load;
    let mut title = format!(
        "Latency by percentile: {}, {} clients, pipeline {}",
        titles.join(", "),
        load.clients,
        load.pipeline
    );
    if let Some(rate) = load.rate {
        title.push_str(&format!(", {rate} requests/s open loop"));
    }
    plot::svg(&title, &series)
}
