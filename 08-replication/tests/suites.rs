//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 to 07 could do, and the replication this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::aof_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::rdb_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::pubsub_suite!(env!("CARGO_BIN_EXE_step08-replication"));
test_support::replication_suite!(env!("CARGO_BIN_EXE_step08-replication"));
