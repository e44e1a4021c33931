//! The request body on its way upstream: metered, capped at `limits.max_request_body`, and
//! reporting how it ended, so the response deadline starts only once the upload is complete
//! and a failed exchange is blamed on the right party (413 too large, 400 client gone, 502/504
//! upstream) whatever protocol the upstream speaks.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus::IntCounter;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::domain::decision::{Denial, DenyCode};
use crate::meter::hold::Holds;
use crate::proxy::BoxError;

/// How the upload ended, as far as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Upload {
    Streaming = 0,
    Complete = 1,
    TooLarge = 2,
    ClientFailed = 3,
    /// The client paused longer than `limits.body_idle_timeout`.
    Stalled = 4,
}

/// Shared view of the upload's state.
#[derive(Debug, Default)]
pub struct UploadState {
    state: AtomicU8,
    changed: Notify,
}

impl UploadState {
    /// A state for a body already read in full.
    pub fn completed() -> Arc<Self> {
        let state = Arc::new(UploadState::default());
        state.set(Upload::Complete);
        state
    }

    /// The current state.
    pub fn get(&self) -> Upload {
        match self.state.load(Ordering::Acquire) {
            1 => Upload::Complete,
            2 => Upload::TooLarge,
            3 => Upload::ClientFailed,
            4 => Upload::Stalled,
            _ => Upload::Streaming,
        }
    }

    fn set(&self, to: Upload) {
        if self
            .state
            .compare_exchange(0, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.changed.notify_waiters();
        }
    }

    /// Resolves once the upload is no longer streaming.
    pub async fn finished(&self) -> Upload {
        loop {
            let notified = self.changed.notified();
            let now = self.get();
            if now != Upload::Streaming {
                return now;
            }
            notified.await;
        }
    }
}

/// The body "request body too large" error.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than the configured limit")]
pub struct TooLarge;

/// The body "request body stalled" error.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled longer than the configured idle timeout")]
pub struct Stalled;

/// The client's request body, metered, capped in size and in idle time.
pub struct RequestBody {
    inner: Incoming,
    holds: Holds,
    counter: IntCounter,
    limit: u64,
    seen: u64,
    state: Arc<UploadState>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the last poll found the client had nothing to send: only that time counts as
    /// idle (a pause because the upstream is slow to read must not trip the timer).
    waiting: bool,
}

impl RequestBody {
    /// Wraps `inner`; `state` reports how it ends. The body fails once no data arrives for
    /// `idle`.
    pub fn new(
        inner: Incoming,
        holds: Holds,
        counter: IntCounter,
        limit: u64,
        idle: Duration,
    ) -> (Self, Arc<UploadState>) {
        let state = Arc::new(UploadState::default());
        if inner.is_end_stream() {
            state.set(Upload::Complete);
        }
        let body = RequestBody {
            inner,
            holds,
            counter,
            limit,
            seen: 0,
            state: state.clone(),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        };
        (body, state)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.timer.as_mut().reset(Instant::now() + this.idle);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.waiting = polled.is_pending();
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.seen = this.seen.saturating_add(n);
                if this.seen > this.limit {
                    this.state.set(Upload::TooLarge);
                    return Poll::Ready(Some(Err(Box::new(TooLarge))));
                }
                for hold in &mut this.holds {
                    hold.record(n);
                }
                this.counter.inc_by(n);
                if this.inner.is_end_stream() {
                    this.state.set(Upload::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.state.set(Upload::ClientFailed);
                Poll::Ready(Some(Err(Box::new(err))))
            }
            Poll::Ready(None) => {
                this.state.set(Upload::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.state.set(Upload::Stalled);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // Dropped unfinished (the upstream answered early or the exchange failed): whatever
        // waits for the upload must not wait forever.
        self.state.set(Upload::Complete);
    }
}

/// Reads a (small) request body in full, within `limit` bytes and `within` time.
pub async fn read_whole(body: Incoming, limit: u64, within: Duration) -> Result<Bytes, Denial> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let collected = http_body_util::Limited::new(body, limit).collect();
    let Ok(collected) = tokio::time::timeout(within, collected).await else {
        return Err(Denial::with_message(
            DenyCode::BadRequest,
            "the request body was not received in time",
        ));
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(Denial::new(DenyCode::PayloadTooLarge))
        }
        Err(_) => Err(Denial::with_message(
            DenyCode::BadRequest,
            "the request body ended with an error",
        )),
    }
}
