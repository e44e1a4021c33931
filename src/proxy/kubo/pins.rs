//! `pin/add`, `pin/rm`, `pin/update` and `pin/ls` through the ledger.
//!
//! Each CID is handled on its own, in order, as kubo itself pins arguments one by one: on a
//! failure the CIDs before it stay pinned and recorded. A new pin's size is looked up on the
//! node first (`dag/stat`, which fetches the DAG) so the plan's limits are enforced before it
//! is pinned; the CID's lock is taken only after that, around the quick local pin and the
//! ledger write. The node keeps one recursive pin per CID: pinned when the first account pins
//! it, unpinned when the last holder lets go. Direct pins are not offered (a direct and a
//! recursive holder of one CID could not both be charged what the node keeps).
//!
//! Order of changes: a new pin is made on the node, then recorded (the store, then memory); a
//! pin that could not be recorded is taken back. A removed pin is forgotten by the ledger
//! first and unpinned on the node after, so the ledger never charges for what it let go.

use bytes::Bytes;
use http::Response;
use serde_json::{Map, Value, json};

use super::args::{Query, bad, bool_text, cid as parse_cid, encode};
use super::rpc::{self, Answer, passthrough};
use super::{Ctx, Kubo, refused, unrecorded};
use crate::domain::decision::{Denial, DenyCode};
use crate::meter::pins::{PinInfo, PinRefusal};
use crate::store::PinRow;

const RECURSIVE: PinInfo = PinInfo {
    size: 0,
    recursive: true,
};

/// `pin/add?arg=<cid>...` (recursive).
pub async fn add(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let cids = q.cids()?;
    if !q.flag("recursive", true)? {
        return Err(bad(
            "direct pins (recursive=false) are not available through the gateway",
        ));
    }
    for cid in &cids {
        if let Some(answer) = pin_one(kubo, ctx, cid).await? {
            return Ok(passthrough(answer));
        }
    }
    Ok(rpc::json(&json!({ "Pins": cids })))
}

/// Pins `cid` for the caller unless it holds it already. `Some(answer)` if the node refused.
pub(super) async fn pin_one(kubo: &Kubo, ctx: &Ctx, cid: &str) -> Result<Option<Answer>, Denial> {
    let account = ctx.caller.account;
    if kubo.ledger.get(account, cid).is_some() {
        return Ok(None);
    }
    let room = kubo.ledger.room(account, ctx.caller.limits);
    let size = match stat(ctx, cid, room).await? {
        Ok(size) => size,
        Err(answer) => return Ok(Some(answer)),
    };
    let _section = kubo.section(account, &[cid]).await?;
    if kubo.ledger.get(account, cid).is_some() {
        return Ok(None); // pinned meanwhile by a concurrent request of the same account
    }
    pin_sized(kubo, ctx, cid, size, None).await
}

/// Pins `cid` of `size` bytes for the caller, in place of its pin `replacing` if given (whose
/// room then counts as free). The caller holds the lock of both CIDs.
async fn pin_sized(
    kubo: &Kubo,
    ctx: &Ctx,
    cid: &str,
    size: u64,
    replacing: Option<&str>,
) -> Result<Option<Answer>, Denial> {
    let account = ctx.caller.account;
    let reservation = kubo
        .ledger
        .reserve(account, cid, size, replacing, ctx.caller.limits)
        .map_err(refused)?;
    let newly_on_node = kubo.ledger.holders(cid) == 0;
    let query = encode([("arg", cid.into()), ("recursive", bool_text(true))]);
    let answer = rpc::call(&ctx.upstream, &ctx.rid, "pin/add", &query).await?;
    if !answer.ok() {
        return Ok(Some(answer));
    }
    let info = PinInfo { size, ..RECURSIVE };
    if let Err(err) = record(kubo, ctx, cid, info, replacing).await {
        if newly_on_node {
            unpin_orphan(ctx, cid).await;
        }
        return Err(unrecorded(&err));
    }
    reservation.commit(cid, info, replacing);
    Ok(None)
}

/// `pin/rm?arg=<cid>...`: only CIDs the account pinned; the node unpins a CID when its last
/// holder removes it.
pub async fn rm(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let cids = q.cids()?;
    let account = ctx.caller.account;
    if let Some(stranger) = cids.iter().find(|c| kubo.ledger.get(account, c).is_none()) {
        return Err(not_held(stranger));
    }
    for cid in &cids {
        let _section = kubo.section(account, &[cid]).await?;
        release(kubo, ctx, cid).await?;
    }
    Ok(rpc::json(&json!({ "Pins": cids })))
}

/// Forgets the caller's pin of `cid` (store, then memory) and unpins it on the node if no one
/// else holds it. The caller holds the CID's lock.
async fn release(kubo: &Kubo, ctx: &Ctx, cid: &str) -> Result<(), Denial> {
    let account = ctx.caller.account;
    if kubo.ledger.get(account, cid).is_none() {
        return Ok(()); // removed meanwhile by a concurrent request of the same account
    }
    kubo.store
        .remove_pin(account, cid)
        .await
        .map_err(|e| unrecorded(&e))?;
    kubo.ledger.remove(account, cid);
    if kubo.ledger.holders(cid) == 0 {
        unpin_orphan(ctx, cid).await;
    }
    Ok(())
}

/// `pin/update?arg=<from>&arg=<to>&unpin=<bool>`: moves the account's pin from one CID to
/// another. The old pin's room counts as free when `unpin` is set (kubo's default). On the
/// node, `to` is pinned first, and `from` unpinned after the ledger let go of it, only if no
/// other account holds it.
pub async fn update(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let [from, to]: [String; 2] = q
        .cids()?
        .try_into()
        .map_err(|_| bad("pin/update takes two arguments: the pinned CID and the new one"))?;
    if from == to {
        return Err(bad("pin/update needs two different CIDs"));
    }
    let unpin = q.flag("unpin", true)?;
    let account = ctx.caller.account;
    if kubo.ledger.get(account, &from).is_none() {
        return Err(not_held(&from));
    }
    if !unpin {
        return match pin_one(kubo, ctx, &to).await? {
            Some(answer) => Ok(passthrough(answer)),
            None => Ok(rpc::json(&json!({ "Pins": [from, to] }))),
        };
    }
    // The old pin's room counts as free for the new one.
    let freed = kubo.ledger.get(account, &from).map_or(0, |p| p.size);
    let room = kubo
        .ledger
        .room(account, ctx.caller.limits)
        .map(|r| r.saturating_add(freed));
    let size = match stat(ctx, &to, room).await? {
        Ok(size) => size,
        Err(answer) => return Ok(passthrough(answer)),
    };
    let _section = kubo.section(account, &[&from, &to]).await?;
    if kubo.ledger.get(account, &from).is_none() {
        return Err(not_held(&from));
    }
    if let Some(answer) = pin_sized(kubo, ctx, &to, size, Some(&from)).await? {
        return Ok(passthrough(answer));
    }
    // The store and the ledger no longer hold `from` for this account.
    if kubo.ledger.holders(&from) == 0 {
        unpin_orphan(ctx, &from).await;
    }
    Ok(rpc::json(&json!({ "Pins": [from, to] })))
}

/// `pin/ls`: the account's own pins from the ledger, in kubo's shapes (`{"Keys":{..}}`, or one
/// `{"Cid","Type"}` line each with `stream=true`). Indirect pins are not tracked.
pub fn ls(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
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

/// The DAG size the node reports for `cid`, or the node's error. The look-up fetches the DAG:
/// it is followed as it goes (`progress=true`, a running total per block) and stopped once the
/// total passes `room`, the bytes the account may still pin, so a DAG too large for the plan
/// is refused (429) without being fetched to the end.
async fn stat(ctx: &Ctx, cid: &str, room: Option<u64>) -> Result<Result<u64, Answer>, Denial> {
    let query = encode([("arg", cid.into()), ("progress", bool_text(true))]);
    let fits = |v: &Value| match (room, dag_size(v)) {
        (Some(room), Some(size)) => size <= room,
        _ => true,
    };
    let last = match rpc::call_streamed(&ctx.upstream, &ctx.rid, "dag/stat", &query, fits).await? {
        Err(answer) => return Ok(Err(answer)),
        Ok(None) => {
            let limit = ctx.caller.limits.bytes.unwrap_or_default();
            return Err(refused(PinRefusal::Bytes { limit }));
        }
        Ok(Some(last)) => last,
    };
    if last.get("Type").and_then(Value::as_str) == Some("error") {
        return Ok(Err(Answer {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            content_type: None,
            body: Bytes::from(last.to_string()),
        }));
    }
    // A zero `TotalSize` is left out of kubo's answer (its per-DAG `DagStats` stay).
    let size = dag_size(&last).or_else(|| last.get("DagStats").map(|_| 0));
    size.map(Ok).ok_or_else(|| {
        Denial::with_message(
            DenyCode::UpstreamUnavailable,
            "the node's dag/stat answer carried no size",
        )
    })
}

/// The (running) size of a `dag/stat` object: `TotalSize` from kubo 0.22, `Size` before.
fn dag_size(v: &Value) -> Option<u64> {
    rpc::size_of(v.get("TotalSize")).or_else(|| rpc::size_of(v.get("Size")))
}

/// Unpins a CID no account holds any more. A CID the node no longer pins is fine; any other
/// failure leaves a pin on the node that no plan pays for, so it is logged for the operator.
pub(super) async fn unpin_orphan(ctx: &Ctx, cid: &str) {
    let query = encode([("arg", cid.into()), ("recursive", bool_text(true))]);
    match rpc::call(&ctx.upstream, &ctx.rid, "pin/rm", &query).await {
        Ok(answer) if answer.ok() || answer.message().contains("not pinned") => {}
        Ok(answer) => {
            tracing::error!(cid, error = %answer.message(), "could not unpin a CID no account holds")
        }
        Err(denial) => {
            tracing::error!(cid, error = %denial.message, "could not unpin a CID no account holds")
        }
    }
}

/// Writes the account's pin to the store (removing `replacing` in the same transaction).
async fn record(
    kubo: &Kubo,
    ctx: &Ctx,
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

fn not_held(cid: &str) -> Denial {
    Denial::with_message(
        DenyCode::PermissionDenied,
        format!("{cid} is not pinned by this account"),
    )
}
