//! The `openai` and `anthropic` profiles' hooks: a generation call's JSON body is read in
//! full, checked against the key's model allow-list and priced before admission; its answer
//! (JSON or SSE) is metered as it streams back.

use crate::proxy::inbound::Inbound;
use http::HeaderValue;
use http::Uri;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;

use super::{Call, Llm};
use crate::domain::decision::{Denial, DenyCode};
use crate::meter::body::Observe;
use crate::proxy::headers::content_length;
use crate::proxy::phases::{Cx, Payload, Phases, Prepared, Step};
use crate::proxy::request_body::read_whole;

/// What the LLM profiles read from a request: the generation route called, if any, and once
/// its body is read, the priced call.
pub struct Reading {
    route: Option<&'static str>,
    call: Option<Call>,
}

impl Phases for Llm {
    type Reading = Reading;
    /// The priced call, on generation routes.
    type Exchange = Option<Call>;

    fn classify(&self, parts: &Parts, path: &str) -> Result<Reading, Denial> {
        let route = self.generation_route(&parts.method, path);
        // A generation body is read in full before admission: one declared larger than its
        // cap is refused before anything is read.
        let declared = content_length(&parts.headers);
        if route.is_some() && declared.is_some_and(|len| len > self.max_body) {
            return Err(too_large());
        }
        Ok(Reading { route, call: None })
    }

    async fn prepare(
        &self,
        reading: &mut Reading,
        body: Inbound,
        cx: &Cx<'_>,
    ) -> Result<Prepared, Denial> {
        let Some(route) = reading.route else {
            return Ok(Prepared {
                payload: Payload::Stream(body),
                estimate: 0,
            });
        };
        let cap = self.max_body.min(cx.max_request_body);
        let received = read_whole(body, cap, cx.body_pace)
            .await
            .map_err(|d| match d.code {
                DenyCode::PayloadTooLarge => too_large(),
                _ => d,
            })?;
        let len = received.len() as u64;
        let call = self.prepare(route, received, cx.key.limits.models.as_deref())?;
        let prepared = Prepared {
            payload: Payload::Buffered {
                received: len,
                forward: call.body.clone(),
            },
            estimate: call.estimate,
        };
        reading.call = Some(call);
        Ok(prepared)
    }

    async fn admitted(
        &self,
        reading: Reading,
        parts: &mut Parts,
        _: &mut Uri,
        _: Option<u64>,
        cx: &Cx<'_>,
    ) -> Result<Step<Option<Call>>, Denial> {
        if let Some(call) = &reading.call {
            let len = HeaderValue::from(call.body.len());
            parts.headers.insert(CONTENT_LENGTH, len);
            // The usage is read from the answer as it passes: ask for it uncompressed (SDKs
            // send `Accept-Encoding: gzip` by default).
            parts.headers.remove(ACCEPT_ENCODING);
        }
        Ok(Step::Forward {
            exchange: reading.call,
            body_limit: cx.max_request_body,
        })
    }

    fn observe(
        &self,
        call: &mut Option<Call>,
        head: &mut http::response::Parts,
        cx: &Cx<'_>,
    ) -> Option<Box<dyn Observe>> {
        let call = call.take()?;
        if call.rewrites_response() {
            head.headers.remove(CONTENT_LENGTH);
        }
        let missing = cx.metrics.usage_missing.clone();
        let recorder = Some((cx.meter.clone(), cx.key.id));
        let observer = call.observer(head.status, &head.headers, cx.route_cost, missing, recorder);
        Some(Box::new(observer))
    }
}

/// The refusal of a generation body over `limits.max_llm_body`.
fn too_large() -> Denial {
    Denial::with_message(
        DenyCode::PayloadTooLarge,
        "the request body is larger than limits.max_llm_body allows for a priced call",
    )
}
