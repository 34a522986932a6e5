//! The RESP suite from `test-support`, against this step's binary.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step02-resp-parser"));
