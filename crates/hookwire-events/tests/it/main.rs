//! Integration tests of hookwire-events over real stores (PostgreSQL started per test process,
//! SQLite files in temporary directories).

mod outbox;
