//! Metering bodies: wrap a request or response body, count every data byte that passes into
//! the request's holds (and the Prometheus byte counter), and own whatever the request holds
//! so it is settled when the body ends or is dropped midway.
//!
//! A response body may also carry an [`Observe`]r (the LLM profiles' usage reader): it sees
//! every data chunk, may rewrite it (hide a chunk the client did not ask for), and sets the
//! request's real cost on the ticket just before the ticket is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;

use super::admit::Ticket;
use super::hold::Holds;

/// Reads a response body as it streams, to settle its cost.
pub trait Observe: Send + Sync {
    /// Sees one data chunk on its way to the client; returns what the client gets instead
    /// (the same bytes, or fewer when part is held back or hidden).
    fn chunk(&mut self, data: Bytes) -> Bytes;
    /// The body ended: returns the bytes still held back.
    fn end(&mut self) -> Bytes;
    /// Sets the request's real cost on `ticket`; called once, when the body is dropped
    /// (finished or not).
    fn settle(&mut self, ticket: &mut Ticket);
}

/// A body whose data bytes are recorded on `holds` as they stream.
pub struct MeteredBody<B> {
    inner: B,
    holds: Holds,
    counter: IntCounter,
    /// Kept alive until the body is done (concurrency slot, cost settlement).
    ticket: Option<Ticket>,
    observer: Option<Box<dyn Observe>>,
    ended: bool,
}

impl<B> MeteredBody<B> {
    /// Meters `inner` into `holds`; `ticket` (if any) is released when this body is dropped.
    pub fn new(inner: B, holds: Holds, counter: IntCounter, ticket: Option<Ticket>) -> Self {
        MeteredBody {
            inner,
            holds,
            counter,
            ticket,
            observer: None,
            ended: false,
        }
    }

    /// Adds an observer that sees (and may rewrite) the data and settles the cost.
    pub fn observed(mut self, observer: Box<dyn Observe>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn count(&mut self, n: u64) {
        if n > 0 {
            for hold in &mut self.holds {
                hold.record(n);
            }
            self.counter.inc_by(n);
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
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    this.ended = true;
                    let rest = this.observer.as_mut().map(|o| o.end()).unwrap_or_default();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    this.count(rest.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                other => return other,
            };
            let frame = match (&mut this.observer, frame.into_data()) {
                (Some(observer), Ok(data)) => {
                    let out = observer.chunk(data);
                    if out.is_empty() {
                        // Everything held back: wait for more.
                        continue;
                    }
                    Frame::data(out)
                }
                (None, Ok(data)) => Frame::data(data),
                (_, Err(frame)) => frame,
            };
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            this.count(n);
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.observer {
            // Held-back bytes may still be due after the inner body's end.
            Some(_) => self.ended,
            None => self.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.observer {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let (Some(observer), Some(ticket)) = (&mut self.observer, &mut self.ticket) {
            observer.settle(ticket);
        }
    }
}
