//! Management rate limits per partner token (QCode: 60 calls a minute, 1000 a day, 5 key
//! creations an hour; 429 with `Retry-After`). Fixed windows on the gateway's clock, so tests
//! drive them with a fake clock instead of sleeping.

use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

use super::error::ApiError;
use crate::config::model::Management;
use crate::domain::clock::Clock;

/// Which budget a call draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Budget {
    Minute,
    Day,
    CreateHour,
}

impl Budget {
    fn seconds(self) -> i64 {
        match self {
            Budget::Minute => 60,
            Budget::Day => 86_400,
            Budget::CreateHour => 3_600,
        }
    }
}

/// Call counters per partner and window.
pub struct ManagementLimits {
    config: Management,
    clock: Arc<dyn Clock>,
    used: DashMap<(Uuid, Budget, i64), u32>,
}

impl ManagementLimits {
    /// Limits from `[management]`, on `clock`.
    pub fn new(config: Management, clock: Arc<dyn Clock>) -> Self {
        ManagementLimits {
            config,
            clock,
            used: DashMap::new(),
        }
    }

    /// Counts one call of `partner` (per minute and per day).
    pub fn call(&self, partner: Uuid) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        self.take(
            partner,
            Budget::Minute,
            self.config.calls_per_minute.get(),
            now,
        )?;
        self.take(partner, Budget::Day, self.config.calls_per_day.get(), now)
    }

    /// Counts one key creation of `partner` (per hour).
    pub fn create(&self, partner: Uuid) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        let limit = self.config.key_creations_per_hour.get();
        self.take(partner, Budget::CreateHour, limit, now)
    }

    fn take(&self, partner: Uuid, budget: Budget, limit: u32, now: i64) -> Result<(), ApiError> {
        let len = budget.seconds();
        let start = now - now.rem_euclid(len);
        if self.used.len() > 100_000 {
            // Forget finished windows now and then; the map stays small.
            self.used.retain(|(_, b, s), _| *s + b.seconds() > now);
        }
        let mut count = self.used.entry((partner, budget, start)).or_insert(0);
        if *count >= limit {
            return Err(ApiError::RateLimited {
                retry_after: (start + len - now).max(1) as u64,
            });
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::domain::clock::FakeClock;

    fn limits(clock: Arc<FakeClock>) -> ManagementLimits {
        let n = |v| NonZeroU32::new(v).unwrap();
        let config = Management {
            calls_per_minute: n(3),
            calls_per_day: n(5),
            key_creations_per_hour: n(1),
        };
        ManagementLimits::new(config, clock)
    }

    #[test]
    fn windows_refuse_with_retry_after_and_reset() {
        let clock = Arc::new(FakeClock::new(1_795_435_200)); // 12:00:00
        let l = limits(clock.clone());
        let p = Uuid::new_v4();
        for _ in 0..3 {
            l.call(p).unwrap();
        }
        match l.call(p) {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 60),
            other => panic!("{other:?}"),
        }
        l.call(Uuid::new_v4()).unwrap(); // another token has its own budget
        clock.advance(60);
        l.call(p).unwrap();
        l.call(p).unwrap(); // 5 today
        clock.advance(60);
        assert!(
            matches!(l.call(p), Err(ApiError::RateLimited { .. })),
            "daily limit"
        );
        l.create(p).unwrap();
        match l.create(p) {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 3_600 - 120),
            other => panic!("{other:?}"),
        }
    }
}
