//! The usage journals: each flush appends its counter deltas to `usage_journal` and its keys'
//! `last_used_at` to `touch_journal`, one compact row each (durable as soon as the flush
//! commits). A journal is folded into its tables (`counters` and `usage_daily`; `keys`) every
//! [`FOLD_AFTER_BATCHES`] batches and before anything reads those columns from the store.
//!
//! Why: a flush after a busy second carries a few deltas and a `last_used_at` for each of
//! thousands of keys, and writing them row by row into the indexed tables cost more CPU than
//! serving the requests that produced them. Folding merges many batches first, so a key used
//! every second costs one write per fold instead of one per flush.

use std::collections::HashMap;

use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::meter::Delta;
use crate::meter::usage::{Metric, Scope};
use crate::meter::window::Window;
use crate::store::StoreError;

/// Batches kept in the journal before they are folded into the totals.
pub const FOLD_AFTER_BATCHES: i64 = 30;
/// Deltas kept in the journal before they are folded, whatever the number of batches.
pub const FOLD_AFTER_DELTAS: i64 = 2_000_000;

/// Payload format version (first byte).
const VERSION: u8 = 1;

/// Appends one batch's deltas, then folds the journal if it has grown past its bounds.
pub async fn append(tx: &mut Transaction<'_, Sqlite>, deltas: &[Delta]) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO usage_journal (deltas, payload) VALUES ($1, $2)")
        .bind(deltas.len() as i64)
        .bind(encode(deltas))
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(deltas), 0) AS d FROM usage_journal")
        .fetch_one(&mut **tx)
        .await?;
    let (batches, total): (i64, i64) = (row.try_get("n")?, row.try_get("d")?);
    if batches >= FOLD_AFTER_BATCHES || total >= FOLD_AFTER_DELTAS {
        fold(tx).await?;
    }
    Ok(())
}

/// Folds the whole journal into the totals in its own transaction (before reading them).
pub async fn fold_now(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    fold(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Empties the journal into `counters` and `usage_daily`, summing equal deltas first.
async fn fold(tx: &mut Transaction<'_, Sqlite>) -> Result<(), StoreError> {
    // Writes first, so a concurrent writer waits on the busy timeout instead of failing.
    let rows = sqlx::query("DELETE FROM usage_journal RETURNING payload")
        .fetch_all(&mut **tx)
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let payloads = rows
        .iter()
        .map(|row| row.try_get::<Vec<u8>, _>("payload"))
        .collect::<Result<Vec<_>, _>>()?;
    let deltas = off_worker(move || merge_deltas(&payloads)).await?;
    super::usage::write_totals(tx, &deltas).await
}

/// Appends one flush's `(key id, last_used_at)` pairs, then folds the touch journal if it has
/// grown past its bounds.
pub async fn append_touches(
    tx: &mut Transaction<'_, Sqlite>,
    used: &[(Uuid, i64)],
) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let mut payload = Vec::with_capacity(used.len() * 24);
    for (id, at) in used {
        payload.extend_from_slice(id.as_bytes());
        payload.extend_from_slice(&at.to_le_bytes());
    }
    sqlx::query("INSERT INTO touch_journal (keys, payload) VALUES ($1, $2)")
        .bind(used.len() as i64)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(keys), 0) AS k FROM touch_journal")
        .fetch_one(&mut **tx)
        .await?;
    let (batches, total): (i64, i64) = (row.try_get("n")?, row.try_get("k")?);
    if batches >= FOLD_AFTER_BATCHES || total >= FOLD_AFTER_DELTAS {
        fold_touches(tx).await?;
    }
    Ok(())
}

/// Folds the touch journal into `keys` in its own transaction (before reading keys).
pub async fn fold_touches_now(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    fold_touches(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Keys per `last_used_at` statement (2 bound values each, far under SQLite's variable limit).
const TOUCH_ROWS_PER_STATEMENT: usize = 1000;

/// Empties the touch journal into `keys.last_used_at`, which only ever moves forward.
async fn fold_touches(tx: &mut Transaction<'_, Sqlite>) -> Result<(), StoreError> {
    let rows = sqlx::query("DELETE FROM touch_journal RETURNING payload")
        .fetch_all(&mut **tx)
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let payloads = rows
        .iter()
        .map(|row| row.try_get::<Vec<u8>, _>("payload"))
        .collect::<Result<Vec<_>, _>>()?;
    let latest = off_worker(move || merge_touches(&payloads)).await?;
    // One multi-row statement per chunk, not one per key.
    for chunk in latest.chunks(TOUCH_ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("WITH m (id, at) AS (");
        q.push_values(chunk, |mut row, (id, at)| {
            row.push_bind(id.to_string()).push_bind(*at);
        });
        q.push(
            ") UPDATE keys SET last_used_at = m.at FROM m \
             WHERE keys.id = m.id AND (keys.last_used_at IS NULL OR keys.last_used_at < m.at)",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Sums equal deltas of many payloads.
fn merge_deltas(payloads: &[Vec<u8>]) -> Result<Vec<Delta>, StoreError> {
    let mut sums: HashMap<(Scope, Uuid, Metric, Window, String, String), u64> = HashMap::new();
    for payload in payloads {
        for d in decode(payload)? {
            let sum = sums
                .entry((d.scope, d.id, d.metric, d.window, d.label, d.day))
                .or_default();
            *sum = sum.saturating_add(d.amount);
        }
    }
    Ok(sums
        .into_iter()
        .map(|((scope, id, metric, window, label, day), amount)| Delta {
            scope,
            id,
            metric,
            window,
            label,
            day,
            amount,
        })
        .collect())
}

/// The latest time of each key in many touch payloads.
fn merge_touches(payloads: &[Vec<u8>]) -> Result<Vec<(Uuid, i64)>, StoreError> {
    let bad = || StoreError::Corrupt("touch_journal payload".into());
    let mut latest: HashMap<Uuid, i64> = HashMap::new();
    for payload in payloads {
        if payload.len() % 24 != 0 {
            return Err(bad());
        }
        for rec in payload.chunks_exact(24) {
            let id = Uuid::from_slice(&rec[..16]).map_err(|_| bad())?;
            let at = i64::from_le_bytes(rec[16..].try_into().map_err(|_| bad())?);
            let t = latest.entry(id).or_insert(at);
            *t = (*t).max(at);
        }
    }
    Ok(latest.into_iter().collect())
}

/// Runs a fold's decoding and merging on the blocking pool: a fold merges up to millions of
/// records, which on an async worker would stall the requests sharing it.
async fn off_worker<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(StoreError::Interrupted(err.to_string())),
    }
}

fn scope_code(s: Scope) -> u8 {
    match s {
        Scope::Key => 0,
        Scope::Account => 1,
        Scope::Partner => 2,
    }
}

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Requests => 0,
        Metric::BytesIn => 1,
        Metric::BytesOut => 2,
        Metric::Cost => 3,
    }
}

fn window_code(w: Window) -> u8 {
    match w {
        Window::Day => 0,
        Window::Month => 1,
        Window::Lifetime => 2,
    }
}

/// `VERSION`, the label table (`u16` count, then `u8` length + bytes each), `u32` delta count,
/// then per delta: scope, metric, window (`u8` each), id (16 bytes), label and day (`u16`
/// indexes into the table), amount (`u64`), little-endian.
fn encode(deltas: &[Delta]) -> Vec<u8> {
    let mut labels: Vec<&str> = Vec::new();
    let mut body = Vec::with_capacity(deltas.len() * 31);
    for d in deltas {
        body.extend_from_slice(&[scope_code(d.scope), metric_code(d.metric)]);
        body.push(window_code(d.window));
        body.extend_from_slice(d.id.as_bytes());
        body.extend_from_slice(&intern(&mut labels, &d.label).to_le_bytes());
        body.extend_from_slice(&intern(&mut labels, &d.day).to_le_bytes());
        body.extend_from_slice(&d.amount.to_le_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(VERSION);
    out.extend_from_slice(&(labels.len() as u16).to_le_bytes());
    for l in &labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.extend_from_slice(&(deltas.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The index of `s` in the label table, added if new (a batch holds a handful of labels).
fn intern<'a>(labels: &mut Vec<&'a str>, s: &'a str) -> u16 {
    let at = labels.iter().position(|l| *l == s).unwrap_or_else(|| {
        labels.push(s);
        labels.len() - 1
    });
    at as u16
}

/// Reads a payload back; anything malformed is `Corrupt`.
fn decode(mut p: &[u8]) -> Result<Vec<Delta>, StoreError> {
    let bad = || StoreError::Corrupt("usage_journal payload".into());
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if p.len() < n {
            return Err(bad());
        }
        let (head, rest) = p.split_at(n);
        p = rest;
        Ok(head)
    };
    if take(1)?[0] != VERSION {
        return Err(bad());
    }
    let n_labels = u16::from_le_bytes(take(2)?.try_into().map_err(|_| bad())?);
    let mut labels = Vec::with_capacity(n_labels as usize);
    for _ in 0..n_labels {
        let len = take(1)?[0] as usize;
        let s = std::str::from_utf8(take(len)?).map_err(|_| bad())?;
        labels.push(s.to_string());
    }
    let n = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?);
    let label = |i: &[u8]| -> Result<String, StoreError> {
        let i = u16::from_le_bytes(i.try_into().map_err(|_| bad())?);
        labels.get(i as usize).cloned().ok_or_else(bad)
    };
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let rec = take(31)?;
        let scope = [Scope::Key, Scope::Account, Scope::Partner];
        let metric = [
            Metric::Requests,
            Metric::BytesIn,
            Metric::BytesOut,
            Metric::Cost,
        ];
        let window = [Window::Day, Window::Month, Window::Lifetime];
        out.push(Delta {
            scope: *scope.get(rec[0] as usize).ok_or_else(bad)?,
            metric: *metric.get(rec[1] as usize).ok_or_else(bad)?,
            window: *window.get(rec[2] as usize).ok_or_else(bad)?,
            id: Uuid::from_slice(&rec[3..19]).map_err(|_| bad())?,
            label: label(&rec[19..21])?,
            day: label(&rec[21..23])?,
            amount: u64::from_le_bytes(rec[23..31].try_into().map_err(|_| bad())?),
        });
    }
    if !p.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(scope: Scope, metric: Metric, window: Window, label: &str, amount: u64) -> Delta {
        Delta {
            scope,
            id: Uuid::new_v4(),
            metric,
            window,
            label: label.into(),
            day: "2026-11-23".into(),
            amount,
        }
    }

    #[test]
    fn payload_round_trips() {
        let deltas = vec![
            delta(Scope::Key, Metric::Requests, Window::Day, "2026-11-23", 1),
            delta(
                Scope::Account,
                Metric::BytesOut,
                Window::Month,
                "2026-11",
                9,
            ),
            delta(
                Scope::Partner,
                Metric::Cost,
                Window::Lifetime,
                "lifetime",
                u64::MAX,
            ),
            delta(Scope::Key, Metric::BytesIn, Window::Month, "2026-11", 0),
        ];
        assert_eq!(decode(&encode(&deltas)).unwrap(), deltas);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn malformed_payloads_are_corrupt() {
        let payload = encode(&[delta(Scope::Key, Metric::Cost, Window::Day, "d", 5)]);
        for cut in [0, 1, 5, payload.len() - 1] {
            assert!(matches!(
                decode(&payload[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut extra = payload.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut version = payload;
        version[0] = 9;
        assert!(decode(&version).is_err());
    }
}
