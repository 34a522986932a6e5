//! What is particular to step 03.

use test_support::Server;

const BIN: &str = env!("CARGO_BIN_EXE_step03-get-set");

#[test]
fn expiry_options_are_a_syntax_error_until_step_04() {
    let server = Server::start(BIN, &[]);
    let mut raw = server.raw();
    for option in [
        "EX 10",
        "PX 100",
        "EXAT 2000000000",
        "PXAT 2000000000000",
        "KEEPTTL",
    ] {
        raw.send(format!("SET k v {option}\r\n").as_bytes());
        raw.expect(b"-ERR syntax error\r\n");
    }
    raw.send(b"EXISTS k\r\n");
    raw.expect(b":0\r\n");
}

#[test]
fn config_get_reports_no_persistence() {
    // redis-benchmark asks for these two before it starts.
    let server = Server::start(BIN, &[]);
    let mut conn = server.client();
    let settings: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .arg("appendonly")
        .query(&mut conn)
        .unwrap();
    assert_eq!(settings, ["save", "", "appendonly", "no"]);
}
