//! The LLM profiles (`openai`, `anthropic`): on the JSON generation routes the request body is
//! read (it is small), checked and priced before admission, so the worst case is reserved and
//! a request that cannot fit its budget is refused before it costs anything. The response is
//! then metered by [`usage::UsageObserver`], which reads the upstream's own usage report.

mod phases;
pub mod sse;
pub mod usage;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use prometheus::IntCounter;
use serde_json::{Map, Value};

use crate::config::model::ProfileKind;
use crate::domain::decision::{Denial, DenyCode};
use crate::domain::price::{ModelPrice, Prices, TokenUsage, tokens_from_chars};

use usage::UsageObserver;

/// The generation routes whose bodies are priced, matched on the end of the normalised path so
/// that an upstream base path (`/openai/v1/...`) works too.
const GENERATION_ROUTES: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
];

/// Which wire format the upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

/// The LLM side of the data plane: the flavor and the compiled price table.
#[derive(Clone, Debug)]
pub struct Llm {
    flavor: Flavor,
    prices: Prices,
    /// The cap of a generation call's body, read in full before admission (`limits.max_llm_body`).
    max_body: u64,
}

/// One priced generation request, ready to forward.
#[derive(Debug)]
pub struct Call {
    /// The model the request names (a priced one).
    model: std::sync::Arc<str>,
    /// The body to forward (the client's, or rewritten to ask for usage).
    pub body: Bytes,
    /// Worst-case cost in micro-USD: input estimate plus the maximum output.
    pub estimate: u64,
    flavor: Flavor,
    price: ModelPrice,
    /// Input tokens estimated from the request's text.
    input_tokens: u64,
    /// The client did not ask for the usage chunk we asked for: hide it.
    drop_usage_chunk: bool,
}

impl Llm {
    /// The LLM metering of `profile`, if it is an LLM profile.
    pub fn new(profile: ProfileKind, prices: Prices, max_body: u64) -> Option<Llm> {
        let flavor = match profile {
            ProfileKind::OpenAi => Flavor::OpenAi,
            ProfileKind::Anthropic => Flavor::Anthropic,
            ProfileKind::Kubo | ProfileKind::Generic => return None,
        };
        Some(Llm {
            flavor,
            prices,
            max_body,
        })
    }

    /// The generation route this request calls (`/v1/messages`), if it is a priced call.
    pub fn generation_route(&self, method: &Method, path: &str) -> Option<&'static str> {
        let path = path.strip_suffix('/').unwrap_or(path);
        if method != Method::POST {
            return None;
        }
        GENERATION_ROUTES.into_iter().find(|r| path.ends_with(r))
    }

    /// Parses and prices a generation request body sent to `route` (from
    /// [`Llm::generation_route`]); `allowed` is the key's model allow-list (`None` = any
    /// priced model).
    pub fn prepare(
        &self,
        route: &str,
        body: Bytes,
        allowed: Option<&[String]>,
    ) -> Result<Call, Denial> {
        let bad = |msg: &'static str| Denial::with_message(DenyCode::BadRequest, msg);
        let mut json: Value =
            serde_json::from_slice(&body).map_err(|_| bad("the request body is not valid JSON"))?;
        let obj = json
            .as_object_mut()
            .ok_or_else(|| bad("the request body must be a JSON object"))?;
        let model = obj
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the request body has no `model` string"))?;
        if allowed.is_some_and(|list| !list.iter().any(|m| m == model)) {
            return Err(Denial::with_message(
                DenyCode::ModelNotAllowed,
                "this API key may not use this model",
            ));
        }
        let model_name: std::sync::Arc<str> = model.into();
        let price = *self.prices.get(model).ok_or_else(|| {
            Denial::with_message(
                DenyCode::ModelNotAllowed,
                "this model is not available through the gateway",
            )
        })?;
        let max_output = max_output_tokens(obj)?.unwrap_or(price.max_output_tokens);
        let input_tokens = tokens_from_chars(input_chars(obj));
        let estimate = price.cost(TokenUsage {
            input: input_tokens,
            cached_input: 0,
            output: max_output,
        });
        let inject = self.flavor == Flavor::OpenAi && asks_stream_without_usage(route, obj);
        let body = if inject {
            let options = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            Bytes::from(serde_json::to_vec(&json).map_err(|_| bad("unserializable body"))?)
        } else {
            body
        };
        Ok(Call {
            model: model_name,
            body,
            estimate,
            flavor: self.flavor,
            price,
            input_tokens,
            drop_usage_chunk: inject,
        })
    }
}

impl Call {
    /// Whether the response is rewritten (the usage chunk hidden), so its length changes.
    pub fn rewrites_response(&self) -> bool {
        self.drop_usage_chunk
    }

    /// The observer metering the response with this status and headers. `fixed` is a route
    /// cost added to the usage cost; `missing` counts responses that carried no usage.
    pub fn observer(
        self,
        status: StatusCode,
        headers: &HeaderMap,
        fixed: u64,
        missing: IntCounter,
        recorder: Option<(std::sync::Arc<crate::meter::Meter>, uuid::Uuid)>,
    ) -> UsageObserver {
        let sse = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        UsageObserver::new(usage::Setup {
            flavor: self.flavor,
            price: self.price,
            input_tokens: self.input_tokens,
            fixed,
            billable: status.is_success(),
            sse,
            drop_usage_chunk: self.drop_usage_chunk && sse,
            missing,
            recorder: recorder.map(|(meter, key)| usage::Recorder {
                meter,
                key,
                model: self.model,
            }),
        })
    }
}

/// The request's output maximum, if it names one.
fn max_output_tokens(obj: &Map<String, Value>) -> Result<Option<u64>, Denial> {
    for name in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v.as_u64().map(Some).ok_or_else(|| {
                    Denial::with_message(
                        DenyCode::BadRequest,
                        format!("`{name}` must be a non-negative integer"),
                    )
                });
            }
        }
    }
    Ok(None)
}

/// Characters of every string in the request except the model name: messages, system prompt,
/// tools. An over-estimate of the prompt, which is what a reservation wants.
fn input_chars(obj: &Map<String, Value>) -> u64 {
    fn chars(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.chars().count() as u64,
            Value::Array(items) => items.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    obj.iter()
        .filter(|(k, _)| k.as_str() != "model")
        .map(|(_, v)| chars(v))
        .sum()
}

/// An OpenAI streaming (chat) completion that did not ask for the final usage chunk.
fn asks_stream_without_usage(route: &str, obj: &Map<String, Value>) -> bool {
    let completions = route == "/v1/chat/completions" || route == "/v1/completions";
    let streaming = obj.get("stream").and_then(Value::as_bool) == Some(true);
    let include = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool);
    completions && streaming && include != Some(true)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn llm(flavor: ProfileKind) -> Llm {
        let price = ModelPrice {
            input: 1_000_000,
            output: 2_000_000,
            cached_input: 500_000,
            max_output_tokens: 100,
        };
        let prices = Prices(HashMap::from([("m".to_string(), price)]));
        Llm::new(flavor, prices, 1 << 20).expect("llm profile")
    }

    fn prepare(flavor: ProfileKind, path: &str, body: &str) -> Result<Call, Denial> {
        llm(flavor).prepare(path, Bytes::from(body.to_string()), None)
    }

    #[test]
    fn generation_routes_match_on_the_path_suffix() {
        let l = llm(ProfileKind::OpenAi);
        let route = |m: Method, p: &str| l.generation_route(&m, p);
        let chat = Some("/v1/chat/completions");
        assert_eq!(route(Method::POST, "/v1/chat/completions"), chat);
        assert_eq!(route(Method::POST, "/openai/v1/chat/completions/"), chat);
        assert_eq!(
            route(Method::POST, "/v1/completions"),
            Some("/v1/completions")
        );
        assert_eq!(route(Method::POST, "/v1/messages"), Some("/v1/messages"));
        assert_eq!(route(Method::GET, "/v1/chat/completions"), None);
        assert_eq!(route(Method::POST, "/v1/embeddings"), None);
        assert!(Llm::new(ProfileKind::Generic, Prices::default(), 1).is_none());
    }

    #[test]
    fn estimate_is_input_chars_over_four_plus_max_output() {
        // "hello world!" = 12 chars (+ "user" 4) → 4 tokens × $1/M + 10 × $2/M = 24 micros.
        let body = r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hello world!"}]}"#;
        let call = prepare(ProfileKind::Anthropic, "/v1/messages", body).unwrap();
        assert_eq!(call.input_tokens, 4);
        assert_eq!(call.estimate, 4 + 20);
        assert_eq!(call.body, body.as_bytes(), "forwarded unchanged");
        // Without a maximum the model's default (100) is reserved.
        let body = r#"{"model":"m","input":"abcd"}"#;
        let call = prepare(ProfileKind::OpenAi, "/v1/responses", body).unwrap();
        assert_eq!(call.estimate, 1 + 200);
        let body = r#"{"model":"m","max_completion_tokens":7,"messages":[]}"#;
        let call = prepare(ProfileKind::OpenAi, "/v1/chat/completions", body).unwrap();
        assert_eq!(call.estimate, 14);
    }

    #[test]
    fn bad_bodies_and_unknown_models_are_refused() {
        let code = |body: &str| {
            prepare(ProfileKind::OpenAi, "/v1/chat/completions", body)
                .unwrap_err()
                .code
        };
        assert_eq!(code("{not json"), DenyCode::BadRequest);
        assert_eq!(code(""), DenyCode::BadRequest);
        assert_eq!(code("[1]"), DenyCode::BadRequest);
        assert_eq!(code(r#"{"messages":[]}"#), DenyCode::BadRequest);
        assert_eq!(code(r#"{"model":3}"#), DenyCode::BadRequest);
        assert_eq!(
            code(r#"{"model":"m","max_tokens":-1}"#),
            DenyCode::BadRequest
        );
        assert_eq!(code(r#"{"model":"gpt-5"}"#), DenyCode::ModelNotAllowed);
        // A key's allow-list narrows the price table.
        let l = llm(ProfileKind::OpenAi);
        let body = || Bytes::from_static(br#"{"model":"m"}"#);
        let route = "/v1/chat/completions";
        let only = |m: &str| vec![m.to_string()];
        assert!(l.prepare(route, body(), Some(&only("m"))).is_ok());
        let err = l.prepare(route, body(), Some(&only("x"))).unwrap_err();
        assert_eq!(err.code, DenyCode::ModelNotAllowed);
        assert!(l.prepare(route, body(), Some(&[])).is_err());
    }

    #[test]
    fn openai_streams_are_asked_for_usage() {
        let path = "/v1/chat/completions";
        let call = prepare(ProfileKind::OpenAi, path, r#"{"model":"m","stream":true}"#).unwrap();
        assert!(call.rewrites_response());
        let sent: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(sent["stream"], true);
        let asked = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let call = prepare(ProfileKind::OpenAi, path, asked).unwrap();
        assert!(!call.rewrites_response());
        assert_eq!(call.body, asked.as_bytes());
        // Not streaming, or Anthropic (usage always reported): nothing to add.
        let plain = prepare(ProfileKind::OpenAi, path, r#"{"model":"m"}"#).unwrap();
        assert!(!plain.rewrites_response());
        let body = r#"{"model":"m","stream":true}"#;
        let anthropic = prepare(ProfileKind::Anthropic, "/v1/messages", body).unwrap();
        assert!(!anthropic.rewrites_response());
    }
}
