//! IPNS names per account. kubo keeps one keystore for the whole node, so each account's names
//! are stored there as `tg-<account id>-<name>` and shown back without the prefix: an account
//! lists, publishes with, renames and removes only its own names, and never the node's `self`.
//! Each name counts against the plan's `ipns_limit` from `key/gen` until `key/rm`.

use std::borrow::Cow;

use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::args::{self, Query, bad, encode};
use super::rpc::{self, passthrough};
use super::{Ctx, Kubo, refused, unrecorded};
use crate::domain::decision::{Denial, DenyCode};

/// The options of each key command passed on to the node as they came.
const GEN_OPTIONS: [&str; 3] = ["type", "size", "ipns-base"];
const LIST_OPTIONS: [&str; 2] = ["l", "ipns-base"];
const PUBLISH_OPTIONS: [&str; 9] = [
    "arg",
    "key",
    "resolve",
    "lifetime",
    "ttl",
    "quieter",
    "allow-offline",
    "allow-delegated",
    "ipns-base",
];

/// `key/gen?arg=<name>`: a new name, within the plan's limit.
pub async fn gen_key(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let account = ctx.caller.account;
    let name = args::name(
        q.get("arg")
            .ok_or_else(|| bad("argument `arg` (the key name) is required"))?,
    )?;
    let node_name = on_node(account, name);
    let _section = kubo.section(account, &[&node_name]).await?;
    if !kubo
        .ledger
        .claim_name(account, name, ctx.caller.names)
        .map_err(refused)?
    {
        return Ok(rpc::kubo_error(format!(
            "key with name '{name}' already exists"
        )));
    }
    let mut pairs = vec![("arg", Cow::from(node_name.as_str()))];
    pairs.extend(options(q, &GEN_OPTIONS));
    let query = encode(pairs);
    let answer = match rpc::call(&ctx.upstream, &ctx.rid, "key/gen", &query).await {
        Ok(answer) if answer.ok() => answer,
        failed => {
            kubo.ledger.release_name(account, name);
            return failed.map(passthrough);
        }
    };
    if let Err(err) = kubo.store.put_ipns(account, name, ctx.caller.now).await {
        kubo.ledger.release_name(account, name);
        let query = encode([("arg", Cow::from(node_name.as_str()))]);
        let _ = rpc::call(&ctx.upstream, &ctx.rid, "key/rm", &query).await;
        return Err(unrecorded(&err));
    }
    let id = answer
        .last()
        .and_then(|v| v.get("Id").cloned())
        .unwrap_or(Value::Null);
    Ok(rpc::json(&json!({ "Name": name, "Id": id })))
}

/// `key/list`: the account's names only, without the prefix.
pub async fn list(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let query = encode(options(q, &LIST_OPTIONS));
    let answer = rpc::call(&ctx.upstream, &ctx.rid, "key/list", &query).await?;
    if !answer.ok() {
        return Ok(passthrough(answer));
    }
    let account = ctx.caller.account;
    let keys = own_keys(kubo, account, answer.last().as_ref());
    Ok(rpc::json(&json!({ "Keys": keys })))
}

/// `key/rm?arg=<name>...`: removes names the account owns.
pub async fn rm(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let account = ctx.caller.account;
    let names = q.all("arg");
    if names.is_empty() {
        return Err(bad("argument `arg` (the key name) is required"));
    }
    if let Some(stranger) = names.iter().find(|n| !kubo.ledger.owns_name(account, n)) {
        return Err(not_owned(stranger));
    }
    // One name at a time, as kubo removes them: a failure leaves the earlier ones removed and
    // forgotten, the later ones kept and counted.
    let mut keys = Vec::new();
    for name in &names {
        let node_name = on_node(account, name);
        let _section = kubo.section(account, &[&node_name]).await?;
        if !kubo.ledger.owns_name(account, name) {
            continue; // removed meanwhile by a concurrent request of the same account
        }
        let query = encode([("arg", Cow::from(node_name.as_str()))]);
        let answer = rpc::call(&ctx.upstream, &ctx.rid, "key/rm", &query).await?;
        if !answer.ok() && !answer.message().contains("no key named") {
            return Ok(passthrough(answer));
        }
        kubo.store
            .remove_ipns(account, name)
            .await
            .map_err(|e| unrecorded(&e))?;
        kubo.ledger.release_name(account, name);
        keys.extend(own_keys_unchecked(account, answer.last().as_ref()));
    }
    Ok(rpc::json(&json!({ "Keys": keys })))
}

/// `key/rename?arg=<old>&arg=<new>[&force=true]`: a rename keeps the count.
pub async fn rename(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let account = ctx.caller.account;
    let [old, new]: [&str; 2] = q
        .all("arg")
        .try_into()
        .map_err(|_| bad("key/rename takes two arguments: the name and the new name"))?;
    let new = args::name(new)?;
    if old == new {
        return Err(bad("key/rename needs a new name"));
    }
    let (old_node, new_node) = (on_node(account, old), on_node(account, new));
    let _section = kubo.section(account, &[&old_node, &new_node]).await?;
    if !kubo.ledger.owns_name(account, old) {
        return Err(not_owned(old));
    }
    let force = q.flag("force", false)?;
    if kubo.ledger.owns_name(account, new) && !force {
        return Ok(rpc::kubo_error(format!(
            "key by that name already exists, refusing to overwrite: {new}"
        )));
    }
    let query = encode([
        ("arg", Cow::from(old_node.as_str())),
        ("arg", Cow::from(new_node.as_str())),
        ("force", args::bool_text(force)),
    ]);
    let answer = rpc::call(&ctx.upstream, &ctx.rid, "key/rename", &query).await?;
    if !answer.ok() {
        return Ok(passthrough(answer));
    }
    let store = &kubo.store;
    store
        .put_ipns(account, new, ctx.caller.now)
        .await
        .map_err(|e| unrecorded(&e))?;
    store
        .remove_ipns(account, old)
        .await
        .map_err(|e| unrecorded(&e))?;
    kubo.ledger.release_name(account, old);
    // Owned before the call and one name was just released: this cannot hit the limit.
    let _ = kubo.ledger.claim_name(account, new, None);
    let mut out = answer.last().unwrap_or(Value::Null);
    out["Was"] = json!(old);
    out["Now"] = json!(new);
    Ok(rpc::json(&out))
}

/// `name/publish?arg=<path>&key=<name>`: only under one of the account's names.
pub async fn publish(kubo: &Kubo, ctx: &Ctx, q: &Query) -> Result<Response<Bytes>, Denial> {
    let account = ctx.caller.account;
    let key = match q.get("key") {
        None | Some("self") => {
            return Err(Denial::with_message(
                DenyCode::PermissionDenied,
                "name/publish needs `key=<name>`, a name made with key/gen; the node's own key \
                 is not available through the gateway",
            ));
        }
        Some(key) => key,
    };
    if !kubo.ledger.owns_name(account, key) {
        return Err(not_owned(key));
    }
    let node_name = on_node(account, key);
    let query = encode(
        q.pairs()
            .filter(|(k, _)| PUBLISH_OPTIONS.contains(k))
            .map(|(k, v)| {
                let v = if k == "key" { node_name.as_str() } else { v };
                (k, Cow::from(v))
            }),
    );
    let answer = rpc::call(&ctx.upstream, &ctx.rid, "name/publish", &query).await?;
    Ok(passthrough(answer))
}

/// The node's name of an account's IPNS name.
fn on_node(account: Uuid, name: &str) -> String {
    format!("tg-{}-{name}", account.simple())
}

/// The `{"Name","Id"}` entries of a key answer that are the account's, renamed back.
fn own_keys(kubo: &Kubo, account: Uuid, answer: Option<&Value>) -> Vec<Value> {
    own_keys_unchecked(account, answer)
        .into_iter()
        .filter(|k| {
            k.get("Name")
                .and_then(Value::as_str)
                .is_some_and(|n| kubo.ledger.owns_name(account, n))
        })
        .collect()
}

/// Like [`own_keys`], by prefix only.
fn own_keys_unchecked(account: Uuid, answer: Option<&Value>) -> Vec<Value> {
    let prefix = on_node(account, "");
    let keys = answer
        .and_then(|v| v.get("Keys"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    keys.into_iter()
        .filter_map(|mut k| {
            let name = k.get("Name")?.as_str()?.strip_prefix(&prefix)?.to_string();
            k["Name"] = json!(name);
            Some(k)
        })
        .collect()
}

/// The given options of the request, for the node.
fn options<'a>(q: &'a Query, names: &'a [&str]) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
    q.pairs()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k, Cow::from(v)))
}

fn not_owned(name: &str) -> Denial {
    Denial::with_message(
        DenyCode::PermissionDenied,
        format!("`{name}` is not an IPNS name of this account"),
    )
}
