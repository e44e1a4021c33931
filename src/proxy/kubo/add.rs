//! `add` through the ledger. kubo is never asked to pin during an `add` (its own pin would
//! happen outside the ledger, and a client hanging up, `silent` output or a root Tollgate could
//! not read would leave a pin no plan pays for): the upload is forwarded with `pin=false`, and
//! when the client asked for a pin (kubo's default) each root kubo reports is then pinned
//! through the ledger like a `pin/add`, with its real size checked against the plan, before the
//! answer goes back.
//!
//! Before the upload starts, one more pin and the upload's `Content-Length` must fit the plan;
//! an upload of unknown length may use the rest of the plan's pinned bytes and is cut (413)
//! beyond it. The roots are the wrapping directory (`wrap-with-directory`), or else every
//! top-level entry kubo reports.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http::header::{CONTENT_LENGTH, TRAILER};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::args::{self, Query, bad};
use super::rpc::passthrough;
use super::{Caller, Ctx, Kubo, refused};
use crate::domain::decision::{Denial, DenyCode};
use crate::meter::pins::PinReservation;
use crate::proxy::ProxyBody;

/// The largest `add` answer kept in memory (one line per file and per progress report).
const MAX_ANSWER: usize = 16 << 20;

/// Options of `add` not passed on: kubo's own pinning, and output modes that hide the roots.
const DROPPED: [&str; 5] = ["pin", "pin-name", "silent", "quiet", "quieter"];

/// How one `add` goes through.
#[derive(Debug)]
pub struct AddPlan {
    /// The query forwarded to the node.
    pub query: String,
    /// Room reserved for the upload, when the client asked for a pin.
    pin: Option<PinReservation>,
    /// The upload's cap when its length was unknown: the plan's remaining pinned bytes.
    pub body_limit: Option<u64>,
}

impl Kubo {
    /// Checks an `add` before its upload and rewrites its query. `can_pin`: the key holds
    /// `pin` (needed unless `pin=false`, since `add` pins by default).
    pub fn plan_add(
        &self,
        caller: &Caller,
        query: &Query,
        content_length: Option<u64>,
        can_pin: bool,
    ) -> Result<AddPlan, Denial> {
        if query.get("to-files").is_some() {
            return Err(bad(
                "`to-files` is not available through the gateway (the node's MFS is shared)",
            ));
        }
        if query.get("encoding").is_some_and(|e| e != "json") {
            return Err(bad(
                "only `encoding=json` answers are available through the gateway",
            ));
        }
        let mut pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = query
            .pairs()
            .filter(|(k, _)| !DROPPED.contains(k))
            .map(|(k, v)| (k, v.into()))
            .collect();
        pairs.push(("pin", "false".into()));
        let query_out = args::encode(pairs);
        let wants_pin = query.flag("pin", true)? && !query.flag("only-hash", false)?;
        if !wants_pin {
            return Ok(AddPlan {
                query: query_out,
                pin: None,
                body_limit: None,
            });
        }
        if !can_pin {
            return Err(Denial::with_message(
                DenyCode::PermissionDenied,
                "add pins by default: the key needs the `pin` permission, or send pin=false",
            ));
        }
        let room = self.ledger.room(caller.account, caller.limits);
        let (bytes, body_limit) = match (content_length, room) {
            (Some(len), _) => (len, None),
            (None, Some(room)) => (room, Some(room)),
            (None, None) => (0, None),
        };
        // No CID is known yet: the empty name is never held, so one more pin is counted.
        let reservation = self
            .ledger
            .reserve(caller.account, "", bytes, None, caller.limits)
            .map_err(refused)?;
        Ok(AddPlan {
            query: query_out,
            pin: Some(reservation),
            body_limit,
        })
    }

    /// Pins the roots of a successful `add` the client wanted pinned, then returns kubo's
    /// answer (read in full). Other answers pass through as they stream.
    pub async fn finish_add(
        self: &Arc<Self>,
        ctx: Ctx,
        plan: AddPlan,
        resp: Response<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Denial> {
        let Some(reservation) = plan.pin else {
            return Ok(resp);
        };
        if !resp.status().is_success() {
            return Ok(resp);
        }
        let (mut head, body) = resp.into_parts();
        let body = read_capped(body, MAX_ANSWER).await.ok_or_else(|| {
            Denial::with_message(
                DenyCode::UpstreamUnavailable,
                "the node's add answer broke off or was too large; nothing was pinned",
            )
        })?;
        // The upload is over: each root now needs room of its own, at its real size.
        drop(reservation);
        let roots = roots(&body);
        let kubo = self.clone();
        // Pinning runs to its end even if the client hangs up meanwhile.
        let pinned = tokio::spawn(async move {
            for root in &roots {
                if let Some(answer) = super::pins::pin_one(&kubo, &ctx, root).await? {
                    return Ok(Some(answer));
                }
            }
            Ok(None)
        });
        let failed = pinned.await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "kubo add pinning task failed");
            Err(Denial::new(DenyCode::UpstreamUnavailable))
        })?;
        if let Some(answer) = failed {
            let resp = passthrough(answer);
            return Ok(resp.map(|b| Full::new(b).map_err(|never| match never {}).boxed()));
        }
        head.headers.remove(TRAILER);
        head.headers.insert(CONTENT_LENGTH, body.len().into());
        let body = Full::new(body).map_err(|never| match never {}).boxed();
        Ok(Response::from_parts(head, body))
    }
}

/// The whole body, or `None` if it fails or grows beyond `cap` bytes.
async fn read_capped(mut body: ProxyBody, cap: usize) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if buf.len() + data.len() > cap {
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

/// The roots of an `add` answer, as canonical CIDs: the wrapping directory (`"Name":""`) if
/// there is one, else every top-level entry (a name without `/`), each once, in order.
fn roots(body: &[u8]) -> Vec<String> {
    let entries: Vec<(String, String)> = body
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|v| {
            let cid = args::cid(v.get("Hash")?.as_str()?).ok()?;
            Some((v.get("Name")?.as_str()?.to_string(), cid))
        })
        .collect();
    if let Some((_, cid)) = entries.iter().rev().find(|(name, _)| name.is_empty()) {
        return vec![cid.clone()];
    }
    let mut roots: Vec<String> = Vec::new();
    for (name, cid) in entries.into_iter().rev() {
        if !name.contains('/') && !roots.contains(&cid) {
            roots.push(cid);
        }
    }
    roots.reverse();
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n";
    const B: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

    #[test]
    fn roots_are_the_wrapper_or_the_top_level_entries() {
        let line =
            |name: &str, hash: &str| format!("{{\"Name\":\"{name}\",\"Hash\":\"{hash}\"}}\n");
        let two_files = format!(
            "{{\"Name\":\"a\",\"Bytes\":9}}\n{}{}",
            line("a", A),
            line("b", B)
        );
        assert_eq!(roots(two_files.as_bytes()), vec![A, B]);
        let wrapped = format!("{}{}", line("a", A), line("", B));
        assert_eq!(roots(wrapped.as_bytes()), vec![B]);
        let dir = format!("{}{}", line("d/a", A), line("d", B));
        assert_eq!(roots(dir.as_bytes()), vec![B]);
        assert!(roots(b"{\"Name\":\"a\",\"Bytes\":1}\n").is_empty());
    }
}
