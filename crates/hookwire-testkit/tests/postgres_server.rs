//! `PostgresServer` starts a usable server and leaves nothing behind when dropped.

use hookwire_testkit::PostgresServer;

#[test]
fn a_server_answers_sql_and_is_gone_after_drop() {
    let server = PostgresServer::start().expect("postgres");
    let port = server.port();
    assert_eq!(server.psql("SELECT 1 + 1").unwrap().trim(), "2");
    let url = server.create_database().unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let listed = server
        .psql("SELECT datname FROM pg_database ORDER BY datname")
        .unwrap();
    assert!(listed.lines().any(|l| l == name), "{listed}");
    assert!(
        server.psql("SELECT * FROM no_such_table").is_err(),
        "an SQL error is reported"
    );
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still accepts connections after drop"
    );
}
