//! Wall-clock helpers shared by signing, events and stores.
//!
//! Core has no runtime dependency, so these are thin wrappers over `std::time`; they exist so
//! every crate formats and reads timestamps the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the signature schemes put them on the wire.
///
/// A clock set before 1970 yields a negative value rather than a panic.
///
/// ```
/// assert!(hookwire_core::time::unix_now() > 1_600_000_000);
/// ```
pub fn unix_now() -> i64 {
    unix_seconds(SystemTime::now())
}

/// Seconds since the Unix epoch from the kernel's coarse clock (Linux `CLOCK_REALTIME_COARSE`,
/// updated every scheduler tick, a few milliseconds at most behind [`unix_now`]); elsewhere the
/// same as [`unix_now`].
///
/// Signature verification reads the clock on every request to check the timestamp window,
/// which is counted in seconds. The fine clock reads the TSC, which on virtual machines can
/// cost as much as hashing a few hundred bytes; the coarse one reads one shared memory word.
///
/// ```
/// let (coarse, fine) = (hookwire_core::time::unix_now_coarse(), hookwire_core::time::unix_now());
/// assert!((fine - coarse).abs() <= 1);
/// ```
pub fn unix_now_coarse() -> i64 {
    #[cfg(target_os = "linux")]
    {
        rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
    }
    #[cfg(not(target_os = "linux"))]
    {
        unix_now()
    }
}

/// Seconds since the Unix epoch for `t`, negative before 1970.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(hookwire_core::time::unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
/// ```
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Milliseconds since the Unix epoch (0 for clocks before 1970).
///
/// ```
/// assert!(hookwire_core::time::unix_millis() > 1_600_000_000_000);
/// ```
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Formats `t` as RFC 3339 UTC with millisecond precision (`2026-05-16T10:00:00.000Z`).
///
/// Times before 1970 are clamped to the epoch: events are never created then.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_778_925_600_000);
/// assert_eq!(hookwire_core::time::rfc3339(t), "2026-05-16T10:00:00.000Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar,
/// and small enough that pulling in a date crate for it would not pay.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn coarse_clock_is_within_a_second_of_the_fine_one() {
        for _ in 0..1000 {
            let before = unix_now();
            let coarse = unix_now_coarse();
            let after = unix_now();
            // The coarse clock lags by at most a tick, so it can only sit on the second before.
            assert!(
                (before - 1..=after).contains(&coarse),
                "{before} {coarse} {after}"
            );
        }
    }

    #[test]
    fn unix_seconds_is_negative_before_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(7)), -7);
    }
}
