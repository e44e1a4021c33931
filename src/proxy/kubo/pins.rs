//! `pin/add`, `pin/rm`, `pin/update` and `pin/ls` through the ledger.
//!
//! Each CID is handled on its own, in order, under its lock, as kubo itself pins arguments one
//! by one: on a failure the CIDs before it stay pinned and recorded. A new pin's size is looked
//! up on the node first (`dag/stat`, or `block/stat` for a direct pin) so the plan's limits are
//! enforced before anything is pinned. The node keeps one pin per CID: it is pinned when the
//! first account pins it and unpinned when the last holder lets go.

use std::borrow::Cow;

use bytes::Bytes;
use http::Response;
use serde_json::{Map, Value, json};

use super::args::{Query, bad, cid as parse_cid, encode};
use super::rpc::{self, Answer, passthrough};
use super::{Ctx, Kubo, refused, unrecorded};
use crate::domain::decision::{Denial, DenyCode};
use crate::meter::pins::PinInfo;
use crate::store::PinRow;

/// `pin/add?arg=<cid>...&recursive=<bool>`.
pub async fn add(kubo: &Kubo, ctx: &Ctx<'_>, q: &Query) -> Result<Response<Bytes>, Denial> {
    let cids = q.cids()?;
    let recursive = q.flag("recursive", true)?;
    let account = ctx.caller.account;
    for cid in &cids {
        let _lock = kubo.lock(cid).await;
        let held = kubo.ledger.get(account, cid);
        if held.is_some_and(|h| h.recursive || !recursive) {
            continue;
        }
        let size = match stat(ctx, cid, recursive).await? {
            Ok(size) => size,
            Err(answer) => return Ok(passthrough(answer)),
        };
        let reservation = kubo
            .ledger
            .reserve(account, cid, size, None, ctx.caller.limits)
            .map_err(refused)?;
        let query = encode([("arg", cid.into()), ("recursive", flag(recursive))]);
        let answer = rpc::call(ctx.state, ctx.rid, "pin/add", &query).await?;
        if !answer.ok() {
            return Ok(passthrough(answer));
        }
        let info = PinInfo { size, recursive };
        if let Err(err) = record(kubo, ctx, cid, info, None).await {
            undo_pin(kubo, ctx, cid).await;
            return Err(unrecorded(&err));
        }
        reservation.commit(cid, info, None);
    }
    Ok(rpc::json(&json!({ "Pins": cids })))
}

/// `pin/rm?arg=<cid>...`: only CIDs the account pinned; the node unpins a CID when its last
/// holder removes it.
pub async fn rm(kubo: &Kubo, ctx: &Ctx<'_>, q: &Query) -> Result<Response<Bytes>, Denial> {
    let cids = q.cids()?;
    let account = ctx.caller.account;
    if let Some(stranger) = cids.iter().find(|c| kubo.ledger.get(account, c).is_none()) {
        return Err(not_held(stranger));
    }
    for cid in &cids {
        let _lock = kubo.lock(cid).await;
        if kubo.ledger.get(account, cid).is_none() {
            continue; // removed meanwhile by a concurrent request of the same account
        }
        if kubo.ledger.holders(cid) == 1 {
            if let Some(answer) = unpin_on_node(ctx, cid).await? {
                return Ok(passthrough(answer));
            }
        }
        kubo.store
            .remove_pin(account, cid)
            .await
            .map_err(|e| unrecorded(&e))?;
        kubo.ledger.remove(account, cid);
    }
    Ok(rpc::json(&json!({ "Pins": cids })))
}

/// `pin/update?arg=<from>&arg=<to>&unpin=<bool>`: moves the account's pin from one CID to
/// another. The old pin's room counts as free when `unpin` is set (kubo's default).
pub async fn update(kubo: &Kubo, ctx: &Ctx<'_>, q: &Query) -> Result<Response<Bytes>, Denial> {
    let [from, to]: [String; 2] = q
        .cids()?
        .try_into()
        .map_err(|_| bad("pin/update takes two arguments: the pinned CID and the new one"))?;
    let unpin = q.flag("unpin", true)?;
    let account = ctx.caller.account;
    // Both locks, always in the same order (two requests updating a→b and b→a must not wait
    // on each other); a single lock when both CIDs share a stripe is the same mutex.
    let (first, second) = if from <= to {
        (&from, &to)
    } else {
        (&to, &from)
    };
    let _a = kubo.lock(first).await;
    let _b = if kubo.same_stripe(first, second) {
        None
    } else {
        Some(kubo.lock(second).await)
    };
    let Some(old) = kubo.ledger.get(account, &from) else {
        return Err(not_held(&from));
    };
    let size = match stat(ctx, &to, true).await? {
        Ok(size) => size,
        Err(answer) => return Ok(passthrough(answer)),
    };
    let replacing = unpin.then_some(from.as_str());
    let reservation = kubo
        .ledger
        .reserve(account, &to, size, replacing, ctx.caller.limits)
        .map_err(refused)?;
    // The node's pin of `from` goes only if no other account holds it.
    let unpin_node = unpin && kubo.ledger.holders(&from) == 1;
    let answer = if old.recursive {
        let query = encode([
            ("arg", Cow::from(from.as_str())),
            ("arg", Cow::from(to.as_str())),
            ("unpin", flag(unpin_node)),
        ]);
        rpc::call(ctx.state, ctx.rid, "pin/update", &query).await?
    } else {
        let query = encode([("arg", Cow::from(to.as_str())), ("recursive", flag(true))]);
        let answer = rpc::call(ctx.state, ctx.rid, "pin/add", &query).await?;
        if answer.ok() && unpin_node {
            // A direct pin cannot be updated by kubo; drop it now that `to` is pinned.
            if let Some(failed) = unpin_on_node(ctx, &from).await? {
                tracing::warn!(cid = %from, error = %failed.message(), "unpin after update failed");
            }
        }
        answer
    };
    if !answer.ok() {
        return Ok(passthrough(answer));
    }
    let info = PinInfo {
        size,
        recursive: true,
    };
    record(kubo, ctx, &to, info, replacing)
        .await
        .map_err(|e| unrecorded(&e))?;
    reservation.commit(&to, info, replacing);
    Ok(rpc::json(&json!({ "Pins": [from, to] })))
}

/// `pin/ls`: the account's own pins from the ledger, in kubo's shapes (`{"Keys":{..}}`, or one
/// `{"Cid","Type"}` line each with `stream=true`). Indirect pins are not tracked.
pub fn ls(kubo: &Kubo, ctx: &Ctx<'_>, q: &Query) -> Result<Response<Bytes>, Denial> {
    let kind = q.get("type").unwrap_or("all");
    if !matches!(kind, "all" | "recursive" | "direct" | "indirect") {
        return Err(bad(format!(
            "invalid type `{kind}`, must be one of {{direct, indirect, recursive, all}}"
        )));
    }
    let account = ctx.caller.account;
    let wanted = q.all("arg");
    let mut pins: Vec<(String, PinInfo)> = Vec::new();
    if wanted.is_empty() {
        pins = kubo.ledger.list(account);
    } else {
        for arg in wanted {
            let cid = parse_cid(arg)?;
            match kubo.ledger.get(account, &cid) {
                Some(info) => pins.push((cid, info)),
                None => return Ok(rpc::kubo_error(format!("path '{arg}' is not pinned"))),
            }
        }
    }
    let type_of = |info: &PinInfo| {
        if info.recursive {
            "recursive"
        } else {
            "direct"
        }
    };
    pins.retain(|(_, info)| kind == "all" || kind == type_of(info));
    if q.flag("stream", false)? {
        let mut body = String::new();
        for (cid, info) in &pins {
            body.push_str(&json!({ "Cid": cid, "Type": type_of(info), "Name": "" }).to_string());
            body.push('\n');
        }
        let mut resp = rpc::json(&Value::Null);
        *resp.body_mut() = Bytes::from(body);
        return Ok(resp);
    }
    let keys: Map<String, Value> = pins
        .iter()
        .map(|(cid, info)| (cid.clone(), json!({ "Type": type_of(info), "Name": "" })))
        .collect();
    Ok(rpc::json(&json!({ "Keys": keys })))
}

/// The size the node reports for `cid` (whole DAG, or the block for a direct pin), or the
/// node's error answer.
async fn stat(ctx: &Ctx<'_>, cid: &str, recursive: bool) -> Result<Result<u64, Answer>, Denial> {
    let (command, query) = if recursive {
        (
            "dag/stat",
            encode([("arg", cid.into()), ("progress", flag(false))]),
        )
    } else {
        ("block/stat", encode([("arg", cid.into())]))
    };
    let answer = rpc::call(ctx.state, ctx.rid, command, &query).await?;
    if !answer.ok() {
        return Ok(Err(answer));
    }
    let last = answer.last().unwrap_or(Value::Null);
    // kubo ≥ 0.22 answers `TotalSize` (with per-DAG `DagStats`), earlier ones `Size`.
    let size = rpc::size_of(last.get("TotalSize")).or_else(|| rpc::size_of(last.get("Size")));
    size.map(Ok).ok_or_else(|| {
        Denial::with_message(
            DenyCode::UpstreamUnavailable,
            format!("the node's {command} answer carried no size"),
        )
    })
}

/// Unpins `cid` on the node; `Some(answer)` if the node refused. A CID the node no longer
/// pins counts as unpinned (the ledger must be able to let go of it).
async fn unpin_on_node(ctx: &Ctx<'_>, cid: &str) -> Result<Option<Answer>, Denial> {
    // recursive=true removes a direct pin as well as a recursive one.
    let query = encode([("arg", cid.into()), ("recursive", flag(true))]);
    let answer = rpc::call(ctx.state, ctx.rid, "pin/rm", &query).await?;
    if answer.ok() || answer.message().contains("not pinned") {
        Ok(None)
    } else {
        Ok(Some(answer))
    }
}

/// Writes the account's pin to the store (removing `replacing` in the same transaction).
async fn record(
    kubo: &Kubo,
    ctx: &Ctx<'_>,
    cid: &str,
    info: PinInfo,
    replacing: Option<&str>,
) -> Result<(), crate::store::StoreError> {
    let row = PinRow {
        account_id: ctx.caller.account,
        cid: cid.to_string(),
        size: info.size,
        recursive: info.recursive,
    };
    kubo.store.put_pin(&row, replacing, ctx.caller.now).await
}

/// Takes back a pin the ledger could not record, unless another account holds the CID.
pub(super) async fn undo_pin(kubo: &Kubo, ctx: &Ctx<'_>, cid: &str) {
    if kubo.ledger.holders(cid) == 0 {
        match unpin_on_node(ctx, cid).await {
            Ok(None) => {}
            Ok(Some(answer)) => {
                tracing::error!(cid, error = %answer.message(), "could not undo an unrecorded pin")
            }
            Err(denial) => {
                tracing::error!(cid, error = %denial.message, "could not undo an unrecorded pin")
            }
        }
    }
}

fn not_held(cid: &str) -> Denial {
    Denial::with_message(
        DenyCode::PermissionDenied,
        format!("{cid} is not pinned by this account"),
    )
}

fn flag(value: bool) -> Cow<'static, str> {
    Cow::Borrowed(if value { "true" } else { "false" })
}
