//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 to 08 could do.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::aof_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::rdb_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::pubsub_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
test_support::replication_suite!(env!("CARGO_BIN_EXE_step09-graceful-shutdown"));
