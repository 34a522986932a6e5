//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 to 06 could do, and the pub/sub this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
test_support::aof_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
test_support::rdb_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
test_support::pubsub_suite!(env!("CARGO_BIN_EXE_step07-pubsub"));
