//! Responses a client takes none of (`limits.send_timeout`, nginx's `send_timeout`): a client
//! that keeps an HTTP/2 window closed, or stops reading its socket, would otherwise hold its
//! streams, the key's concurrency slots and upstream connections for as long as it likes.
//!
//! hyper stops polling a response body while the client takes nothing, so a body cannot time
//! itself out. Instead each response body marks when it offered a piece the client has not yet
//! taken ([`Tracked`]), and a watch task beside the connection ([`Stalls::watch`]) aborts the
//! whole connection once one piece has waited past the timeout. A body waiting on the upstream
//! is not stalled.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http_body::{Body, Frame, SizeHint};

/// Past this many tracked bodies, finished ones are dropped from the list when one is added.
const PRUNE_AT: usize = 128;

/// The response bodies of one connection and when each began waiting on the client.
#[derive(Debug)]
pub struct Stalls {
    epoch: Instant,
    /// Per body: milliseconds since `epoch` (plus one) when it began waiting; 0 when not.
    bodies: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Stalls {
    pub fn new() -> Arc<Self> {
        Arc::new(Stalls {
            epoch: Instant::now(),
            bodies: Mutex::new(Vec::new()),
        })
    }

    /// Wraps a response body so its waits count here.
    pub fn track<B>(self: &Arc<Self>, body: B) -> Tracked<B> {
        let since = Arc::new(AtomicU64::new(0));
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if bodies.len() >= PRUNE_AT {
            bodies.retain(|b| b.strong_count() > 0);
        }
        bodies.push(Arc::downgrade(&since));
        drop(bodies);
        Tracked {
            inner: body,
            since,
            stalls: self.clone(),
        }
    }

    /// Watches a connection's bodies from outside the connection: `true` once one has waited
    /// on the client for `timeout` (checked every quarter of it, so within 1.25 × `timeout`),
    /// `false` once the connection is gone (its `Stalls` dropped).
    pub async fn watch(stalls: Weak<Stalls>, timeout: Duration) -> bool {
        let tick = (timeout / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let Some(stalls) = stalls.upgrade() else {
                return false;
            };
            if stalls.longest_wait() >= timeout {
                return true;
            }
        }
    }

    /// The longest any live body has been waiting on the client.
    fn longest_wait(&self) -> Duration {
        let now = self.now();
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = 0;
        bodies.retain(|body| {
            let Some(since) = body.upgrade() else {
                return false;
            };
            let since = since.load(Ordering::Relaxed);
            if since != 0 {
                longest = longest.max(now.saturating_sub(since));
            }
            true
        });
        Duration::from_millis(longest)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// A response body whose pieces the client must take within the connection's send timeout.
pub struct Tracked<B> {
    inner: B,
    since: Arc<AtomicU64>,
    stalls: Arc<Stalls>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // Polled again: the client took the last piece (hyper asks for more only then).
        self.since.store(0, Ordering::Relaxed);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.since.store(self.stalls.now(), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    fn frames(n: usize) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let pieces = (0..n).map(|_| Ok(Frame::data(Bytes::from_static(b"x"))));
        StreamBody::new(futures_util::stream::iter(pieces))
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_piece_left_untaken_counts_and_finished_bodies_are_forgotten() {
        let stalls = Stalls::new();
        let mut body = stalls.track(frames(2));
        assert_eq!(stalls.longest_wait(), Duration::ZERO, "nothing offered yet");
        body.frame().await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            stalls.longest_wait() >= Duration::from_secs(5),
            "offered, not taken"
        );
        body.frame().await.unwrap().unwrap();
        assert!(
            stalls.longest_wait() < Duration::from_secs(1),
            "the next poll took it"
        );
        let watch = Stalls::watch(Arc::downgrade(&stalls), Duration::from_secs(60));
        tokio::pin!(watch);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(futures_util::poll!(watch.as_mut()).is_pending());
        tokio::time::advance(Duration::from_secs(20)).await;
        let fired = futures_util::poll!(watch.as_mut());
        assert_eq!(fired, Poll::Ready(true), "stalled past 60 s");
        drop(body);
        assert_eq!(stalls.longest_wait(), Duration::ZERO);
        assert!(stalls.bodies.lock().unwrap().is_empty());
        // A watch whose connection is gone ends at its next tick, having found nothing.
        let gone = Stalls::watch(Arc::downgrade(&stalls), Duration::from_secs(60));
        tokio::pin!(gone);
        assert!(futures_util::poll!(gone.as_mut()).is_pending());
        drop(stalls);
        tokio::time::advance(Duration::from_secs(16)).await;
        assert_eq!(futures_util::poll!(gone.as_mut()), Poll::Ready(false));
    }
}
