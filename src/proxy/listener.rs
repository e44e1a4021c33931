//! The proxy listener, on one of two shapes (`listen.proxy_cores`):
//!
//! - **shared** (the default): one socket, accepted on the process's multi-threaded runtime;
//! - **per core**: `n` threads, each with its own `current_thread` runtime, its own socket
//!   bound to the same address with `SO_REUSEPORT` (the kernel spreads new connections across
//!   them) and its own upstream connection pool. A request never leaves the thread that
//!   accepted it and no pool is shared, so nothing on the data path is handed between cores.
//!   The index, the meter and the metrics stay shared (lock-free). `SO_REUSEPORT` lets another
//!   process of the same user bind the same port, as with nginx's `reuseport`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use hyper::service::service_fn;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use http::Request;
use hyper::body::Incoming;

use crate::config::model::{Http1Server, Limits};
use crate::proxy::h1;
use crate::proxy::handler::{self, Connection, ProxyState};
use crate::proxy::inbound::Inbound;
use crate::proxy::phases::Phases;
use crate::proxy::server;
use crate::proxy::server::OwnHttp1;
use crate::proxy::stall::Stalls;
use crate::proxy::upstream::Upstream;

/// Backlog of each listening socket.
const BACKLOG: i32 = 4096;

/// The proxy listener's sockets, bound, before they serve.
pub struct ProxyListener {
    sockets: Sockets,
    /// Where it listens (the port chosen when the configured one is 0).
    pub addr: SocketAddr,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    pub stopped: watch::Receiver<bool>,
    /// Which server reads cleartext HTTP/1 (`listen.http1`).
    pub http1: Http1Server,
}

enum Sockets {
    Shared(TcpListener),
    /// One per core, each to be served by a thread of its own.
    PerCore(Vec<std::net::TcpListener>),
}

impl ProxyListener {
    /// Binds `addr`: once, or `cores` times with `SO_REUSEPORT`.
    pub async fn bind(
        addr: SocketAddr,
        cores: Option<NonZeroUsize>,
        tls: Option<TlsAcceptor>,
        limits: Limits,
        stopped: watch::Receiver<bool>,
        http1: Http1Server,
    ) -> std::io::Result<Self> {
        let (sockets, addr) = match cores {
            None => {
                let listener = TcpListener::bind(addr).await?;
                let addr = listener.local_addr()?;
                (Sockets::Shared(listener), addr)
            }
            Some(cores) => {
                let first = reuseport(addr)?;
                // Port 0 picks a port for the first socket; the others join that one.
                let addr = first.local_addr()?;
                let mut sockets = vec![first];
                for _ in 1..cores.get() {
                    sockets.push(reuseport(addr)?);
                }
                (Sockets::PerCore(sockets), addr)
            }
        };
        Ok(ProxyListener {
            sockets,
            addr,
            tls,
            limits,
            stopped,
            http1,
        })
    }

    /// How many threads will serve (0: the shared runtime).
    pub fn cores(&self) -> usize {
        match &self.sockets {
            Sockets::Shared(_) => 0,
            Sockets::PerCore(sockets) => sockets.len(),
        }
    }

    /// Serves every request through the pipeline with `profile`'s phases. Per core, thread `i`
    /// uses `upstreams[i]` (one pool each; see [`ProxyListener::cores`]). The task ends once
    /// every connection has drained after `stopped`.
    pub fn spawn<P: Phases>(
        self,
        state: ProxyState,
        upstreams: Vec<Arc<Upstream>>,
        profile: P,
    ) -> std::io::Result<JoinHandle<()>> {
        let profile = Arc::new(profile);
        let (tls, limits, stopped, http1) = (self.tls, self.limits, self.stopped, self.http1);
        let sockets = match self.sockets {
            Sockets::Shared(listener) => {
                let state = Arc::new(state);
                let serving = serve(listener, tls, limits, stopped, http1, state, profile);
                return Ok(tokio::spawn(serving));
            }
            Sockets::PerCore(sockets) => sockets,
        };
        let mut done = Vec::with_capacity(sockets.len());
        for (i, (socket, upstream)) in sockets.into_iter().zip(upstreams).enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let listener = {
                let _inside = runtime.enter();
                TcpListener::from_std(socket)?
            };
            let state = Arc::new(ProxyState {
                upstream,
                ..state.clone()
            });
            let serving = serve(
                listener,
                tls.clone(),
                limits.clone(),
                stopped.clone(),
                http1,
                state,
                profile.clone(),
            );
            let (finished, finish) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("tg-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(serving);
                    drop(finished);
                })?;
            done.push(finish);
        }
        Ok(tokio::spawn(async move {
            for finish in done {
                let _ = finish.await;
            }
        }))
    }
}

/// One accept loop with the pipeline as the service (hyper's, and the own HTTP/1.1 server's
/// unless `listen.http1 = "hyper"`).
async fn serve<P: Phases>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stopped: watch::Receiver<bool>,
    http1: Http1Server,
    state: Arc<ProxyState>,
    profile: Arc<P>,
) {
    let own = (http1 == Http1Server::Tollgate)
        .then(|| own_http1(&limits, &stopped, state.clone(), profile.clone()));
    let make = move |peer, stalls: &Arc<Stalls>| {
        let (state, profile) = (state.clone(), profile.clone());
        let conn = Connection::new(peer, stalls.clone());
        service_fn(move |req: Request<Incoming>| {
            let req = req.map(Inbound::Hyper);
            handler::handle(state.clone(), profile.clone(), conn.clone(), req)
        })
    };
    server::serve(listener, tls, limits, stopped, make, own).await
}

/// The own HTTP/1.1 server (`proxy::h1`) for the accept loop.
fn own_http1<P: Phases>(
    limits: &Limits,
    stopped: &watch::Receiver<bool>,
    state: Arc<ProxyState>,
    profile: Arc<P>,
) -> OwnHttp1 {
    let settings = h1::Settings {
        max_head: server::h1_max_buf(limits),
        header_read_timeout: limits.header_read_timeout,
        body_limit: limits.max_request_body.get(),
    };
    let stopped = stopped.clone();
    Arc::new(move |stream, peer, stalls| {
        let conn = Connection::new(peer, stalls);
        let serving = h1::serve(
            stream,
            conn,
            state.clone(),
            profile.clone(),
            settings,
            stopped.clone(),
        );
        Box::pin(serving)
    })
}

/// A listening socket on `addr` that other sockets of this process may share.
fn reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
