//! Management rate limits (QCode: 60 calls a minute and 1000 a day per partner token, 5 key
//! creations an hour per partner; 429 with `Retry-After`). Calls count per token, so a rotated
//! token starts with a fresh budget: whoever holds a leaked token cannot spend the budget the
//! new one needs. Fixed windows on the gateway's clock, so tests
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

/// Whose budget a call draws on: a partner's token (its public lookup prefix; calls), or the
/// partner as a whole (`token` empty; key creations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller<'a> {
    pub partner: Uuid,
    pub token: &'a str,
}

/// Call counters per caller and window.
pub struct ManagementLimits {
    config: Management,
    clock: Arc<dyn Clock>,
    used: DashMap<(Uuid, String, Budget, i64), u32>,
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

    /// Counts one call made with a partner's token (per minute and per day).
    pub async fn call(&self, caller: Caller<'_>) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        let per_minute = self.config.calls_per_minute.get();
        self.take(caller, Budget::Minute, per_minute, now).await?;
        self.take(caller, Budget::Day, self.config.calls_per_day.get(), now)
            .await
    }

    /// Counts one key creation of `partner` (per hour, whichever token it uses).
    pub async fn create(&self, partner: Uuid) -> Result<(), ApiError> {
        let now = self.clock.now_unix();
        let limit = self.config.key_creations_per_hour.get();
        let caller = Caller { partner, token: "" };
        self.take(caller, Budget::CreateHour, limit, now).await
    }

    async fn take(
        &self,
        caller: Caller<'_>,
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
            let bucket = format!("{}:{}:{budget:?}:{start}", caller.partner, caller.token);
            match cluster.hit(&bucket, now, start + len).await {
                Ok(count) if count > u64::from(limit) => return Err(refused),
                Ok(_) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, "shared management limits unavailable; counting locally");
                }
            }
        }
        self.take_local(caller, budget, limit, now, start)
            .then_some(())
            .ok_or(refused)
    }

    /// Counts a call in this instance's own windows; `false` if the budget is spent.
    fn take_local(
        &self,
        caller: Caller<'_>,
        budget: Budget,
        limit: u32,
        now: i64,
        start: i64,
    ) -> bool {
        if self.used.len() > 100_000 {
            // Forget finished windows now and then; the map stays small.
            self.used.retain(|(_, _, b, s), _| *s + b.seconds() > now);
        }
        let key = (caller.partner, caller.token.to_string(), budget, start);
        let mut count = self.used.entry(key).or_insert(0);
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
        let id = Uuid::new_v4();
        let p = Caller {
            partner: id,
            token: "aaaaaaaa",
        };
        for _ in 0..3 {
            l.call(p).await.unwrap();
        }
        match l.call(p).await {
            Err(ApiError::RateLimited { retry_after }) => assert_eq!(retry_after, 60),
            other => panic!("{other:?}"),
        }
        // The partner's next token (after a rotation) has its own budget.
        let rotated = Caller {
            partner: id,
            token: "bbbbbbbb",
        };
        l.call(rotated).await.unwrap();
        clock.advance(60);
        l.call(p).await.unwrap();
        l.call(p).await.unwrap(); // 5 today
        clock.advance(60);
        assert!(
            matches!(l.call(p).await, Err(ApiError::RateLimited { .. })),
            "daily limit"
        );
        l.create(id).await.unwrap();
        match l.create(id).await {
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
        let id = Uuid::new_v4();
        let p = Caller {
            partner: id,
            token: "aaaaaaaa",
        };
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
        a.create(id).await.unwrap();
        assert!(matches!(
            b.create(id).await,
            Err(ApiError::RateLimited { .. })
        ));
        drop((a, b));
        store.finish().await;
    }
}
