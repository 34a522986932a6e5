//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 and 03 could do, and the expiry this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step04-expiry"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step04-expiry"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step04-expiry"));
