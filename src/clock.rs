//! Clock arithmetic that cannot overflow: an instant plus a duration saturates at a far-future
//! instant instead of panicking, whatever the duration (a hostile `Retry-After`, a configured
//! grace of centuries).

use std::time::Duration;

/// About 30 years: later than any deadline the worker sets, and representable by every
/// platform's monotonic clock, so "never" is still an instant one can sleep until.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + d` on tokio's clock, or at most [`FAR_FUTURE`] after `at`.
pub fn later(at: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    at.checked_add(d.min(FAR_FUTURE))
        .or_else(|| at.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(at)
}

/// `at + d` on the standard clock, or at most [`FAR_FUTURE`] after `at`.
pub fn later_std(at: std::time::Instant, d: Duration) -> std::time::Instant {
    at.checked_add(d.min(FAR_FUTURE))
        .or_else(|| at.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(at)
}

/// `d` from now on tokio's clock (see [`later`]).
pub fn from_now(d: Duration) -> tokio::time::Instant {
    later(tokio::time::Instant::now(), d)
}

/// `d` from now on the standard clock (see [`later_std`]).
pub fn from_now_std(d: Duration) -> std::time::Instant {
    later_std(std::time::Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let now = std::time::Instant::now();
        let max = Duration::from_secs(u64::MAX);
        assert_eq!(later_std(now, max), now + FAR_FUTURE);
        assert_eq!(
            later_std(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        let t = tokio::time::Instant::now();
        assert_eq!(later(t, Duration::MAX), t + FAR_FUTURE);
        assert!(from_now(max) > tokio::time::Instant::now());
        assert!(from_now_std(max) > std::time::Instant::now());
    }
}
