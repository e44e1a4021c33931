//! Metering bodies: wrap a request or response body, count every data byte that passes into
//! the request's holds (and the Prometheus byte counter), and own whatever the request holds
//! so it is settled when the body ends or is dropped midway.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;

use super::admit::Ticket;
use super::hold::Hold;

/// A body whose data bytes are recorded on `holds` as they stream.
pub struct MeteredBody<B> {
    inner: B,
    holds: Vec<Hold>,
    counter: IntCounter,
    /// Kept alive until the body is done (concurrency slot, cost settlement).
    _ticket: Option<Ticket>,
}

impl<B> MeteredBody<B> {
    /// Meters `inner` into `holds`; `ticket` (if any) is released when this body is dropped.
    pub fn new(inner: B, holds: Vec<Hold>, counter: IntCounter, ticket: Option<Ticket>) -> Self {
        MeteredBody {
            inner,
            holds,
            counter,
            _ticket: ticket,
        }
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            if n > 0 {
                for hold in &mut this.holds {
                    hold.record(n);
                }
                this.counter.inc_by(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
