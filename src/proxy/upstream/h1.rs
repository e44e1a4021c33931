//! Cleartext HTTP/1.1 to the upstream, driven by the task that serves the request.
//!
//! hyper-util's pooled client runs each upstream connection as a task of its own: every exchange
//! crosses tasks twice (request in, response out) and spawns a third task to hand the connection
//! back to the pool. Here the request's own task polls the connection while it waits for the
//! response head and while the response body streams to the client, and puts the connection back
//! in the pool once the body has ended cleanly (hyper says the connection is ready for another
//! request). A response dropped early, an error, or an upstream that closes drops the
//! connection instead.
//!
//! Idle connections have no task polling them. One the upstream closed in the meantime is found
//! out when it is next used (it is polled once before a request is written), or by
//! [`H1Pool::reap`], which also drops those older than `pool_idle_timeout`; a request that a
//! closed connection had not started writing is retried on another, as hyper-util does.
//!
//! Two differences from a connection task, both about a response that ends before its upload:
//! the rest of the request body is only sent while the response is read, and once the response
//! has ended the connection (and the unsent rest of the upload) is dropped rather than pooled.
//! Upgrades (101) are not supported: the handler strips `Upgrade`, and hyper never pools a
//! connection after a 101.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::SendError;
use super::idle::IdleConns;
use crate::proxy::ProxyBody;

/// Connections to one upstream, idle ones kept for reuse.
pub struct H1Pool {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header for requests that carry none.
    host: HeaderValue,
    connect_timeout: Duration,
    idle: IdleConns<Conn>,
}

/// One upstream connection: the handle requests are sent on and the connection state machine
/// (`None` once it has finished).
struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    driver: Option<Driver>,
}

/// hyper's state machine of one upstream connection.
type Driver = http1::Connection<TokioIo<TcpStream>, ProxyBody>;

impl H1Pool {
    pub fn new(
        addr: String,
        host: HeaderValue,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        H1Pool {
            addr,
            host,
            connect_timeout,
            idle: IdleConns::new(idle_timeout, max_idle),
        }
    }

    /// Sends `req` (absolute or origin form) and returns the response head; the body streams
    /// through the returned [`PooledBody`], which drives the connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
        req.headers_mut()
            .entry(HOST)
            .or_insert_with(|| self.host.clone());
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(mut conn) => {
                    if !still_open(&mut conn).await {
                        continue;
                    }
                    (conn, true)
                }
                None => (self.connect().await?, false),
            };
            match conn.exchange(req).await {
                Ok(resp) => return Ok(self.body_for(conn, resp).await),
                // A pooled connection the upstream had closed; the request was not sent.
                Err(Failed::Unsent(unsent)) if reused => req = *unsent,
                Err(Failed::Unsent(_)) => return Err(SendError::Closed),
                Err(Failed::Error(err)) => return Err(SendError::Http(err)),
            }
        }
    }

    /// Drops idle connections past the idle timeout, and those the upstream has closed (each
    /// is polled once, without a task to wake: nothing waits on an idle connection).
    pub fn reap(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.idle.reap(|conn| conn.drive(&mut cx));
    }

    /// How many connections wait in the pool.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// The most recently used idle connection that may still be open.
    fn checkout(&self) -> Option<Box<Conn>> {
        self.idle
            .checkout(|conn| !conn.sender.is_closed() && conn.driver.is_some())
    }

    fn checkin(&self, conn: Box<Conn>) {
        self.idle.checkin(conn);
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let stream = super::connect_tcp(&self.addr, self.connect_timeout).await?;
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        Ok(Box::new(Conn {
            sender,
            driver: Some(driver),
        }))
    }

    /// The response with a body that drives `conn`; a response without a body hands the
    /// connection back at once.
    async fn body_for(
        self: &Arc<Self>,
        mut conn: Box<Conn>,
        resp: Response<Incoming>,
    ) -> Response<PooledBody> {
        if resp.body().is_end_stream() {
            if poll_fn(|cx| Poll::Ready(conn.drive(cx))).await {
                self.checkin(conn);
            }
            return resp.map(|body| PooledBody {
                body,
                conn: None,
                pool: self.clone(),
            });
        }
        resp.map(|body| PooledBody {
            body,
            conn: Some(conn),
            pool: self.clone(),
        })
    }
}

impl Conn {
    /// Sends the request and polls the connection until the response head is in.
    async fn exchange(&mut self, req: Request<ProxyBody>) -> Result<Response<Incoming>, Failed> {
        let mut answer = pin!(self.sender.try_send_request(req));
        let driver = &mut self.driver;
        poll_fn(|cx| {
            // A connection that is over is dropped, which hands a request it never started
            // writing back to `answer` (hyper's dispatcher does so on drop).
            poll_driver(driver, cx);
            // Once the connection is dropped hyper always answers (its dispatcher's drop sends
            // on the request's channel); a `Pending` here is tokio's budget, which wakes us.
            answer.as_mut().poll(cx).map_err(Failed::from)
        })
        .await
    }

    /// Polls the connection once; says whether it is still open and ready for another request.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        poll_driver(&mut self.driver, cx) && self.sender.is_ready()
    }
}

/// Polls a connection's state machine once; `false` once it has finished (it is then dropped).
fn poll_driver(driver: &mut Option<Driver>, cx: &mut Context<'_>) -> bool {
    let Some(conn) = driver else {
        return false;
    };
    if Pin::new(conn).poll_without_shutdown(cx).is_ready() {
        *driver = None;
        return false;
    }
    true
}

/// Polls a pooled connection once before it is used, so that an upstream's close that has
/// already arrived is seen before a request is written to the dead socket (where it would fail
/// instead of being retried). Outside tokio's budget: a budget `Pending` would hide the close.
async fn still_open(conn: &mut Conn) -> bool {
    tokio::task::unconstrained(poll_fn(|cx| Poll::Ready(conn.drive(cx)))).await
}

/// Why an exchange failed.
enum Failed {
    /// The connection closed before the request was written: it can go on another.
    Unsent(Box<Request<ProxyBody>>),
    Error(hyper::Error),
}

impl From<TrySendError<Request<ProxyBody>>> for Failed {
    fn from(mut err: TrySendError<Request<ProxyBody>>) -> Self {
        match err.take_message() {
            Some(req) => Failed::Unsent(Box::new(req)),
            None => Failed::Error(err.into_error()),
        }
    }
}

/// A response body from a pooled connection: polling it drives the connection, and the
/// connection goes back to the pool when the body ends.
pub struct PooledBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    pool: Arc<H1Pool>,
}

impl PooledBody {
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take()
            && conn.drive(cx)
        {
            self.pool.checkin(conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(conn) = &mut this.conn
            && !poll_driver(&mut conn.driver, cx)
        {
            // Finished (the upstream closed, or an error the body reports next): not reusable.
            this.conn = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
