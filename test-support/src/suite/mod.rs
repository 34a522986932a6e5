//! Checks that a step must keep passing in every later step, written once.
//!
//! Step 02 introduces the protocol, step 03 the keyspace, step 04 expiry,
//! step 05 the append-only file, step 06 snapshots, step 07 pub/sub, step
//! 08 replication; every later step must keep all of it working exactly as
//! well. A step's `tests/suites.rs` runs the suites that apply to it
//! against its own binary with one line each (`resp_suite!`,
//! `keyspace_suite!`, `expiry_suite!`, `aof_suite!`, `rdb_suite!`,
//! `pubsub_suite!`, `replication_suite!`), so a bug fixed in one step is
//! proven fixed in all of them.

pub mod aof;
pub mod expiry;
pub mod keyspace;
pub mod pubsub;
pub mod rdb;
pub mod replication;
pub mod resp;

use crate::{tool_available, Server};

/// Expands to one `#[test]` per named check of `suite::$module`, each
/// against the server binary `$bin`.
#[macro_export]
macro_rules! suite_tests {
    ($bin:expr, $module:ident; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::suite::$module::$check($bin);
            }
        )*
    };
}

/// The protocol checks of step 02, for every server step from 02 on.
#[macro_export]
macro_rules! resp_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, resp;
            ping_and_echo_through_a_client_library,
            commands_are_case_insensitive,
            errors_match_redis_word_for_word,
            a_command_split_into_single_bytes_is_parsed,
            a_thousand_pipelined_commands_get_a_thousand_replies,
            inline_commands_work_as_typed_into_nc,
            empty_requests_are_ignored,
            protocol_errors_are_answered_then_the_connection_closes,
            claimed_lengths_do_not_allocate_memory,
            a_client_over_the_query_buffer_limit_is_cut_off,
            hello_switches_between_resp2_and_resp3,
            a_resp3_client_library_works,
            quit_closes_the_connection,
            command_docs_describes_commands_for_redis_cli,
            redis_cli_one_shot_commands,
            redis_cli_pipe_mode,
            many_clients_at_once,
            redis_benchmark_pings,
        );
    };
}

/// The keyspace checks of step 03 (GET, SET and friends), for every server
/// step from 03 on.
#[macro_export]
macro_rules! keyspace_suite {
    ($bin:expr) => {
        $crate::suite_tests!($bin, keyspace;
            set_then_get_through_a_client_library,
            keys_and_values_are_binary_safe,
            set_options_nx_xx_get_reply_as_redis,
            del_exists_dbsize_flushall,
            keyspace_errors_match_redis_word_for_word,
            concurrent_writers_lose_nothing,
            redis_cli_pipe_mass_insert,
            redis_benchmark_sets_and_gets,
        );
    };
}

/// Runs a short redis-benchmark and checks that every test reports a result
/// and nothing went wrong, the CONFIG GET it starts with included.
pub(crate) fn run_redis_benchmark(bin: &str, tests: &str, expected: &[&str]) {
    let server = Server::start(bin, &[]);
    if !tool_available("redis-benchmark") {
        return;
    }
    let port = server.port().to_string();
    let child = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(["-t", tests, "-n", "20000", "-c", "10", "-P", "4", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn redis-benchmark");
    let out = crate::wait_with_deadline(child, "redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark failed: {stdout}{stderr}"
    );
    for test in expected {
        assert!(
            stdout.contains(&format!("{test}: ")),
            "no {test} result in: {stdout}{stderr}"
        );
    }
    assert!(
        stderr.trim().is_empty(),
        "redis-benchmark complained: {stderr}"
    );
}
