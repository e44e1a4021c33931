//! One proxied request, start to finish: normalise, authenticate, authorise, forward, log.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use uuid::Uuid;

use std::collections::HashMap;

use crate::auth::{self, CredentialSource, credential};
use crate::cluster::lease::Leases;
use crate::config::model::{Plan, RouteAction};
use crate::domain::clock::Clock;
use crate::domain::decision::{Decision, Denial, DenyCode};
use crate::domain::ip::IpSet;
use crate::domain::permission::Permission;
use crate::domain::policy::check_key;
use crate::domain::secret::KeyHasher;
use crate::index::{KeyEntry, KeyIndex};
use crate::meter::Meter;
use crate::meter::admit::{self as quota, Facts, Ticket};
use crate::meter::body::MeteredBody;
use crate::meter::hold::InFlightGuard;
use crate::metrics::Metrics;
use crate::proxy::headers::{
    REQUEST_ID, join_cookies, remove_hop_by_hop, request_id, scrub_client_hints, set_forwarded,
};
use crate::proxy::kubo::args::Query;
use crate::proxy::kubo::command::{self as kubo_command, Command};
use crate::proxy::kubo::{Caller, Ctx, Kubo};
use crate::proxy::llm::{Call, Llm};
use crate::proxy::request_body::{RequestBody, Upload, UploadState};
use crate::proxy::routes::RouteTable;
use crate::proxy::upstream::{SendError, Upstream};
use crate::proxy::{ProxyBody, client_ip, path, respond};

/// Everything the data plane needs, built once at start.
pub struct ProxyState {
    pub index: Arc<KeyIndex>,
    pub hasher: KeyHasher,
    pub routes: RouteTable,
    pub sources: Vec<CredentialSource>,
    pub trusted_proxies: IpSet,
    /// The upstream: client, own credential, response deadline, failure accounting.
    pub upstream: Arc<Upstream>,
    pub max_request_body: u64,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// Whether the proxy listener terminates TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub meter: Arc<Meter>,
    /// Plans by id (account plan limits).
    pub plans: HashMap<i64, Plan>,
    /// LLM pricing and usage metering (openai and anthropic profiles).
    pub llm: Option<Llm>,
    /// The pin and IPNS-name ledger (kubo profile).
    pub kubo: Option<Arc<Kubo>>,
    /// Budget leases money limits are spent from (lease mode on a shared store).
    pub leases: Option<Arc<Leases>>,
}

/// A request that passed admission.
struct Admitted {
    entry: Arc<KeyEntry>,
    uri: Uri,
    ticket: Ticket,
    /// The priced LLM call, on the LLM profiles' generation routes.
    call: Option<Call>,
    /// Fixed route cost (part of the estimate, kept when usage settles the rest).
    route_cost: u64,
    /// The most request body bytes read from the client.
    body_limit: u64,
}

/// The request body as it goes upstream.
enum Payload {
    /// Streamed through as the client sends it.
    Stream(Incoming),
    /// Read in full before admission (LLM generation routes): `received` bytes came from the
    /// client, `forward` goes upstream.
    Buffered { received: u64, forward: Bytes },
}

/// A request whose key passed the policy check, before quotas.
struct Checked {
    entry: Arc<KeyEntry>,
    uri: Uri,
    /// The LLM generation route called, if any.
    generation: Option<&'static str>,
    route_cost: u64,
    content_length: Option<u64>,
    now: i64,
    /// The kubo ledger command called, if any, with its parsed query.
    kubo: Option<(Command, Query)>,
}

/// Serves one request. Never fails: every problem becomes a JSON denial.
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let rid = request_id(req.headers());
    let (parts, body) = req.into_parts();
    let peer_ip = crate::domain::ip::canonical(peer.ip());
    let client = client_ip::client_ip(peer_ip, &parts.headers, &state.trusted_proxies);

    // Cheap copies (shared bytes) for the access log, since the head moves upstream.
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let (mut resp, denied, key) = match serve(&state, parts, body, client, peer_ip, &rid).await {
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

/// Checks, admits and forwards; a denial says which key it concerned once the key is known
/// (for the access log).
async fn serve(
    state: &Arc<ProxyState>,
    mut parts: Parts,
    body: Incoming,
    client: IpAddr,
    peer: IpAddr,
    rid: &HeaderValue,
) -> Result<(Response<ProxyBody>, Uuid), (Denial, Option<Uuid>)> {
    let checked = check(state, &parts, client)?;
    let key = checked.entry.key.id;
    // The rate token and the concurrency slot are taken before any body is read.
    let slot = gate(&checked.entry).map_err(|d| (d, Some(key)))?;
    let (payload, call) = match (&state.llm, checked.generation) {
        (Some(llm), Some(route)) => {
            let received = read_body(body, state.max_request_body, state.body_idle_timeout)
                .await
                .map_err(|d| (d, Some(key)))?;
            let len = received.len() as u64;
            let call = llm
                .prepare(route, received, checked.entry.key.limits.models.as_deref())
                .map_err(|d| (d, Some(key)))?;
            let forward = call.body.clone();
            (
                Payload::Buffered {
                    received: len,
                    forward,
                },
                Some(call),
            )
        }
        _ => (Payload::Stream(body), None),
    };
    let content_length = match &payload {
        Payload::Buffered { received, .. } => Some(*received),
        Payload::Stream(_) => checked.content_length,
    };
    let estimate = checked
        .route_cost
        .saturating_add(call.as_ref().map_or(0, |c| c.estimate));
    let Checked {
        entry,
        mut uri,
        now,
        kubo: kubo_call,
        ..
    } = checked;
    let mut ticket = admit_quotas(state, &entry, content_length, estimate, now)
        .await
        .map_err(|d| (d, Some(key)))?;
    ticket.hold_slot(slot);
    state.index.mark_used(&entry, now);
    let mut add = None;
    if let (Some(kubo), Some((command, query))) = (&state.kubo, kubo_call) {
        let ctx = Ctx {
            upstream: state.upstream.clone(),
            rid: rid.clone(),
            caller: caller(state, &entry, now),
        };
        if command != Command::Add {
            let resp = kubo.serve(ctx, command, query).await;
            return resp
                .map(|resp| (buffered_response(state, resp, ticket), key))
                .map_err(|d| (d, Some(key)));
        }
        let can_pin = entry.key.permissions.allows(Permission::Pin);
        let plan = kubo
            .plan_add(&ctx.caller, &query, content_length, can_pin)
            .map_err(|d| (d, Some(key)))?;
        uri =
            with_query(&uri, &plan.query).ok_or((Denial::new(DenyCode::BadRequest), Some(key)))?;
        add = Some((kubo, ctx, plan));
    }
    if let Some(call) = &call {
        let len = HeaderValue::from(call.body.len());
        parts.headers.insert(CONTENT_LENGTH, len);
        // The usage is read from the answer as it passes: ask for it uncompressed (SDKs send
        // `Accept-Encoding: gzip` by default).
        parts.headers.remove(ACCEPT_ENCODING);
    }
    let body_limit = add
        .as_ref()
        .and_then(|(_, _, plan)| plan.body_limit)
        .map_or(state.max_request_body, |room| {
            room.min(state.max_request_body)
        });
    let admitted = Admitted {
        entry,
        uri,
        ticket,
        call,
        route_cost: checked.route_cost,
        body_limit,
    };
    let resp = forward(state, parts, payload, admitted, peer, rid).await;
    let resp = match (resp, add) {
        (Ok(resp), Some((kubo, ctx, plan))) => kubo.finish_add(ctx, plan, resp).await,
        (resp, _) => resp,
    };
    resp.map(|resp| (resp, key)).map_err(|d| (d, Some(key)))
}

/// `uri` with its query replaced.
fn with_query(uri: &Uri, query: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    let pq = format!("{}?{query}", uri.path());
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The account a kubo ledger command acts for, with its plan's limits.
fn caller(state: &ProxyState, entry: &KeyEntry, now: i64) -> Caller {
    let plan = state
        .meter
        .account(entry.key.account_id)
        .and_then(|a| a.plan_id())
        .and_then(|id| state.plans.get(&id));
    Caller::new(entry.key.account_id, plan, now)
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

/// Reads a (small) request body in full, within `limit` bytes and `within` time.
async fn read_body(body: Incoming, limit: u64, within: Duration) -> Result<Bytes, Denial> {
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

/// A denial, with the key it concerned once the key is known (for the access log).
type Refusal = (Denial, Option<Uuid>);

/// Key policy in the documented order; a denial is an outcome, not an error.
fn check(state: &ProxyState, parts: &Parts, client: IpAddr) -> Result<Checked, Refusal> {
    let path = path::normalize(parts.uri.path()).map_err(|e| {
        (
            Denial::with_message(DenyCode::BadRequest, e.to_string()),
            None,
        )
    })?;
    let entry = auth::authenticate(&parts.headers, &state.sources, &state.index, &state.hasher)
        .map_err(|d| (d, None))?;
    let key = entry.key.id;
    authorize(state, parts, client, path, entry).map_err(|d| (d, Some(key)))
}

/// The checks after the key is known: route permission, key policy, size, ledger command.
fn authorize(
    state: &ProxyState,
    parts: &Parts,
    client: IpAddr,
    path: std::borrow::Cow<'_, str>,
    entry: Arc<KeyEntry>,
) -> Result<Checked, Denial> {
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
    let content_length = content_length(parts);
    if content_length.is_some_and(|len| len > state.max_request_body) {
        return Err(Denial::new(DenyCode::PayloadTooLarge));
    }
    let uri = state
        .upstream
        .uri_for(&path, parts.uri.query())
        .ok_or_else(|| Denial::new(DenyCode::BadRequest))?;
    let generation = state
        .llm
        .as_ref()
        .and_then(|llm| llm.generation_route(&parts.method, &path));
    let kubo = match state.kubo {
        Some(_) => {
            let mut query = Query::parse(parts.uri.query());
            kubo_command::parse(&parts.method, &path, &mut query)?.map(|command| (command, query))
        }
        None => None,
    };
    Ok(Checked {
        entry,
        uri,
        generation,
        route_cost: route.cost_micros,
        content_length,
        now,
        kubo,
    })
}

/// The key's rate token and concurrency slot (held until the request ends).
fn gate(entry: &KeyEntry) -> Result<Option<InFlightGuard>, Denial> {
    entry
        .live
        .check_rate()
        .map_err(|secs| Denial::new(DenyCode::RateLimited).retry_after(secs.max(1)))?;
    quota::take_slot(&entry.key, &entry.live.in_flight)
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
    let links = entry
        .live
        .links(&entry.key, &state.meter, now)
        .ok_or_else(|| {
            Denial::with_message(DenyCode::InvalidKey, "the key's account is not active")
        })?;
    let facts = Facts {
        content_length,
        cost_estimate,
    };
    let admit = || {
        quota::admit(
            &entry.key,
            links,
            &state.plans,
            &state.meter.retired,
            facts,
            now,
        )
    };
    let mut admitted = admit();
    if let (Err(denial), Some(leases)) = (&admitted, &state.leases)
        && denial.code.is_money()
    {
        // Refused by a lease, not a limit: wait for a grant and try again, within a deadline.
        let deadline = Leases::deadline_from_now();
        let retired = &state.meter.retired;
        for _ in 0..Leases::TRIES {
            let Err(denial) = &admitted else { break };
            if !denial.code.is_money() {
                break;
            }
            let wants = Leases::wants(&entry.key, links, cost_estimate, retired, now);
            match leases.refill_for(wants, deadline).await {
                Ok(true) => admitted = admit(),
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "no budget lease: the store did not answer");
                    let message = "no budget could be leased for this request: the store is \
                                   unreachable; retry shortly";
                    return Err(Denial::with_message(denial.code, message).retry_after(1));
                }
            }
        }
    }
    let mut ticket = admitted?;
    ticket.count_cost_into(state.metrics.cost_micros.clone());
    Ok(ticket)
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
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
        (Upload::Stalled, _) | (_, Err(Upload::Stalled)) => Denial::with_message(
            DenyCode::BadRequest,
            "the request body stalled longer than limits.body_idle_timeout",
        ),
        (_, Err(_)) => state.upstream.timed_out(),
        (_, Ok(err)) => state
            .upstream
            .failed(&err, &format_args!("key {}", entry.key.id)),
    }
}

/// Builds the upstream request, sends it and returns the upstream's response head with its body
/// streaming through.
async fn forward(
    state: &ProxyState,
    mut parts: Parts,
    payload: Payload,
    admitted: Admitted,
    peer: IpAddr,
    rid: &HeaderValue,
) -> Result<Response<ProxyBody>, Denial> {
    let forwarded_for = client_ip::forwarded_for(peer, &parts.headers, &state.trusted_proxies);
    let client = client_ip::client_ip(peer, &parts.headers, &state.trusted_proxies);
    let trusted_peer = state.trusted_proxies.contains(peer);
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
    set_forwarded(headers, forwarded_for, client, state.tls, host);
    headers.insert(&REQUEST_ID, rid.clone());
    state.upstream.authorize(headers);
    let Admitted {
        entry,
        uri,
        mut ticket,
        call,
        route_cost,
        body_limit,
    } = admitted;
    parts.uri = uri;
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
            if !body.is_end_stream() && !parts.headers.contains_key(CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            let (body, upload) = RequestBody::new(
                body,
                ingress,
                state.metrics.bytes_in.clone(),
                body_limit,
                state.body_idle_timeout,
            );
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
            return Err(failed(state, &entry, failure, upload.get()));
        }
    };
    let (mut head, body) = resp.into_parts();
    remove_hop_by_hop(&mut head.headers);
    let egress = std::mem::take(&mut ticket.egress);
    let mut body = MeteredBody::new(body, egress, state.metrics.bytes_out.clone(), Some(ticket));
    if let Some(call) = call {
        if call.rewrites_response() {
            head.headers.remove(CONTENT_LENGTH);
        }
        let missing = state.metrics.usage_missing.clone();
        let recorder = Some((state.meter.clone(), entry.key.id));
        let observer = call.observer(head.status, &head.headers, route_cost, missing, recorder);
        body = body.observed(Box::new(observer));
    }
    let body = body
        .map_err(|e| Box::new(e) as crate::proxy::BoxError)
        .boxed();
    Ok(Response::from_parts(head, body))
}
