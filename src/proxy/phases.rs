//! The phases of one proxied request and the hooks a profile gives them, in the manner of
//! pingora's `ProxyHttp`. The pipeline (`handler`) runs, for every profile:
//!
//! 1. **authenticate** (`auth`) and **classify**: the route's permission, the key's policy,
//!    then [`Phases::classify`], the profile's reading of the head (an LLM generation route,
//!    a kubo ledger command);
//! 2. the key's rate token and concurrency slot, then [`Phases::prepare`]: the body as it will
//!    go upstream and the price estimate (the LLM profiles read and price the JSON body here);
//! 3. **admit**: one call into the meter for every quota;
//! 4. [`Phases::admitted`]: the profile answers itself (kubo ledger commands) or lets the
//!    request go on, possibly changed (kubo `add`: the query and the upload cap);
//! 5. **forward** through [`Upstream`], then [`Phases::observe`]: the profile sees the response
//!    head and watches its body as it streams (LLM usage);
//! 6. [`Phases::finish`] (kubo records the pins of an `add`), then settle and log.
//!
//! A profile is one type implementing [`Phases`] in its own module; the pipeline is generic
//! over it, so the hooks cost no dynamic dispatch and a profile that needs none of them
//! ([`Generic`]) costs nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::proxy::inbound::Inbound;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Uri};

use crate::config::model::Plan;
use crate::domain::decision::Denial;
use crate::domain::hot_key::HotKey;
use crate::meter::Meter;
use crate::meter::body::Observe;
use crate::metrics::Metrics;
use crate::proxy::ProxyBody;
use crate::proxy::request_body::Pace;
use crate::proxy::upstream::Upstream;

/// What the hooks of one request may see: the key, the request, the gateway's parts.
pub struct Cx<'a> {
    pub key: &'a HotKey,
    pub rid: &'a HeaderValue,
    /// Unix seconds at the start of the request.
    pub now: i64,
    /// The route's fixed cost (part of the estimate, kept when usage settles the rest).
    pub route_cost: u64,
    pub meter: &'a Arc<Meter>,
    pub plans: &'a HashMap<i64, Plan>,
    pub upstream: &'a Arc<Upstream>,
    pub metrics: &'a Arc<Metrics>,
    /// `limits.max_request_body`.
    pub max_request_body: u64,
    /// How fast a request body must arrive, also when it is read in full.
    pub body_pace: Pace,
}

/// The request body as it goes upstream.
pub enum Payload {
    /// Streamed through as the client sends it.
    Stream(Inbound),
    /// Read in full before admission: `received` bytes came from the client, `forward` goes
    /// upstream.
    Buffered { received: u64, forward: Bytes },
}

/// What [`Phases::prepare`] makes of the body.
pub struct Prepared {
    pub payload: Payload,
    /// The price estimate beyond the route's cost (micro-USD), reserved at admission.
    pub estimate: u64,
}

/// What comes after admission.
pub enum Step<E> {
    /// The profile answered the request itself.
    Answer(http::Response<Bytes>),
    /// The request goes upstream; `body_limit` caps the body read from the client.
    Forward { exchange: E, body_limit: u64 },
}

/// A profile's hooks into the pipeline (see the module doc for when each runs).
pub trait Phases: Send + Sync + 'static {
    /// What the profile read from the request head.
    type Reading: Send;
    /// What the profile keeps from admission to the end of the exchange.
    type Exchange: Send;

    /// The profile's reading of a request the key may make; `path` is normalised.
    fn classify(&self, parts: &Parts, path: &str) -> Result<Self::Reading, Denial>;

    /// The body as it will go upstream and the price estimate. Runs after the rate token and
    /// the concurrency slot are taken, before any quota is reserved. By default the body
    /// streams through and only the route's cost is reserved.
    fn prepare(
        &self,
        reading: &mut Self::Reading,
        body: Inbound,
        cx: &Cx<'_>,
    ) -> impl Future<Output = Result<Prepared, Denial>> + Send {
        let _ = (reading, cx);
        async move {
            Ok(Prepared {
                payload: Payload::Stream(body),
                estimate: 0,
            })
        }
    }

    /// After admission: answer, or go on upstream with `parts` and `uri` as changed here.
    /// `content_length` is the body's declared (or read) length.
    fn admitted(
        &self,
        reading: Self::Reading,
        parts: &mut Parts,
        uri: &mut Uri,
        content_length: Option<u64>,
        cx: &Cx<'_>,
    ) -> impl Future<Output = Result<Step<Self::Exchange>, Denial>> + Send;

    /// The response head arrived: change it if need be, and return an observer to watch the
    /// body as it streams (it settles the request's cost). By default: none.
    fn observe(
        &self,
        exchange: &mut Self::Exchange,
        head: &mut http::response::Parts,
        cx: &Cx<'_>,
    ) -> Option<Box<dyn Observe>> {
        let _ = (exchange, head, cx);
        None
    }

    /// The exchange is over (the response head is out, its body may still stream): the
    /// profile's last word on it. By default the response as it is.
    fn finish(
        &self,
        exchange: Self::Exchange,
        resp: Result<http::Response<ProxyBody>, Denial>,
    ) -> impl Future<Output = Result<http::Response<ProxyBody>, Denial>> + Send {
        drop(exchange);
        async move { resp }
    }
}

/// The `generic` profile: any HTTP API, no hooks.
pub struct Generic;

impl Phases for Generic {
    type Reading = ();
    type Exchange = ();

    fn classify(&self, _: &Parts, _: &str) -> Result<(), Denial> {
        Ok(())
    }

    async fn admitted(
        &self,
        _: (),
        _: &mut Parts,
        _: &mut Uri,
        _: Option<u64>,
        cx: &Cx<'_>,
    ) -> Result<Step<()>, Denial> {
        Ok(Step::Forward {
            exchange: (),
            body_limit: cx.max_request_body,
        })
    }
}
