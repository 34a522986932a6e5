//! The shared suites from `test-support`, against this step's binary:
//! everything steps 02 to 05 could do, and the snapshots this step adds.

test_support::resp_suite!(env!("CARGO_BIN_EXE_step06-rdb-snapshots"));
test_support::keyspace_suite!(env!("CARGO_BIN_EXE_step06-rdb-snapshots"));
test_support::expiry_suite!(env!("CARGO_BIN_EXE_step06-rdb-snapshots"));
test_support::aof_suite!(env!("CARGO_BIN_EXE_step06-rdb-snapshots"));
test_support::rdb_suite!(env!("CARGO_BIN_EXE_step06-rdb-snapshots"));
