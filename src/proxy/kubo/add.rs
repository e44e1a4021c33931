//! `add` with `pin=true` (kubo's default): the upload streams through as any other, but room
//! for one more pin of the upload's size is reserved first, and the root kubo reports (the
//! last `{"Hash","Size"}` line of its answer) is recorded before the answer goes back.
//!
//! The reserved size is the upload's `Content-Length`; an upload of unknown length may use the
//! rest of the plan's pinned bytes and is cut (413) beyond it. The recorded size is kubo's own
//! `Size` of the root, which for UnixFS differs from the upload by a few bytes per block.
//! With several top-level files and no `wrap-with-directory`, the last root kubo reports is
//! the one recorded.

use http::Response;
use http::header::{CONTENT_LENGTH, TRAILER};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::args::Query;
use super::rpc::{self, size_of};
use super::{Caller, Ctx, Kubo, refused, unrecorded};
use crate::domain::decision::{Denial, DenyCode};
use crate::meter::pins::{PinInfo, PinReservation};
use crate::proxy::ProxyBody;

/// The largest `add` answer kept in memory (one line per file and per progress report).
const MAX_ANSWER: usize = 16 << 20;

/// A pinned `add` in flight.
#[derive(Debug)]
pub struct AddPin {
    reservation: PinReservation,
    /// The upload's cap when its length was unknown: the plan's remaining pinned bytes.
    pub body_limit: Option<u64>,
}

impl Kubo {
    /// Reserves room for what an `add` will pin; `None` if it does not pin.
    pub fn reserve_add(
        &self,
        caller: &Caller,
        query: &Query,
        content_length: Option<u64>,
    ) -> Result<Option<AddPin>, Denial> {
        if !query.flag("pin", true)? || query.flag("only-hash", false)? {
            return Ok(None);
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
        Ok(Some(AddPin {
            reservation,
            body_limit,
        }))
    }

    /// Reads kubo's answer to a pinned `add`, records the root it pinned, and returns the
    /// answer. An answer other than 200 records nothing.
    pub async fn finish_add(
        &self,
        ctx: &Ctx<'_>,
        add: AddPin,
        resp: Response<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Denial> {
        if !resp.status().is_success() {
            return Ok(resp);
        }
        let (mut head, body) = resp.into_parts();
        let body = read_capped(body, MAX_ANSWER).await.ok_or_else(|| {
            Denial::with_message(
                DenyCode::UpstreamUnavailable,
                "the node's add answer broke off or was too large",
            )
        })?;
        if let Some((cid, size)) = root(&body) {
            self.record_root(ctx, add.reservation, &cid, size).await?;
        }
        head.headers.remove(TRAILER);
        head.headers.insert(CONTENT_LENGTH, body.len().into());
        let body = Full::new(body).map_err(|never| match never {}).boxed();
        Ok(Response::from_parts(head, body))
    }

    async fn record_root(
        &self,
        ctx: &Ctx<'_>,
        reservation: PinReservation,
        cid: &str,
        size: u64,
    ) -> Result<(), Denial> {
        let _lock = self.lock(cid).await;
        // The node pinned the root during the upload, outside this CID's lock: a concurrent
        // pin/rm by its last other holder may have unpinned it since. Pinning again under the
        // lock is instant for local content and makes the ledger true.
        let query = super::args::encode([("arg", cid.into())]);
        let answer = rpc::call(ctx.state, ctx.rid, "pin/add", &query).await?;
        if !answer.ok() {
            return Err(Denial::with_message(
                DenyCode::UpstreamUnavailable,
                format!(
                    "the node could not pin the added root: {}",
                    answer.message()
                ),
            ));
        }
        let info = PinInfo {
            size,
            recursive: true,
        };
        let row = crate::store::PinRow {
            account_id: ctx.caller.account,
            cid: cid.to_string(),
            size,
            recursive: true,
        };
        if let Err(err) = self.store.put_pin(&row, None, ctx.caller.now).await {
            super::pins::undo_pin(self, ctx, cid).await;
            return Err(unrecorded(&err));
        }
        reservation.commit(cid, info, None);
        Ok(())
    }
}

/// The whole body, or `None` if it fails or grows beyond `cap` bytes.
async fn read_capped(mut body: ProxyBody, cap: usize) -> Option<bytes::Bytes> {
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

/// The root of an `add` answer: the last line with a `Hash`, and its `Size`.
fn root(body: &[u8]) -> Option<(String, u64)> {
    body.split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .find_map(|v| {
            let cid = super::args::cid(v.get("Hash")?.as_str()?).ok()?;
            Some((cid, size_of(v.get("Size")).unwrap_or(0)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_last_hashed_line() {
        let body = b"{\"Name\":\"a\",\"Bytes\":262144}\n\
            {\"Name\":\"a\",\"Hash\":\"QmFileAaaaaaaa\",\"Size\":\"300000\"}\n\
            {\"Name\":\"\",\"Hash\":\"QmDirBbbbbbbbb\",\"Size\":\"300059\"}\n";
        assert_eq!(root(body), Some(("QmDirBbbbbbbbb".into(), 300_059)));
        assert_eq!(root(b"{\"Name\":\"a\",\"Bytes\":1}\n"), None);
    }
}
