//! One proxied request, start to finish: normalise, authenticate, authorise, forward, log.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;

use crate::proxy::inbound::Inbound;
use uuid::Uuid;

use std::collections::HashMap;

use crate::auth::{self, CredentialSource, credential};
use crate::cluster::lease::Leases;
use crate::config::model::{Plan, RouteAction};
use crate::domain::clock::Clock;
use crate::domain::decision::{Decision, Denial, DenyCode};
use crate::domain::ip::IpSet;
use crate::domain::policy::check_key;
use crate::domain::secret::{DigestMemo, KeyHasher};
use crate::index::{KeyEntry, KeyIndex};
use crate::meter::Meter;
use crate::meter::admit::{Facts, Ticket};
use crate::meter::body::MeteredBody;
use crate::metrics::Metrics;
use crate::proxy::headers::{
    REQUEST_ID, content_length, join_cookies, remove_hop_by_hop, request_id, scrub_client_hints,
    set_forwarded,
};
use crate::proxy::phases::{Cx, Payload, Phases, Step};
use crate::proxy::request_body::{Pace, RequestBody, Upload, UploadState, cut_off};
use crate::proxy::routes::RouteTable;
use crate::proxy::stall::Stalls;
use crate::proxy::upstream::{SendError, Upstream};
use crate::proxy::{ProxyBody, client_ip, path, respond};

/// Everything the data plane needs, built once at start (per core with `listen.proxy_cores`,
/// where only the upstream pool differs).
#[derive(Clone)]
pub struct ProxyState {
    pub index: Arc<KeyIndex>,
    pub hasher: KeyHasher,
    pub routes: RouteTable,
    pub sources: Vec<CredentialSource>,
    pub trusted_proxies: IpSet,
    /// The upstream: client, own credential, response deadline, failure accounting.
    pub upstream: Arc<Upstream>,
    pub max_request_body: u64,
    /// How fast request bodies must arrive (`limits.body_idle_timeout`, `body_min_rate`).
    pub body_pace: Pace,
    /// Whether the proxy listener terminates TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub meter: Arc<Meter>,
    /// Plans by id (account plan limits).
    pub plans: HashMap<i64, Plan>,
    /// Budget leases money limits are spent from (lease mode on a shared store).
    pub leases: Option<Arc<Leases>>,
}

/// A request that passed admission.
struct Admitted<'a, E> {
    entry: &'a KeyEntry,
    uri: Uri,
    ticket: Ticket,
    /// What the profile keeps of the exchange.
    exchange: &'a mut E,
    /// The most request body bytes read from the client.
    body_limit: u64,
    /// The client's address (`client_ip`).
    client: IpAddr,
}

/// A request whose key passed the policy check, before quotas.
struct Checked<R> {
    entry: Arc<KeyEntry>,
    uri: Uri,
    /// The profile's reading of the request.
    reading: R,
    route_cost: u64,
    content_length: Option<u64>,
    now: i64,
}

/// The connection a request came on.
pub struct Connection {
    /// The socket peer (canonical: IPv4-mapped addresses as IPv4).
    pub peer: IpAddr,
    /// The peer as a header value (`X-Forwarded-For` from an untrusted peer), formatted once.
    peer_value: HeaderValue,
    /// The last credential digested on the connection (`DigestMemo`).
    digest_memo: DigestMemo,
    /// The connection's responses waiting on the client (`limits.send_timeout`).
    pub stalls: Arc<Stalls>,
}

impl Connection {
    pub fn new(peer: SocketAddr, stalls: Arc<Stalls>) -> Arc<Self> {
        let peer = crate::domain::ip::canonical(peer.ip());
        let peer_value = client_ip::ip_value(peer);
        Arc::new(Connection {
            peer,
            peer_value,
            digest_memo: DigestMemo::default(),
            stalls,
        })
    }
}

/// Counts the request as `client_closed` if it is dropped before it is answered: the client
/// reset the stream or closed the connection (its ticket, dropped with it, still charges the
/// estimate for what may have reached the upstream).
struct Unanswered<'a>(&'a Metrics);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        self.0.record_client_closed();
    }
}

/// Serves one request. Never fails: every problem becomes a JSON denial.
pub async fn handle<P: Phases>(
    state: Arc<ProxyState>,
    profile: Arc<P>,
    conn: Arc<Connection>,
    req: Request<Inbound>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let rid = request_id(req.headers());
    let (parts, body) = req.into_parts();
    let peer_ip = conn.peer;
    let client = client_ip::client_ip(peer_ip, &parts.headers, &state.trusted_proxies);

    // Cheap copies (shared bytes) for the access log, since the head moves upstream.
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let unanswered = Unanswered(&state.metrics);
    // Pinned where they are built (here and `forward` below): awaiting a future moves (copies)
    // it whole into the caller's, and these are kilobytes.
    let served = pin!(serve(&state, &*profile, parts, body, client, &conn, &rid)).await;
    std::mem::forget(unanswered);
    let (mut resp, denied, key) = match served {
        Ok((resp, key)) => (resp, None, Some(key)),
        Err((denial, key)) => {
            if let Some(q) = denial.quota {
                state.metrics.record_quota_denial(q);
            }
            (respond::denial_response(&denial), Some(denial.code), key)
        }
    };
    resp.headers_mut().insert(&REQUEST_ID, rid.clone());
    let elapsed = started.elapsed();
    state.metrics.record_request(denied, elapsed);
    tracing::info!(
        target: "tollgate::access",
        request_id = rid.to_str().unwrap_or("-"),
        method = %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        code = denied.map_or("ok", |c| c.as_str()),
        key = key.map(|k| k.to_string()).unwrap_or_default(),
        client = %client,
        micros = elapsed.as_micros() as u64,
    );
    Ok(resp)
}

/// Checks, admits and forwards through the profile's phases (see `phases`); a denial says
/// which key it concerned once the key is known (for the access log).
async fn serve<P: Phases>(
    state: &ProxyState,
    profile: &P,
    mut parts: Parts,
    body: Inbound,
    client: IpAddr,
    conn: &Connection,
    rid: &HeaderValue,
) -> Result<(Response<ProxyBody>, Uuid), Refusal> {
    let checked = check(state, profile, &parts, client, &conn.digest_memo)?;
    let key = checked.entry.key.id;
    let with_key = |d| (d, Some(key));
    // The rate token and the concurrency slot are taken before any body is read.
    let slot = checked
        .entry
        .live
        .enter(&checked.entry.key)
        .map_err(with_key)?;
    let Checked {
        entry,
        mut uri,
        mut reading,
        route_cost,
        content_length,
        now,
    } = checked;
    let cx = Cx {
        key: &entry.key,
        rid,
        now,
        route_cost,
        meter: &state.meter,
        plans: &state.plans,
        upstream: &state.upstream,
        metrics: &state.metrics,
        max_request_body: state.max_request_body,
        body_pace: state.body_pace,
    };
    let prepared = profile
        .prepare(&mut reading, body, &cx)
        .await
        .map_err(with_key)?;
    let content_length = match &prepared.payload {
        Payload::Buffered { received, .. } => Some(*received),
        Payload::Stream(_) => content_length,
    };
    let estimate = route_cost.saturating_add(prepared.estimate);
    let mut ticket = admit_quotas(state, &entry, content_length, estimate, now)
        .await
        .map_err(with_key)?;
    ticket.hold_slot(slot);
    state.index.mark_used(&entry, now);
    let step = profile
        .admitted(reading, &mut parts, &mut uri, content_length, &cx)
        .await
        .map_err(with_key)?;
    let (mut exchange, body_limit) = match step {
        Step::Answer(resp) => return Ok((buffered_response(state, resp, ticket), key)),
        Step::Forward {
            exchange,
            body_limit,
        } => (exchange, body_limit),
    };
    let admitted = Admitted {
        entry: &entry,
        uri,
        ticket,
        exchange: &mut exchange,
        body_limit,
        client,
    };
    let resp = pin!(forward(
        state,
        profile,
        &cx,
        parts,
        prepared.payload,
        admitted,
        conn
    ))
    .await;
    let resp = profile.finish(exchange, resp).await;
    resp.map(|resp| (resp, key)).map_err(with_key)
}

/// A response Tollgate composed (or read in full), metered as it goes out.
fn buffered_response(
    state: &ProxyState,
    resp: Response<Bytes>,
    mut ticket: Ticket,
) -> Response<ProxyBody> {
    let egress = std::mem::take(&mut ticket.egress);
    resp.map(|body| {
        let body = MeteredBody::new(
            Full::new(body),
            egress,
            state.metrics.bytes_out.clone(),
            Some(ticket),
        );
        body.map_err(|e| Box::new(e) as crate::proxy::BoxError)
            .boxed()
    })
}

/// A denial, with the key it concerned once the key is known (for the access log).
type Refusal = (Denial, Option<Uuid>);

/// Key policy in the documented order; a denial is an outcome, not an error.
fn check<P: Phases>(
    state: &ProxyState,
    profile: &P,
    parts: &Parts,
    client: IpAddr,
    memo: &DigestMemo,
) -> Result<Checked<P::Reading>, Refusal> {
    let path = path::normalize(parts.uri.path()).map_err(|e| {
        (
            Denial::with_message(DenyCode::BadRequest, e.to_string()),
            None,
        )
    })?;
    let entry = auth::authenticate(
        &parts.headers,
        &state.sources,
        &state.index,
        &state.hasher,
        Some(memo),
    )
    .map_err(|d| (d, None))?;
    let key = entry.key.id;
    authorize(state, profile, parts, client, path, entry).map_err(|d| (d, Some(key)))
}

/// The checks after the key is known: route permission, key policy, size, ledger command.
fn authorize<P: Phases>(
    state: &ProxyState,
    profile: &P,
    parts: &Parts,
    client: IpAddr,
    path: std::borrow::Cow<'_, str>,
    entry: Arc<KeyEntry>,
) -> Result<Checked<P::Reading>, Denial> {
    let route = state.routes.route(&parts.method, &path);
    let required = match route.action {
        RouteAction::Require(p) => p,
        RouteAction::Deny => {
            return Err(Denial::with_message(
                DenyCode::PermissionDenied,
                "this route is not available through the gateway",
            ));
        }
    };
    let now = state.clock.now_unix();
    if let Decision::Deny(denial) = check_key(&entry.key, now, client, required) {
        return Err(denial);
    }
    let content_length = content_length(&parts.headers);
    if content_length.is_some_and(|len| len > state.max_request_body) {
        return Err(Denial::new(DenyCode::PayloadTooLarge));
    }
    let uri = state
        .upstream
        .uri_for_request(&path, &parts.uri)
        .ok_or_else(|| Denial::new(DenyCode::BadRequest))?;
    let reading = profile.classify(parts, &path)?;
    Ok(Checked {
        entry,
        uri,
        reading,
        route_cost: route.cost_micros,
        content_length,
        now,
    })
}

/// Cost, balance and byte quotas of key, account and partner. In lease mode a request refused
/// by a budget lease (not by the limit itself) waits for a bigger lease and is tried again, for
/// at most `GRANT_WAIT` in all.
async fn admit_quotas(
    state: &ProxyState,
    entry: &KeyEntry,
    content_length: Option<u64>,
    cost_estimate: u64,
    now: i64,
) -> Result<Ticket, Denial> {
    let facts = Facts {
        content_length,
        cost_estimate,
    };
    let admit = || {
        state
            .meter
            .admit(&entry.key, &entry.live, &state.plans, facts, now)
    };
    let admitted = admit();
    let links = entry.live.links(&entry.key, &state.meter, now);
    let admitted = match (&state.leases, links) {
        (Some(leases), Some(links)) => {
            let retired = &state.meter.retired;
            let wants = || Leases::wants(&entry.key, links, cost_estimate, retired, now);
            leases.admit(admitted, wants, admit).await
        }
        _ => admitted,
    };
    let mut ticket = admitted?;
    ticket.count_cost_into(state.metrics.cost_micros.clone());
    Ok(ticket)
}

/// The denial for a failed exchange, blamed on the right party: the upload's own end first
/// (too large, client gone), then the upstream (timeout 504, anything else 502).
fn failed(
    state: &ProxyState,
    entry: &KeyEntry,
    failure: Result<SendError, Upload>,
    upload: Upload,
) -> Denial {
    match (upload, failure) {
        (Upload::TooLarge, _) | (_, Err(Upload::TooLarge)) => {
            Denial::new(DenyCode::PayloadTooLarge)
        }
        (Upload::ClientFailed, _) | (_, Err(Upload::ClientFailed)) => {
            Denial::with_message(DenyCode::BadRequest, "the request body ended with an error")
        }
        (cut @ (Upload::Stalled | Upload::TooSlow), _)
        | (_, Err(cut @ (Upload::Stalled | Upload::TooSlow))) => cut_off(cut),
        (_, Err(_)) => state.upstream.timed_out(),
        (_, Ok(err)) => state
            .upstream
            .failed(&err, &format_args!("key {}", entry.key.id)),
    }
}

/// Builds the upstream request, sends it and returns the upstream's response head with its body
/// streaming through.
async fn forward<P: Phases>(
    state: &ProxyState,
    profile: &P,
    cx: &Cx<'_>,
    mut parts: Parts,
    payload: Payload,
    admitted: Admitted<'_, P::Exchange>,
    conn: &Connection,
) -> Result<Response<ProxyBody>, Denial> {
    let peer = conn.peer;
    let trusted_peer = state.trusted_proxies.contains(peer);
    let forwarded_for = if trusted_peer {
        client_ip::forwarded_for(peer, &parts.headers, &state.trusted_proxies)
    } else {
        conn.peer_value.clone()
    };
    // HTTP/2 requests carry the host in the URI authority, not in a `Host` header.
    let host = parts.headers.remove(HOST).or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    credential::strip(headers, &state.sources);
    scrub_client_hints(headers, trusted_peer);
    join_cookies(headers);
    set_forwarded(headers, forwarded_for, admitted.client, state.tls, host);
    headers.insert(&REQUEST_ID, cx.rid.clone());
    state.upstream.authorize(headers);
    let Admitted {
        entry,
        uri,
        mut ticket,
        exchange,
        body_limit,
        client: _,
    } = admitted;
    parts.uri = uri;
    // Chunk sizes exist only in HTTP/1.
    let http1 = parts.version < Version::HTTP_2;
    parts.version = Version::HTTP_11;
    let mut ingress = std::mem::take(&mut ticket.ingress);
    let (body, upload) = match payload {
        Payload::Buffered { received, forward } => {
            for hold in &mut ingress {
                hold.record(received);
            }
            state.metrics.bytes_in.inc_by(received);
            let body = Full::new(forward).map_err(|never| match never {});
            (body.boxed(), UploadState::completed())
        }
        Payload::Stream(body) => {
            // A body of unknown length (chunked, or HTTP/2 without content-length) must stay
            // chunked: hyper's client would otherwise send `Content-Length: 0` for a GET and
            // drop the body.
            let unknown_length =
                !body.is_end_stream() && !parts.headers.contains_key(CONTENT_LENGTH);
            if unknown_length {
                parts
                    .headers
                    .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            let (mut body, upload) = RequestBody::new(
                body,
                ingress,
                state.metrics.bytes_in.clone(),
                body_limit,
                state.body_pace,
            );
            if unknown_length && http1 {
                // A chunked body whose first chunk is refused never reaches the upstream.
                body.first_piece().await;
                let end = upload.get();
                if !matches!(end, Upload::Streaming | Upload::Complete) {
                    ticket.set_actual_cost(0);
                    return Err(failed(state, entry, Err(end), end));
                }
            }
            (body.boxed(), upload)
        }
    };
    let req = Request::from_parts(parts, body);

    // The response deadline starts once the upload is complete, not when it starts.
    let deadline = async {
        let end = upload.finished().await;
        if end == Upload::Complete {
            tokio::time::sleep(state.upstream.response_timeout).await;
        }
        end
    };
    let sent = tokio::select! {
        sent = state.upstream.send(req) => sent.map_err(Ok),
        end = deadline => Err(Err(end)),
    };
    let resp = match sent {
        Ok(resp) => resp,
        Err(failure) => {
            // Nothing was delivered: settle the cost at zero.
            ticket.set_actual_cost(0);
            return Err(failed(state, entry, failure, upload.get()));
        }
    };
    let (mut head, body) = resp.into_parts();
    // A length beside a transfer coding is wrong (the coding frames the body): it must not
    // reach the client beside a body framed otherwise.
    if head.headers.contains_key(TRANSFER_ENCODING) {
        head.headers.remove(CONTENT_LENGTH);
    }
    remove_hop_by_hop(&mut head.headers);
    let egress = std::mem::take(&mut ticket.egress);
    let mut body = MeteredBody::new(body, egress, state.metrics.bytes_out.clone(), Some(ticket));
    if let Some(observer) = profile.observe(exchange, &mut head, cx) {
        body = body.observed(observer);
    }
    let body = body.map_err(|e| Box::new(e) as crate::proxy::BoxError);
    let body = conn.stalls.track(body).boxed();
    Ok(Response::from_parts(head, body))
}
