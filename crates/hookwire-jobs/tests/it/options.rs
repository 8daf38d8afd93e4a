//! `JobsBuilder::start` reports options out of range instead of clamping them; the old error
//! name still compiles.

use std::time::Duration;

use hookwire_jobs::{JobDef, Jobs, MAX_CLAIM, MIN_LEASE, MemoryBackend};

fn def() -> JobDef {
    JobDef::new("opts", |_: u8, _| async { Ok::<_, std::io::Error>(()) })
}

#[tokio::test]
async fn start_refuses_out_of_range_options() {
    let bad = [
        ("concurrency 0", def().concurrency(0)),
        (
            "short lease",
            def().lease(MIN_LEASE - Duration::from_millis(1)),
        ),
        ("batch 0", def().batch(0)),
        ("batch above MAX_CLAIM", def().batch(MAX_CLAIM + 1)),
        ("empty rate window", def().rate_limit(5, Duration::ZERO)),
        (
            "rate limit of 0 jobs",
            def().rate_limit(0, Duration::from_secs(1)),
        ),
    ];
    for (what, d) in bad {
        let err = Jobs::builder(MemoryBackend::new())
            .job(d)
            .start()
            .await
            .expect_err(what);
        assert!(err.is_invalid(), "{what}: {err}");
    }
}

#[tokio::test]
async fn start_accepts_options_at_their_limits() {
    let d = def()
        .concurrency(1)
        .lease(MIN_LEASE)
        .batch(MAX_CLAIM)
        .rate_limit(1, Duration::from_millis(1));
    let jobs = Jobs::builder(MemoryBackend::new())
        .job(d)
        .start()
        .await
        .expect("limits are in range");
    jobs.shutdown().await;
}

/// Code written against the old error name keeps compiling for one release.
#[test]
#[allow(deprecated)]
fn the_old_error_name_is_an_alias_of_error() {
    let old: hookwire_jobs::JobsError = hookwire_jobs::Error::invalid("x");
    let new: hookwire_jobs::Error = old;
    assert!(new.is_invalid());
}
