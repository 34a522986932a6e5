//! Command-line options, spelled as redis-benchmark spells them where it has
//! them, so a learner can run both tools with the same words.
//!
//! Parsing is a loop over the words by hand: a handful of flags does not
//! earn a dependency, and every error message says which flag was wrong.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::workload::{Workload, MAX_KEYSPACE, STANDARD};

pub const USAGE: &str = "\
Usage: step10-capstone [OPTIONS] [COMMAND ARGS...]

Measures a Redis-compatible server: throughput, and the latency of every
request in an HDR histogram. Exits non-zero if any request failed.

Where:
 -h <host>          Server host (default 127.0.0.1)
 -p <port>          Server port (default 6379)
 --compare <list>   Compare servers instead: [name=]host:port,... run in
                    interleaved rounds (A B A B ...), reported as medians
 --rounds <n>       Rounds for --compare (default 3)

What:
 -t <tests>         Comma-separated tests among ping,echo,set,get (default all)
 COMMAND ARGS...    Or any command; __rand_int__ in it becomes a random key
 -d <size>          Value size in bytes for ECHO and SET (default 3)
 -r <keyspace>      Replace __rand_int__ with a number below <keyspace>
                    (without -r every request uses the same key)

How much:
 -c <clients>       Parallel connections (default 50)
 -n <requests>      Requests per test (default 100000)
 --duration <secs>  Run each test for a time instead of a count
 --warmup <secs>    Send for this long before measuring (default 0)
 -P <numreq>        Pipeline depth: requests per write (default 1)
 --rate <n>         Open loop: send n requests/s on a fixed schedule, and time
                    each from when it was due, not from when it was sent
 --threads <n>      OS threads, each running its share of the clients (default 1)

Output:
 -q                 One line per test
 --csv              CSV, redis-benchmark's columns first
 --json             One JSON document
 --plot <file.svg>  Latency-by-percentile chart
 --help             This text
";

/// A server to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Shown in reports and on the plot's legend.
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host:port`, or `[host]:port` for an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses `[name=]host:port`.
    fn parse(spec: &str) -> Result<Target> {
        let (name, address) = match spec.split_once('=') {
            Some((name, address)) => (Some(name), address),
            None => (None, spec),
        };
        let (host, port) = address
            .rsplit_once(':')
            .with_context(|| format!("'{spec}' is not [name=]host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse()
            .with_context(|| format!("'{port}' in '{spec}' is not a port"))?;
        let mut target = Target {
            name: String::new(),
            host: host.to_string(),
            port,
        };
        target.name = name.map_or_else(|| target.address(), String::from);
        Ok(target)
    }
}

/// When a test stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// After this many requests (`-n`).
    Requests(u64),
    /// After this long (`--duration`).
    Time(Duration),
}

/// The shape of the load: everything one run needs besides its target and
/// its command.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub clients: usize,
    pub pipeline: usize,
    pub length: Length,
    pub warmup: Duration,
    /// `Some(r)`: open loop at r requests per second in total.
    pub rate: Option<f64>,
    pub keyspace: Option<u64>,
    pub threads: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Quiet,
    Csv,
    Json,
}

#[derive(Debug, PartialEq)]
pub struct Config {
    pub targets: Vec<Target>,
    /// `--compare`: rounds and medians, even with a single target.
    pub compare: bool,
    pub rounds: usize,
    pub workloads: Vec<Workload>,
    pub load: Load,
    pub format: Format,
    pub plot: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Config),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed> {
    let mut args = args.into_iter();
    let (mut host, mut port, mut compare) = (None, None, None);
    let (mut tests, mut command, mut rounds) = (None, Vec::new(), None);
    let (mut requests, mut duration) = (None, None);
    let mut data_size = 3;
    let mut formats = Vec::new();
    let mut plot = None;
    let mut load = Load {
        clients: 50,
        pipeline: 1,
        length: Length::Requests(100_000),
        warmup: Duration::ZERO,
        rate: None,
        keyspace: None,
        threads: 1,
    };

    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" => host = Some(value()?),
            "-p" => port = Some(number(&flag, &value()?)?),
            "--compare" => compare = Some(value()?),
            "--rounds" => rounds = Some(positive(&flag, &value()?)?),
            "-t" => tests = Some(value()?),
            "-d" => data_size = number(&flag, &value()?)?,
            "-r" => load.keyspace = Some(positive(&flag, &value()?)?),
            "-c" => load.clients = positive(&flag, &value()?)?,
            "-n" => requests = Some(positive(&flag, &value()?)?),
            "--duration" => duration = Some(seconds(&flag, &value()?)?),
            "--warmup" => load.warmup = seconds(&flag, &value()?)?,
            "-P" => load.pipeline = positive(&flag, &value()?)?,
            "--rate" => load.rate = Some(rate(&value()?)?),
            "--threads" => load.threads = positive(&flag, &value()?)?,
            "-q" => formats.push(Format::Quiet),
            "--csv" => formats.push(Format::Csv),
            "--json" => formats.push(Format::Json),
            "--plot" => plot = Some(PathBuf::from(value()?)),
            "--help" => return Ok(Parsed::Help),
            _ if flag.starts_with('-') => bail!("unknown option '{flag}'"),
            // The first word that is not an option starts the command; the
            // rest belong to it, dashes and all (`INCRBY k -1`).
            _ => {
                command.push(flag);
                command.extend(args.by_ref());
            }
        }
    }

    load.length = match (requests, duration) {
        (Some(_), Some(_)) => bail!("-n and --duration both say when to stop: give one"),
        (_, Some(time)) if time == Duration::ZERO => bail!("--duration must be above 0"),
        (_, Some(time)) => Length::Time(time),
        (Some(n), None) => Length::Requests(n),
        (None, None) => load.length,
    };
    if load.rate.is_some() && load.pipeline > 1 {
        bail!("--rate sends each request when it is due, so -P does not apply");
    }
    if load.threads > load.clients {
        bail!(
            "--threads {} is more than the {} clients to share out",
            load.threads,
            load.clients
        );
    }
    if load.keyspace.is_some_and(|r| r > MAX_KEYSPACE) {
        bail!("-r must be at most {MAX_KEYSPACE}: keys have 12 digits");
    }

    let workloads = match (tests, command.is_empty()) {
        (Some(_), false) => bail!("give either -t or a command, not both"),
        (None, false) => vec![Workload::custom(&command)],
        (tests, true) => {
            let tests = tests
                .unwrap_or_else(|| STANDARD.join(","))
                .to_ascii_lowercase();
            tests
                .split(',')
                .map(|name| {
                    Workload::standard(name, data_size).with_context(|| {
                        format!("unknown test '{name}': -t knows {}", STANDARD.join(","))
                    })
                })
                .collect::<Result<_>>()?
        }
    };

    let targets = match &compare {
        Some(_) if host.is_some() || port.is_some() => {
            bail!("--compare names its servers itself: drop -h and -p")
        }
        Some(list) => list.split(',').map(Target::parse).collect::<Result<_>>()?,
        None => {
            let host = host.unwrap_or_else(|| "127.0.0.1".to_string());
            let port = port.unwrap_or(6379);
            vec![Target::parse(&format!("{host}:{port}"))?]
        }
    };
    if rounds.is_some() && compare.is_none() {
        bail!("--rounds applies to --compare");
    }

    let format = match formats[..] {
        [] => Format::Text,
        [one] => one,
        _ => bail!("-q, --csv and --json each choose the output: give one"),
    };

    Ok(Parsed::Run(Config {
        targets,
        compare: compare.is_some(),
        rounds: rounds.unwrap_or(if compare.is_some() { 3 } else { 1 }),
        workloads,
        load,
        format,
        plot,
    }))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .ok()
        .with_context(|| format!("{flag} takes a number, not '{value}'"))
}

/// A count that must be at least 1.
fn positive<T: std::str::FromStr + Default + PartialOrd>(flag: &str, value: &str) -> Result<T> {
    let n: T = number(flag, value)?;
    if n <= T::default() {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

/// Seconds, fractions allowed: `--warmup 0.5`.
fn seconds(flag: &str, value: &str) -> Result<Duration> {
    let secs: f64 = number(flag, value)?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .with_context(|| format!("{flag} takes seconds, not '{value}'"))
}

fn rate(value: &str) -> Result<f64> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => bail!("--rate takes requests per second above 0, not '{value}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str) -> Config {
        match parse(line.split_whitespace().map(String::from)) {
            Ok(Parsed::Run(config)) => config,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match parse(line.split_whitespace().map(String::from)) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{line} was accepted: {other:?}"),
        }
    }

    #[test]
    fn defaults_match_redis_benchmark() {
        let c = config("");
        assert_eq!(c.targets[0].address(), "127.0.0.1:6379");
        assert_eq!((c.load.clients, c.load.pipeline), (50, 1));
        assert_eq!(c.load.length, Length::Requests(100_000));
        let titles: Vec<_> = c.workloads.iter().map(|w| w.title.as_str()).collect();
        assert_eq!(titles, ["PING", "ECHO", "SET", "GET"]);
        assert_eq!((c.format, c.compare, c.rounds), (Format::Text, false, 1));
    }

    #[test]
    fn redis_benchmark_flags_mean_the_same() {
        let c = config("-h ::1 -p 7000 -c 8 -n 500 -P 16 -t set,GET -d 10 -r 1000 -q");
        assert_eq!(c.targets[0].address(), "[::1]:7000");
        assert_eq!((c.load.clients, c.load.pipeline), (8, 16));
        assert_eq!(c.load.length, Length::Requests(500));
        assert_eq!(c.load.keyspace, Some(1000));
        assert_eq!(c.workloads[0].args[2], b"xxxxxxxxxx");
        assert_eq!(c.workloads[1].title, "GET");
        assert_eq!(c.format, Format::Quiet);
    }

    #[test]
    fn trailing_words_are_the_command() {
        let c = config("-n 10 INCRBY counter:__rand_int__ -1");
        assert_eq!(c.workloads.len(), 1);
        assert_eq!(c.workloads[0].title, "INCRBY counter:__rand_int__ -1");
        assert_eq!(c.workloads[0].args[2], b"-1");
    }

    #[test]
    fn time_rate_and_output_options() {
        let c = config("--duration 2.5 --warmup 0.5 --rate 1000 --threads 2 --json --plot a.svg");
        assert_eq!(c.load.length, Length::Time(Duration::from_millis(2500)));
        assert_eq!(c.load.warmup, Duration::from_millis(500));
        assert_eq!((c.load.rate, c.load.threads), (Some(1000.0), 2));
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.plot, Some(PathBuf::from("a.svg")));
    }

    #[test]
    fn compare_takes_named_targets_and_rounds() {
        let c = config("--compare redis=127.0.0.1:6379,[::1]:6380 --rounds 5");
        assert!(c.compare);
        assert_eq!(c.rounds, 5);
        assert_eq!(c.targets[0].name, "redis");
        assert_eq!(c.targets[1].name, "[::1]:6380");
        assert_eq!(
            (c.targets[1].host.as_str(), c.targets[1].port),
            ("::1", 6380)
        );
        assert_eq!(config("--compare a:1").rounds, 3);
    }

    #[test]
    fn help_is_not_host() {
        assert_eq!(parse(["--help".to_string()]).unwrap(), Parsed::Help);
    }

    #[test]
    fn mistakes_are_explained() {
        assert_eq!(error("-c"), "-c needs a value");
        assert_eq!(error("-c 0"), "-c must be at least 1");
        assert_eq!(error("-n lots"), "-n takes a number, not 'lots'");
        assert_eq!(error("--frobnicate"), "unknown option '--frobnicate'");
        assert!(error("-t set,lpush").contains("unknown test 'lpush'"));
        assert!(error("-t set PING").contains("either -t or a command"));
        assert!(error("-n 5 --duration 1").contains("give one"));
        assert!(error("--duration 0").contains("above 0"));
        assert!(error("--rate 100 -P 4").contains("-P does not apply"));
        assert!(error("--rate -5").contains("above 0"));
        assert!(error("-c 2 --threads 3").contains("more than the 2 clients"));
        assert!(error("-p 1 --compare a:1").contains("drop -h and -p"));
        assert!(error("--rounds 2").contains("applies to --compare"));
        assert!(error("-q --json").contains("give one"));
        assert!(error("--compare nohost").contains("is not [name=]host:port"));
        assert!(error("-r 2000000000000").contains("12 digits"));
        assert!(error("--warmup -1").contains("takes seconds"));
    }
}
