//! The shared suites from `test-support`, against this step's binary:
//! everything step 02 could do, and the keyspace this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step03-get-set"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step03-get-set"));
