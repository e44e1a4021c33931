//! The kubo ledger in memory: which CIDs each account pins and their sizes, how many accounts
//! hold each CID (the node keeps one pin until the last holder lets go), and the IPNS names each
//! account owns. New pins and names are admitted against the plan's limits by reservation, so
//! concurrent requests of one account can never together overshoot a limit.
//!
//! Pin operations are rare next to ordinary requests and each one waits on the node anyway, so
//! one mutex guards the whole ledger; it is never held across an await.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

/// What the ledger knows of one pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinInfo {
    pub size: u64,
    pub recursive: bool,
}

/// The plan limits a reservation is checked against (`None` = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinLimits {
    pub count: Option<u64>,
    pub bytes: Option<u64>,
}

/// Which limit refused a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRefusal {
    Count { limit: u64 },
    Bytes { limit: u64 },
    Names { limit: u64 },
}

/// An account's pins and names, with what its in-flight requests have reserved.
#[derive(Debug, Default)]
struct AccountPins {
    pins: HashMap<Arc<str>, PinInfo>,
    bytes: u64,
    reserved_count: u64,
    reserved_bytes: u64,
    /// Names owned, plus names being created (so they count at once).
    names: HashSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<Uuid, AccountPins>,
    /// How many accounts hold each CID.
    holders: HashMap<Arc<str>, u32>,
}

/// The pin and IPNS-name ledger of every account.
#[derive(Debug, Default)]
pub struct PinLedger {
    inner: Mutex<Inner>,
}

impl PinLedger {
    /// A ledger holding the stored pins and names.
    pub fn load(pins: Vec<PinRow>, names: Vec<IpnsRow>) -> Self {
        let ledger = PinLedger::default();
        {
            let mut inner = ledger.lock();
            for row in pins {
                let info = PinInfo {
                    size: row.size,
                    recursive: row.recursive,
                };
                inner.insert(row.account_id, row.cid.into(), info);
            }
            for row in names {
                inner.account(row.account_id).names.insert(row.name);
            }
        }
        ledger
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (each change is a
        // few infallible inserts), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces what the ledger knows of `account` (its pins and names) with the store's rows,
    /// and of the holders of `holders`' CIDs (a CID asked about and missing there has none):
    /// on a shared store other instances change them too. Reservations in flight stay.
    pub fn refresh(
        &self,
        account: Uuid,
        pins: Vec<PinRow>,
        names: Vec<String>,
        asked: &[&str],
        holders: &[(String, u32)],
    ) {
        let mut inner = self.lock();
        let a = inner.account(account);
        a.pins = pins
            .into_iter()
            .map(|r| {
                let info = PinInfo {
                    size: r.size,
                    recursive: r.recursive,
                };
                (Arc::from(r.cid), info)
            })
            .collect();
        a.bytes = a.pins.values().map(|p| p.size).sum();
        a.names = names.into_iter().collect();
        for cid in asked {
            let n = holders
                .iter()
                .find(|(c, _)| c == cid)
                .map_or(0, |(_, n)| *n);
            if n == 0 {
                inner.holders.remove(*cid);
            } else {
                inner.holders.insert(Arc::from(*cid), n);
            }
        }
    }

    /// The account's pin of `cid`, if it holds one.
    pub fn get(&self, account: Uuid, cid: &str) -> Option<PinInfo> {
        self.lock().accounts.get(&account)?.pins.get(cid).copied()
    }

    /// How many accounts hold `cid`.
    pub fn holders(&self, cid: &str) -> u32 {
        self.lock().holders.get(cid).copied().unwrap_or(0)
    }

    /// `(count, bytes)` the account has pinned.
    pub fn usage(&self, account: Uuid) -> (u64, u64) {
        self.lock()
            .accounts
            .get(&account)
            .map_or((0, 0), |a| (a.pins.len() as u64, a.bytes))
    }

    /// The account's pins, sorted by CID.
    pub fn list(&self, account: Uuid) -> Vec<(String, PinInfo)> {
        let inner = self.lock();
        let mut pins: Vec<(String, PinInfo)> = inner
            .accounts
            .get(&account)
            .map(|a| a.pins.iter().map(|(c, i)| (c.to_string(), *i)).collect())
            .unwrap_or_default();
        pins.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pins
    }

    /// Reserves room for a pin of `bytes` (one more pin unless the account already holds
    /// `cid`), counting the pin `replacing` (if any) as released. The room is held until the
    /// reservation is committed or dropped.
    pub fn reserve(
        self: &Arc<Self>,
        account: Uuid,
        cid: &str,
        bytes: u64,
        replacing: Option<&str>,
        limits: PinLimits,
    ) -> Result<PinReservation, PinRefusal> {
        let mut inner = self.lock();
        let a = inner.account(account);
        let freed = replacing.and_then(|old| a.pins.get(old).copied());
        let held = a.pins.get(cid).copied();
        let count = u64::from(held.is_none());
        let count_after = (a.pins.len() as u64 + a.reserved_count + count)
            .saturating_sub(u64::from(freed.is_some()));
        let bytes_after = (a.bytes + a.reserved_bytes + bytes)
            .saturating_sub(held.map_or(0, |h| h.size))
            .saturating_sub(freed.map_or(0, |f| f.size));
        if let Some(limit) = limits.count.filter(|l| count > 0 && count_after > *l) {
            return Err(PinRefusal::Count { limit });
        }
        if let Some(limit) = limits.bytes.filter(|l| bytes > 0 && bytes_after > *l) {
            return Err(PinRefusal::Bytes { limit });
        }
        a.reserved_count += count;
        a.reserved_bytes += bytes;
        Ok(PinReservation {
            ledger: self.clone(),
            account,
            count,
            bytes,
        })
    }

    /// Bytes the account may still pin under `limits` (`None` = unlimited).
    pub fn room(&self, account: Uuid, limits: PinLimits) -> Option<u64> {
        let inner = self.lock();
        let used = inner
            .accounts
            .get(&account)
            .map_or(0, |a| a.bytes + a.reserved_bytes);
        limits.bytes.map(|limit| limit.saturating_sub(used))
    }

    /// Removes the account's pin of `cid`; what it was, if held.
    pub fn remove(&self, account: Uuid, cid: &str) -> Option<PinInfo> {
        self.lock().remove(account, cid)
    }

    /// Whether the account owns the IPNS name.
    pub fn owns_name(&self, account: Uuid, name: &str) -> bool {
        self.lock()
            .accounts
            .get(&account)
            .is_some_and(|a| a.names.contains(name))
    }

    /// The account's IPNS names, sorted.
    pub fn names(&self, account: Uuid) -> Vec<String> {
        let inner = self.lock();
        let mut names: Vec<String> = inner
            .accounts
            .get(&account)
            .map(|a| a.names.iter().cloned().collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }

    /// Claims a new IPNS name within `limit` names; `Ok(false)` if the account already owns it.
    pub fn claim_name(
        &self,
        account: Uuid,
        name: &str,
        limit: Option<u64>,
    ) -> Result<bool, PinRefusal> {
        let mut inner = self.lock();
        let a = inner.account(account);
        if a.names.contains(name) {
            return Ok(false);
        }
        if let Some(limit) = limit.filter(|l| a.names.len() as u64 >= *l) {
            return Err(PinRefusal::Names { limit });
        }
        a.names.insert(name.to_string());
        Ok(true)
    }

    /// Forgets an IPNS name (a failed creation, or a removed key); whether it was owned.
    pub fn release_name(&self, account: Uuid, name: &str) -> bool {
        self.lock()
            .accounts
            .get_mut(&account)
            .is_some_and(|a| a.names.remove(name))
    }
}

impl Inner {
    fn account(&mut self, id: Uuid) -> &mut AccountPins {
        self.accounts.entry(id).or_default()
    }

    fn insert(&mut self, account: Uuid, cid: Arc<str>, info: PinInfo) {
        let a = self.accounts.entry(account).or_default();
        match a.pins.insert(cid.clone(), info) {
            Some(old) => a.bytes = a.bytes - old.size + info.size,
            None => {
                a.bytes += info.size;
                *self.holders.entry(cid).or_default() += 1;
            }
        }
    }

    fn remove(&mut self, account: Uuid, cid: &str) -> Option<PinInfo> {
        let a = self.accounts.get_mut(&account)?;
        let info = a.pins.remove(cid)?;
        a.bytes -= info.size;
        if let Some(n) = self.holders.get_mut(cid) {
            // Saturating: on a shared store counts of CIDs not refreshed lately may be stale.
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.holders.remove(cid);
            }
        }
        Some(info)
    }
}

/// Room held for one pin until it is committed (or released when dropped).
#[derive(Debug)]
pub struct PinReservation {
    ledger: Arc<PinLedger>,
    account: Uuid,
    count: u64,
    bytes: u64,
}

impl PinReservation {
    /// Records the pin (with its real size) in place of the reservation, and removes the pin
    /// it replaces, if any.
    pub fn commit(mut self, cid: &str, info: PinInfo, replacing: Option<&str>) {
        let ledger = self.ledger.clone();
        let mut inner = ledger.lock();
        self.release(&mut inner);
        if let Some(old) = replacing.filter(|old| *old != cid) {
            inner.remove(self.account, old);
        }
        inner.insert(self.account, cid.into(), info);
    }

    fn release(&mut self, inner: &mut Inner) {
        if let Some(a) = inner.accounts.get_mut(&self.account) {
            a.reserved_count -= self.count;
            a.reserved_bytes -= self.bytes;
        }
        self.count = 0;
        self.bytes = 0;
    }
}

impl Drop for PinReservation {
    fn drop(&mut self) {
        if self.count > 0 || self.bytes > 0 {
            let ledger = self.ledger.clone();
            self.release(&mut ledger.lock());
        }
    }
}

/// One pin of the kubo ledger: an account holds `cid`, of `size` bytes (the DAG's total size,
/// or the block's for a direct pin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRow {
    pub account_id: Uuid,
    pub cid: String,
    pub size: u64,
    pub recursive: bool,
}

/// One IPNS name (kubo key) an account owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpnsRow {
    pub account_id: Uuid,
    pub name: String,
}

#[cfg(test)]
#[path = "pins_tests.rs"]
mod tests;
