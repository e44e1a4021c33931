//! Management rate limits per partner token (QCode: 60 calls a minute, 1000 a day, 5 key
//! creations an hour; 429 with `Retry-After`). Fixed windows on the gateway's clock, so tests
//! drive them with a fake clock instead of sleeping. On a shared store the windows are counted
//! in the store, so the budget is the partner's across every instance (one store round-trip
//! per management call; the data plane never calls this). If the store cannot count, the
//! instance counts locally rather than refusing every call.

use std::sync::Arc;

use dashmap::DashMap;
use uuid::Uuid;

use super::error::ApiError;
use crate::config::model::Management;
use crate::domain::clock::Clock;
use crate::store::Store;

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
    /// The shared store counting the windows of every instance, if any.
    shared: Option<Arc<dyn Store>>,
}

impl ManagementLimits {
    /// Limits from `[management]`, on `clock`.
    pub fn new(config: Management, clock: Arc<dyn Clock>) -> Self {
        ManagementLimits {
            config,
            clock,
            used: DashMap::new(),
            shared: None,
        }
    }

    /// Limits counted in `store` when it is shared by several instances.
    pub fn shared(mut self, store: Arc<dyn Store>) -> Self {
        if store.cluster().is_some() {
            self.shared = Some(store);
        }
        self
    }

    /// Counts one call of `partner` (per minute and per day).
    pub async fn call(&self, partner: Uuid) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        let per_minute = self.config.calls_per_minute.get();
        self.take(partner, Budget::Minute, per_minute, now).await?;
        self.take(partner, Budget::Day, self.config.calls_per_day.get(), now)
            .await
    }

    /// Counts one key creation of `partner` (per hour).
    pub async fn create(&self, partner: Uuid) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        let limit = self.config.key_creations_per_hour.get();
        self.take(partner, Budget::CreateHour, limit, now).await
    }

    async fn take(
        &self,
        partner: Uuid,
        budget: Budget,
        limit: u32,
        now: i64,
    ) -> Result<(), ApiError> {
        let len = budget.seconds();
        let start = now - now.rem_euclid(len);
        let refused = ApiError::RateLimited {
            retry_after: (start + len - now).max(1) as u64,
        };
        if let Some(cluster) = self.shared.as_ref().and_then(|s| s.cluster()) {
            let bucket = format!("{partner}:{budget:?}:{start}");
            match cluster.hit(&bucket, now, start + len).await {
                Ok(count) if count > u64::from(limit) => return Err(refused),
                Ok(_) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, "shared management limits unavailable; counting locally");
                }
            }
        }
        self.take_local(partner, budget, limit, now, start)
            .then_some(())
            .ok_or(refused)
    }

    /// Counts a call in this instance's own windows; `false` if the budget is spent.
    fn take_local(&self, partner: Uuid, budget: Budget, limit: u32, now: i64, start: i64) -> bool {
        if self.used.len() > 100_000 {
            // Forget finished windows now and then; the map stays small.
            self.used.retain(|(_, b, s), _| *s + b.seconds() > now);
        }
        let mut count = self.used.entry((partner, budget, start)).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
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

    #[tokio::test]
    async fn windows_refuse_with_retry_after_and_reset() {
        let clock = Arc::new(FakeClock::new(1_795_435_200)); // 12:00:00
        let l = limits(clock.clone());
        let p = Uuid::new_v4();
        for _ in 0..3 {
            l.call(p).await.unwrap();
        }
        match l.call(p).await {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 60),
            other => panic!("{other:?}"),
        }
        l.call(Uuid::new_v4()).await.unwrap(); // another token has its own budget
        clock.advance(60);
        l.call(p).await.unwrap();
        l.call(p).await.unwrap(); // 5 today
        clock.advance(60);
        assert!(
            matches!(l.call(p).await, Err(ApiError::RateLimited { .. })),
            "daily limit"
        );
        l.create(p).await.unwrap();
        match l.create(p).await {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 3_600 - 120),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn on_a_shared_store_the_budget_counts_across_instances() {
        let store = crate::store::tests::TestStore::postgres().await;
        let clock = Arc::new(FakeClock::new(1_795_435_200));
        let (a, b) = (
            limits(clock.clone()).shared(store.shared()),
            limits(clock.clone()).shared(store.shared()),
        );
        let p = Uuid::new_v4();
        a.call(p).await.unwrap();
        b.call(p).await.unwrap();
        a.call(p).await.unwrap();
        assert!(
            matches!(
                b.call(p).await,
                Err(ApiError::RateLimited { retry_after: 60 })
            ),
            "3 a minute, whichever instance counts them"
        );
        clock.advance(60);
        b.call(p).await.unwrap();
        a.create(p).await.unwrap();
        assert!(matches!(
            b.create(p).await,
            Err(ApiError::RateLimited { .. })
        ));
        drop((a, b));
        store.finish().await;
    }
}
