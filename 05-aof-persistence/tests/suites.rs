//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 to 04 could do, and the AOF this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step05-aof-persistence"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step05-aof-persistence"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step05-aof-persistence"));
test_support::aof_suite!(env!("CARGO_BIN_EXE_step05-aof-persistence"));
