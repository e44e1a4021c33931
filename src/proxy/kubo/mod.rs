//! The kubo profile's ledger commands. Pins go through a per-account ledger (sizes from the
//! node's own answers, shared CIDs reference-counted across accounts, plan limits enforced
//! before anything is pinned); IPNS names (kubo keys) belong to one account each and count
//! against the plan's `ipns_limit`. Every ledger change is written to the store before the
//! client hears back; a pin the store could not record is undone on the node.

mod add;
pub mod args;
pub mod command;
mod ipns;
mod phases;
mod pins;
mod rpc;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

pub use add::AddPlan;
use args::Query;
use command::Command;
pub use phases::KuboProfile;

use crate::config::model::Plan;
use crate::domain::decision::{Denial, DenyCode, Quota};
use crate::meter::pins::{PinLedger, PinLimits, PinRefusal};
use crate::proxy::upstream::Upstream;
use crate::store::{Store, StoreError};

/// Lock stripes serialising the ledger changes of one CID (or one IPNS name). Locks are held only
/// around node calls on content the node already has (the size look-up, which may fetch, runs
/// before), and several are always taken in stripe order.
const STRIPES: usize = 1024;

/// The ledger, its store and the locks that keep one CID's operations in order.
pub struct Kubo {
    pub ledger: Arc<PinLedger>,
    store: Arc<dyn Store>,
    stripes: Vec<Mutex<()>>,
}

/// The account a ledger command acts for, with its plan's limits, at `now`.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub account: Uuid,
    pub limits: PinLimits,
    pub names: Option<u64>,
    pub now: i64,
}

impl Caller {
    /// The caller of `account` on `plan` (no plan: no limits).
    pub fn new(account: Uuid, plan: Option<&Plan>, now: i64) -> Self {
        Caller {
            account,
            limits: PinLimits {
                count: plan.and_then(|p| p.pinned_count_limit).map(|n| n.get()),
                bytes: plan.and_then(|p| p.pinned_bytes_limit).map(|n| n.get()),
            },
            names: plan.and_then(|p| p.ipns_limit).map(|n| u64::from(n.get())),
            now,
        }
    }
}

/// One request's view: the node, the request id for the node calls, the caller. Owned, so a
/// ledger change can run in its own task to the end even if the client leaves.
#[derive(Clone)]
pub struct Ctx {
    pub upstream: Arc<Upstream>,
    pub rid: HeaderValue,
    pub caller: Caller,
}

impl Kubo {
    /// The ledger loaded from the store.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let ledger = PinLedger::load(store.load_pins().await?, store.load_ipns().await?);
        Ok(Kubo {
            ledger: Arc::new(ledger),
            store,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The locks of one ledger change by `account` on `items` (CIDs, IPNS node names): this
    /// instance's stripes and, on a shared store, the store's ledger locks for every instance,
    /// under which the account's ledger and the items' holders are read afresh.
    async fn section(&self, account: Uuid, items: &[&str]) -> Result<Section<'_>, Denial> {
        let local = self.lock_all(items).await;
        let Some(cluster) = self.store.cluster() else {
            return Ok(Section {
                _local: local,
                _shared: None,
            });
        };
        let view = cluster
            .lock_ledger(account, items)
            .await
            .map_err(|e| unrecorded(&e))?;
        let (pins, names) = (view.pins, view.names);
        self.ledger
            .refresh(account, pins, names, items, &view.holders);
        Ok(Section {
            _local: local,
            _shared: view.guard,
        })
    }

    /// The locks of several items, taken in stripe order (never two requests each holding one
    /// lock the other waits for), each stripe once.
    async fn lock_all(&self, items: &[&str]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = items.iter().map(|i| stripe_of(i)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }

    /// Runs a ledger command (all but `add`, which is forwarded; see [`AddPlan`]) in its own
    /// task: once it has changed the node, it records the change even if the client hangs up.
    pub async fn serve(
        self: &Arc<Self>,
        ctx: Ctx,
        command: Command,
        query: Query,
    ) -> Result<Response<Bytes>, Denial> {
        let kubo = self.clone();
        let task = tokio::spawn(async move { kubo.run(&ctx, command, &query).await });
        task.await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "kubo ledger task failed");
            Err(Denial::new(DenyCode::UpstreamUnavailable))
        })
    }

    async fn run(
        &self,
        ctx: &Ctx,
        command: Command,
        query: &Query,
    ) -> Result<Response<Bytes>, Denial> {
        // Other instances may have changed the account's pins and names.
        refresh_account(self.store.as_ref(), &self.ledger, ctx.caller.account)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "reading the kubo ledger failed");
                Denial::with_message(
                    DenyCode::UpstreamUnavailable,
                    "the gateway could not read the pin ledger; try again",
                )
            })?;
        match command {
            Command::PinAdd => pins::add(self, ctx, query).await,
            Command::PinRm => pins::rm(self, ctx, query).await,
            Command::PinUpdate => pins::update(self, ctx, query).await,
            Command::PinLs => pins::ls(self, ctx, query),
            Command::KeyGen => ipns::gen_key(self, ctx, query).await,
            Command::KeyList => ipns::list(self, ctx, query).await,
            Command::KeyRm => ipns::rm(self, ctx, query).await,
            Command::KeyRename => ipns::rename(self, ctx, query).await,
            Command::NamePublish => ipns::publish(self, ctx, query).await,
            Command::Add => Err(Denial::new(DenyCode::BadRequest)),
        }
    }
}

/// Held for one ledger change: this instance's stripe locks and the store's ledger locks, both
/// released when it is dropped.
struct Section<'a> {
    _local: Vec<MutexGuard<'a, ()>>,
    _shared: Option<Box<dyn Send + Sync>>,
}

/// On a shared store, reads `account`'s pins and names afresh into `ledger` (other instances
/// change them too); nothing to do on a store of one instance.
pub async fn refresh_account(
    store: &dyn Store,
    ledger: &PinLedger,
    account: Uuid,
) -> Result<(), StoreError> {
    if let Some(cluster) = store.cluster() {
        let view = cluster.read_ledger(account).await?;
        ledger.refresh(account, view.pins, view.names, &[], &[]);
    }
    Ok(())
}

fn stripe_of(item: &str) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    item.hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}

/// The denial for a plan limit the ledger refused.
fn refused(refusal: PinRefusal) -> Denial {
    let (quota, message) = match refusal {
        PinRefusal::Count { limit } => (
            Quota::PinnedCount,
            format!("the plan's limit of {limit} pins is reached"),
        ),
        PinRefusal::Bytes { limit } => (
            Quota::PinnedBytes,
            format!("the pin would exceed the plan's limit of {limit} pinned bytes"),
        ),
        PinRefusal::Names { limit } => (
            Quota::Ipns,
            format!("the plan's limit of {limit} IPNS names is reached"),
        ),
    };
    let mut denial = Denial::with_message(DenyCode::QuotaExceeded, message);
    denial.quota = Some(quota);
    denial
}

/// The denial for a ledger write that failed (nothing was recorded).
fn unrecorded(err: &StoreError) -> Denial {
    tracing::error!(error = %err, "kubo ledger write failed");
    Denial::with_message(
        DenyCode::UpstreamUnavailable,
        "the gateway could not record the change; nothing was changed, try again",
    )
}
