//! What the outbox examples share: the database to run against.

/// `DATABASE_URL`, or a throw-away server started here (kept alive by the returned guard).
pub(crate) fn database() -> Result<(Option<hookwire_testkit::PostgresServer>, String), String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => Ok((None, url)),
        Err(_) => {
            let server = hookwire_testkit::PostgresServer::start()?;
            let url = server.url();
            Ok((Some(server), url))
        }
    }
}
