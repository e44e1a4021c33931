//! The request body on its way upstream: metered, capped at `limits.max_request_body`, paced
//! (`limits.body_idle_timeout` between two pieces, `limits.body_min_rate` on average), and
//! reporting how it ended, so the response deadline starts only once the upload is complete
//! and a failed exchange is blamed on the right party (413 too large, 400 client gone, 502/504
//! upstream) whatever protocol the upstream speaks.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use crate::proxy::inbound::Inbound;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus::IntCounter;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::domain::decision::{Denial, DenyCode};
use crate::meter::hold::Holds;
use crate::proxy::BoxError;
use crate::proxy::framing;

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
    /// The body came slower than `limits.body_min_rate`.
    TooSlow = 5,
}

/// How fast a client must send a request body. Only time spent waiting on the client counts
/// (a pause because the upstream reads slowly is not the client's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The longest wait for the next piece.
    pub idle: Duration,
    /// The slowest average, bytes per second, after `grace` of waiting (0: none).
    pub min_rate: u64,
    pub grace: Duration,
}

impl Pace {
    /// How long the client may have been waited on in all once `seen` bytes arrived.
    fn allowance(&self, seen: u64) -> Duration {
        if self.min_rate == 0 {
            return Duration::MAX;
        }
        let earned = Duration::from_secs_f64(seen as f64 / self.min_rate as f64);
        self.grace.saturating_add(earned)
    }
}

/// The clock of one upload's pace: the time waited on the client so far.
#[derive(Debug)]
struct PaceClock {
    pace: Pace,
    waited: Duration,
    /// When the current wait began, while waiting on the client.
    since: Option<Instant>,
}

impl PaceClock {
    fn new(pace: Pace) -> Self {
        PaceClock {
            pace,
            waited: Duration::ZERO,
            since: None,
        }
    }

    /// A wait on the client begins (if it has not already): when it must end, and how the
    /// upload ends if it does not.
    fn wait(&mut self, now: Instant, seen: u64) -> (Instant, Upload) {
        let since = *self.since.get_or_insert(now);
        let left = self.pace.allowance(seen).saturating_sub(self.waited);
        if left < self.pace.idle {
            (since + left, Upload::TooSlow)
        } else {
            (since + self.pace.idle, Upload::Stalled)
        }
    }

    /// The client sent something (or the wait is over for another reason).
    fn arrived(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.waited += now.saturating_duration_since(since);
        }
    }
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
            5 => Upload::TooSlow,
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

/// The body "request body too slow" error.
#[derive(Debug, thiserror::Error)]
#[error("the request body came slower than the configured minimum rate")]
pub struct TooSlow;

/// The client's request body, metered, capped in size and in idle time.
pub struct RequestBody {
    inner: Inbound,
    holds: Holds,
    counter: IntCounter,
    limit: u64,
    seen: u64,
    state: Arc<UploadState>,
    clock: PaceClock,
    /// Made at the first wait: a request whose body is empty (or never read) sets none.
    timer: Option<Pin<Box<Sleep>>>,
    /// How the upload ends when `timer` fires.
    cut: Upload,
    /// Whether the last poll found the client had nothing to send: only that time counts as
    /// waiting (a pause because the upstream is slow to read must not trip the timer).
    waiting: bool,
    /// The first poll's outcome, taken by [`RequestBody::first_piece`] before the body is sent.
    peeked: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

impl RequestBody {
    /// Wraps `inner`; `state` reports how it ends. The body fails once it falls behind `pace`.
    pub fn new(
        inner: Inbound,
        holds: Holds,
        counter: IntCounter,
        limit: u64,
        pace: Pace,
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
            clock: PaceClock::new(pace),
            timer: None,
            cut: Upload::Stalled,
            waiting: false,
            peeked: None,
        };
        (body, state)
    }

    /// Waits for the body's first piece (or its end, or its failure) and keeps it for the first
    /// poll: a body that fails at once (its first chunk declares more than the limit, it is
    /// too slow to start) fails before the upstream is called.
    pub async fn first_piece(&mut self) {
        if self.peeked.is_none() {
            let first = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await;
            self.peeked = Some(first);
        }
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
        if let Some(first) = this.peeked.take() {
            return Poll::Ready(first);
        }
        if !this.waiting {
            let (deadline, cut) = this.clock.wait(Instant::now(), this.seen);
            match this.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.cut = cut;
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.waiting = polled.is_pending();
        if !this.waiting {
            this.clock.arrived(Instant::now());
        }
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
            Poll::Ready(Some(Err(err))) if framing::is_declared_too_large(&*err) => {
                this.state.set(Upload::TooLarge);
                Poll::Ready(Some(Err(Box::new(TooLarge))))
            }
            Poll::Ready(Some(Err(err))) => {
                this.state.set(Upload::ClientFailed);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.state.set(Upload::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                // Set above: a pending read follows a wait that began.
                let timer = this.timer.as_mut().expect("set when the wait began");
                if timer.as_mut().poll(cx).is_ready() {
                    this.state.set(this.cut);
                    let err: BoxError = match this.cut {
                        Upload::TooSlow => Box::new(TooSlow),
                        _ => Box::new(Stalled),
                    };
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.peeked {
            Some(first) => first.is_none(),
            None => self.inner.is_end_stream(),
        }
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

/// Reads a (small) request body in full, within `limit` bytes and at `pace`.
pub async fn read_whole(body: Inbound, limit: u64, pace: Pace) -> Result<Bytes, Denial> {
    let mut body = std::pin::pin!(body);
    let mut clock = PaceClock::new(pace);
    let mut read = bytes::BytesMut::new();
    loop {
        let (deadline, cut) = clock.wait(Instant::now(), read.len() as u64);
        let frame = tokio::time::timeout_at(deadline, body.frame()).await;
        clock.arrived(Instant::now());
        let frame = match frame {
            Err(_) => return Err(cut_off(cut)),
            Ok(None) => return Ok(read.freeze()),
            Ok(Some(Err(err))) if framing::is_declared_too_large(&*err) => {
                return Err(Denial::new(DenyCode::PayloadTooLarge));
            }
            Ok(Some(Err(_))) => {
                return Err(Denial::with_message(
                    DenyCode::BadRequest,
                    "the request body ended with an error",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if read.len() as u64 + data.len() as u64 > limit {
                return Err(Denial::new(DenyCode::PayloadTooLarge));
            }
            read.extend_from_slice(&data);
        }
    }
}

/// The denial for an upload cut for its pace.
pub fn cut_off(cut: Upload) -> Denial {
    match cut {
        Upload::TooSlow => Denial::with_message(
            DenyCode::RequestTimeout,
            "the request body came slower than limits.body_min_rate",
        ),
        _ => Denial::with_message(
            DenyCode::BadRequest,
            "the request body stalled longer than limits.body_idle_timeout",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        idle: Duration::from_secs(30),
        min_rate: 500,
        grace: Duration::from_secs(20),
    };

    #[test]
    fn the_rate_allows_the_grace_plus_a_second_per_min_rate_bytes() {
        assert_eq!(PACE.allowance(0), Duration::from_secs(20));
        assert_eq!(PACE.allowance(1_000), Duration::from_secs(22));
        let off = Pace {
            min_rate: 0,
            ..PACE
        };
        assert_eq!(off.allowance(0), Duration::MAX);
    }

    #[test]
    fn only_time_waiting_on_the_client_counts_and_the_earlier_cut_wins() {
        let t0 = Instant::now();
        let mut clock = PaceClock::new(PACE);
        // Nothing yet: the rate's 20 s come before the idle 30 s.
        assert_eq!(
            clock.wait(t0, 0),
            (t0 + Duration::from_secs(20), Upload::TooSlow)
        );
        // A wait already under way keeps its start.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(clock.wait(later, 0).0, t0 + Duration::from_secs(20));
        clock.arrived(t0 + Duration::from_secs(10));
        // 10 s waited; the upstream then takes a minute to read: not the client's time.
        let t1 = t0 + Duration::from_secs(70);
        // 100 000 bytes earned 200 s: the idle timeout is the nearer cut now.
        assert_eq!(
            clock.wait(t1, 100_000),
            (t1 + Duration::from_secs(30), Upload::Stalled)
        );
        clock.arrived(t1 + Duration::from_secs(1));
        // 11 s waited, 2 000 bytes earned 4 s: 24 - 11 = 13 s left.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(
            clock.wait(t2, 2_000),
            (t2 + Duration::from_secs(13), Upload::TooSlow)
        );
    }
}
