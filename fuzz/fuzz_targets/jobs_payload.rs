//! hookwire-jobs payload and name decoding: `NewJob::validate`, `validate_queue_name`,
//! `validate_job_id`, `Retention` and the `MemoryBackend` store/claim path.
//!
//! Asserts: the validators accept exactly their documented languages; every payload that
//! parses as JSON (within the size limit) validates, and a payload that validates comes back
//! byte for byte from a claim and from `get`; an add with any invalid job stores nothing;
//! `Retention::decode` inverts `encode`.
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use hookwire_fuzz::{bytes, json_value, short_string};
use hookwire_jobs::{
    ClaimRequest, JobAdmin, MAX_JOB_ID, MAX_PAYLOAD, MAX_PRIORITY, MAX_QUEUE_NAME, MemoryBackend,
    NewJob, Retention, WorkerBackend, validate_job_id, validate_queue_name,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.borrow().block_on(f))
}

fn queue_ok(q: &str) -> bool {
    (1..=MAX_QUEUE_NAME).contains(&q.len())
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn id_ok(id: &str) -> bool {
    (1..=MAX_JOB_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_graphic())
        && !id.bytes().all(|b| b.is_ascii_digit())
}

fn payload(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => json_value(u, 4, true)?.to_string(),
        1 => {
            // Valid JSON with a hostile tweak: cut, doubled, or wrapped in whitespace.
            let mut s = json_value(u, 4, true)?.to_string();
            match u.int_in_range(0u8..=2)? {
                0 => {
                    let mut cut = u.int_in_range(0..=s.len())?;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                }
                1 => s = format!("{s}{s}"),
                _ => s = format!(" \n{s}\t"),
            }
            s
        }
        _ => String::from_utf8_lossy(bytes(u, 64)?).into_owned(),
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let queue = if u.ratio(3, 4)? {
        "q:send-email".to_owned()
    } else {
        short_string(u, 12)?
    };
    assert_eq!(
        validate_queue_name(&queue).is_ok(),
        queue_ok(&queue),
        "queue name {queue:?}"
    );

    let mut jobs = Vec::new();
    let mut all_valid = true;
    for k in 0..u.int_in_range(1..=3)? {
        let mut job = NewJob::new(payload(u)?);
        job.id = match u.int_in_range(0u8..=2)? {
            0 => None,
            1 => Some(format!("job-{k}")),
            _ => Some(short_string(u, 10)?),
        };
        job.priority = if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=MAX_PRIORITY)?
        };
        job.remove_on_complete = Retention::decode(u.arbitrary()?);
        if let Some(id) = &job.id {
            assert_eq!(validate_job_id(id).is_ok(), id_ok(id), "job id {id:?}");
        }
        let parses = serde_json::from_str::<serde_json::Value>(&job.data).is_ok();
        let valid = job.validate().is_ok();
        let others = job.id.as_deref().is_none_or(id_ok) && job.priority <= MAX_PRIORITY;
        if parses && others && job.data.len() <= MAX_PAYLOAD {
            assert!(valid, "valid job refused: {job:?}");
        }
        if !others {
            assert!(!valid, "invalid id or priority accepted: {job:?}");
        }
        all_valid &= valid;
        jobs.push(job);
    }

    let r: i64 = u.arbitrary()?;
    let decoded = Retention::decode(r);
    assert_eq!(Retention::decode(decoded.encode()), decoded);
    assert_eq!(
        decoded.encode().signum(),
        r.signum().max(-1),
        "retention {r}"
    );

    let backend = MemoryBackend::new();
    let added = block_on(backend.add(&queue, jobs.clone()));
    if !(all_valid && queue_ok(&queue)) {
        assert!(added.is_err(), "an invalid batch was stored");
        if queue_ok(&queue) {
            let claimed = block_on(backend.claim(
                &queue,
                ClaimRequest::new("t", vec![], 10, Duration::from_secs(30)),
            ))
            .expect("claim");
            assert!(claimed.jobs.is_empty(), "a refused batch left jobs behind");
        }
        return Ok(());
    }
    let added = added.expect("a valid batch is stored");
    assert_eq!(added.len(), jobs.len());
    let claimed = block_on(backend.claim(
        &queue,
        ClaimRequest::new("t", vec![], 10, Duration::from_secs(30)),
    ))
    .expect("claim");
    for (a, job) in added.iter().zip(&jobs) {
        if !a.created {
            continue; // a repeated id in the batch
        }
        let got = claimed
            .jobs
            .iter()
            .find(|j| j.id == a.id)
            .expect("stored job not claimed");
        assert_eq!(got.data, job.data, "payload changed in storage");
        let rec = block_on(backend.get(&queue, &a.id))
            .expect("get")
            .expect("record");
        assert_eq!(rec.data, job.data);
        assert_eq!(rec.priority, job.priority);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
