//! The client's request body as the pipeline receives it: from hyper (HTTP/2, TLS, or
//! `listen.http1 = "hyper"`) or from Tollgate's own HTTP/1.1 server (`proxy::h1`, read by `proxy::codec`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::proxy::BoxError;
use crate::proxy::codec::body::ClientBody;

/// A request body from either server.
pub enum Inbound {
    Hyper(Incoming),
    Own(ClientBody),
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Inbound::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inbound::Own(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::Hyper(body) => body.is_end_stream(),
            Inbound::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::Hyper(body) => body.size_hint(),
            Inbound::Own(body) => body.size_hint(),
        }
    }
}
