//! The response side of the LLM profiles: reads the usage the upstream reports as the body
//! streams to the client and settles the request's cost to it.
//!
//! - JSON answers are kept up to [`MAX_JSON`] bytes and parsed at the end for `usage`.
//! - SSE streams are split into events as they pass (only the unfinished event is kept):
//!   OpenAI's final usage chunk (`choices: []` + `usage`, hidden from a client that did not
//!   ask for it), the Responses API's `response.completed`, Anthropic's `message_start`
//!   (input) and `message_delta` (output).
//! - Fallback when no output usage arrived (a stream cut off midway, an upstream that reports
//!   none): the input estimate from the request plus one output token per 4 characters of
//!   generated text seen, counted in `tollgate_usage_missing_total`.
//! - A non-2xx answer costs nothing: upstreams do not bill failed requests.

use bytes::Bytes;
use prometheus::IntCounter;
use serde_json::Value;

use super::Flavor;
use super::sse::{self, MAX_EVENT, Splitter};
use crate::domain::price::{ModelPrice, TokenUsage, tokens_from_chars};
use crate::meter::admit::Ticket;
use crate::meter::body::Observe;

/// The most of a JSON answer kept to find its `usage`.
pub const MAX_JSON: usize = 1 << 20;

/// What the observer needs to know about the request.
#[derive(Debug)]
pub struct Setup {
    pub flavor: Flavor,
    pub price: ModelPrice,
    /// Input tokens estimated from the request text.
    pub input_tokens: u64,
    /// Fixed route cost added to the usage cost.
    pub fixed: u64,
    /// Whether the answer is billable at all (2xx).
    pub billable: bool,
    pub sse: bool,
    pub drop_usage_chunk: bool,
    pub missing: IntCounter,
    /// Where the settled usage is recorded (key and model), if anywhere.
    pub recorder: Option<Recorder>,
}

/// Records a settled answer's tokens and cost under its key and model.
pub struct Recorder {
    pub meter: std::sync::Arc<crate::meter::Meter>,
    pub key: uuid::Uuid,
    pub model: std::sync::Arc<str>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("key", &self.key)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Token counts as reported, field by field (the latest report of a field wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reported {
    input: Option<u64>,
    cached: Option<u64>,
    cache_creation: Option<u64>,
    output: Option<u64>,
}

/// Meters one LLM response.
#[derive(Debug)]
pub struct UsageObserver {
    setup: Setup,
    json: Vec<u8>,
    json_overflow: bool,
    events: Splitter,
    reported: Reported,
    /// Characters of generated text seen (for the fallback).
    text_chars: u64,
    /// Body bytes seen (fallback of the fallback: an unparseable answer).
    body_bytes: u64,
    /// `end` has run (the buffered answer or last event is read).
    ended: bool,
}

impl UsageObserver {
    /// An observer for one response.
    pub fn new(setup: Setup) -> Self {
        UsageObserver {
            setup,
            json: Vec::new(),
            json_overflow: false,
            events: Splitter::default(),
            reported: Reported::default(),
            text_chars: 0,
            body_bytes: 0,
            ended: false,
        }
    }

    /// Reads one parsed JSON value (a whole answer or one SSE event): usage and text.
    fn read(&mut self, v: &Value) {
        self.text_chars += text_chars(v);
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.report(u, true);
        }
        if let Some(u) = v.get("response").and_then(|r| r.get("usage")) {
            self.report(u, true);
        }
        // Anthropic's `message_start`: its output count is a placeholder, the real one comes
        // with `message_delta`.
        if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
            self.report(u, false);
        }
    }

    fn report(&mut self, u: &Value, with_output: bool) {
        if !u.is_object() {
            return;
        }
        let n = |path: &[&str]| {
            let mut v = u;
            for p in path {
                v = v.get(p)?;
            }
            v.as_u64()
        };
        let r = &mut self.reported;
        let input = n(&["prompt_tokens"]).or(n(&["input_tokens"]));
        let cached = n(&["prompt_tokens_details", "cached_tokens"])
            .or(n(&["input_tokens_details", "cached_tokens"]))
            .or(n(&["cache_read_input_tokens"]));
        r.input = input.or(r.input);
        r.cached = cached.or(r.cached);
        r.cache_creation = n(&["cache_creation_input_tokens"]).or(r.cache_creation);
        if with_output {
            let output = n(&["completion_tokens"]).or(n(&["output_tokens"]));
            r.output = output.or(r.output);
        }
    }

    /// One complete SSE event: parsed, and kept for the client unless it is the usage chunk
    /// the client did not ask for.
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) {
        let parsed = sse::data(event)
            .filter(|d| d != "[DONE]")
            .and_then(|d| serde_json::from_str::<Value>(&d).ok());
        let mut keep = true;
        if let Some(v) = parsed {
            self.read(&v);
            let usage_only = v.get("usage").is_some_and(Value::is_object)
                && v.get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
            keep = !(self.setup.drop_usage_chunk && usage_only);
        }
        if keep {
            out.extend_from_slice(event);
        }
    }

    /// The token counts to charge and whether they came from the upstream.
    fn usage(&self) -> (TokenUsage, bool) {
        let r = self.reported;
        let cached = r.cached.unwrap_or(0);
        let input = match (self.setup.flavor, r.input) {
            // OpenAI's prompt count includes the cached tokens.
            (Flavor::OpenAi, Some(n)) => n.saturating_sub(cached),
            // Anthropic's excludes cache reads and writes (writes charged at the input price).
            (Flavor::Anthropic, Some(n)) => n.saturating_add(r.cache_creation.unwrap_or(0)),
            (_, None) => self.setup.input_tokens,
        };
        let cached = if r.input.is_some() { cached } else { 0 };
        let text = if self.text_chars == 0 && !self.setup.sse && self.body_bytes > 0 {
            // An answer we could not read: its size stands for its text.
            self.body_bytes
        } else {
            self.text_chars
        };
        let output = r.output.unwrap_or_else(|| tokens_from_chars(text));
        let usage = TokenUsage {
            input,
            cached_input: cached,
            output,
        };
        (usage, r.output.is_some())
    }
}

impl Observe for UsageObserver {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        self.body_bytes += data.len() as u64;
        if !self.setup.billable {
            return data;
        }
        if !self.setup.sse {
            if !self.json_overflow {
                if self.json.len() + data.len() > MAX_JSON {
                    self.json_overflow = true;
                    self.json = Vec::new();
                } else {
                    self.json.extend_from_slice(&data);
                }
            }
            return data;
        }
        let mut out = Vec::new();
        let mut events = std::mem::take(&mut self.events);
        events.push(&data, |e| self.event(e, &mut out));
        if events.pending_len() > MAX_EVENT {
            // Not an event we need: pass it on unparsed.
            out.extend_from_slice(&events.take_pending());
        }
        self.events = events;
        if !self.setup.drop_usage_chunk {
            return data;
        }
        Bytes::from(out)
    }

    fn end(&mut self) -> Bytes {
        if std::mem::replace(&mut self.ended, true) || !self.setup.billable {
            return Bytes::new();
        }
        if !self.setup.sse {
            if !self.json_overflow
                && let Ok(v) = serde_json::from_slice::<Value>(&std::mem::take(&mut self.json))
            {
                self.read(&v);
            }
            return Bytes::new();
        }
        // A last event without its blank line.
        let tail = self.events.take_pending();
        let mut out = Vec::new();
        if !tail.is_empty() {
            self.event(&tail, &mut out);
        }
        if self.setup.drop_usage_chunk {
            Bytes::from(out)
        } else {
            Bytes::new()
        }
    }

    fn settle(&mut self, ticket: &mut Ticket) {
        if !self.setup.billable {
            ticket.set_actual_cost(self.setup.fixed);
            return;
        }
        // The client's side may stop polling once a declared length is sent, before the
        // body's end is seen: read what is buffered now.
        self.end();
        let (usage, reported) = self.usage();
        if !reported {
            self.setup.missing.inc();
        }
        let cost = self.setup.price.cost(usage);
        ticket.set_actual_cost(cost.saturating_add(self.setup.fixed));
        if let Some(r) = &self.setup.recorder {
            r.meter.llm.record(r.key, &r.model, usage, cost);
        }
    }
}

/// Characters of generated text in one answer or event, in the shapes OpenAI (chat,
/// completions, Responses API) and Anthropic use.
fn text_chars(v: &Value) -> u64 {
    let s = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map_or(0, |s| s.chars().count() as u64)
    };
    let mut n = 0;
    for choice in v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        n += s(choice.get("text"));
        for part in [choice.get("delta"), choice.get("message")]
            .into_iter()
            .flatten()
        {
            n += s(part.get("content"));
            for call in part
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                n += s(call.get("function").and_then(|f| f.get("arguments")));
            }
        }
    }
    match v.get("type").and_then(Value::as_str) {
        Some("response.output_text.delta") => n += s(v.get("delta")),
        Some("content_block_delta") => {
            let delta = v.get("delta");
            n += s(delta.and_then(|d| d.get("text")));
            n += s(delta.and_then(|d| d.get("partial_json")));
        }
        _ => {}
    }
    // Whole answers: Anthropic `content[]`, Responses API `output[].content[]`.
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let outputs = v
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let nested = outputs.flat_map(|o| {
        o.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    });
    for block in blocks.chain(nested) {
        n += s(block.get("text"));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: ModelPrice = ModelPrice {
        input: 1_000_000,
        output: 2_000_000,
        cached_input: 500_000,
        max_output_tokens: 100,
    };

    fn observer(flavor: Flavor, sse: bool, drop_usage_chunk: bool) -> UsageObserver {
        UsageObserver::new(Setup {
            flavor,
            price: PRICE,
            input_tokens: 7,
            fixed: 0,
            billable: true,
            sse,
            drop_usage_chunk,
            missing: IntCounter::new("m", "m").unwrap(),
            recorder: None,
        })
    }

    /// Feeds `body` in chunks of `size` bytes; returns what the client got and the usage.
    fn run(o: &mut UsageObserver, body: &str, size: usize) -> (String, TokenUsage, bool) {
        let mut out = Vec::new();
        for chunk in body.as_bytes().chunks(size) {
            out.extend_from_slice(&o.chunk(Bytes::copy_from_slice(chunk)));
        }
        out.extend_from_slice(&o.end());
        let (usage, reported) = o.usage();
        (String::from_utf8(out).unwrap(), usage, reported)
    }

    const OPENAI_STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\
        \"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn openai_stream_usage_and_the_hidden_chunk() {
        let usage = TokenUsage {
            input: 10,
            cached_input: 2,
            output: 3,
        };
        for size in [1, 7, 64, 4096] {
            let (out, got, reported) = run(
                &mut observer(Flavor::OpenAi, true, true),
                OPENAI_STREAM,
                size,
            );
            assert_eq!((got, reported), (usage, true), "chunks of {size}");
            assert!(!out.contains("prompt_tokens"), "{out}");
            assert!(
                out.contains(" world") && out.ends_with("data: [DONE]\n\n"),
                "{out}"
            );
            let (out, got, _) = run(
                &mut observer(Flavor::OpenAi, true, false),
                OPENAI_STREAM,
                size,
            );
            assert_eq!(out, OPENAI_STREAM, "passed through unchanged");
            assert_eq!(got, usage);
        }
        // 10 × $1 + 2 × $0.5 + 3 × $2 per M = 17 micro-USD.
        assert_eq!(PRICE.cost(usage), 17);
    }

    /// Feeds `body` split at `cuts` (byte offsets, any order); what the client got and the
    /// usage.
    fn run_split(flavor: Flavor, drop: bool, body: &str, cuts: &[usize]) -> (Vec<u8>, TokenUsage) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut o = observer(flavor, true, drop);
        let (mut out, mut at) = (Vec::new(), 0);
        for cut in cuts.into_iter().chain([body.len()]) {
            out.extend_from_slice(&o.chunk(Bytes::copy_from_slice(&body.as_bytes()[at..cut])));
            at = cut;
        }
        out.extend_from_slice(&o.end());
        (out, o.usage().0)
    }

    const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\
        \"message\":{\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":4,\
        \"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\
        \"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn a_stream_split_at_any_byte_gives_the_same_answer_and_usage_as_whole() {
        let cases = [
            (Flavor::OpenAi, true, OPENAI_STREAM),
            (Flavor::OpenAi, false, OPENAI_STREAM),
            (Flavor::Anthropic, false, ANTHROPIC_STREAM),
        ];
        for (flavor, drop, body) in cases {
            let whole = run_split(flavor, drop, body, &[]);
            assert!(whole.1.output > 0, "{flavor:?}: usage read");
            for cut in 0..=body.len() {
                assert_eq!(
                    run_split(flavor, drop, body, &[cut]),
                    whole,
                    "{flavor:?} cut at {cut}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_stream_in_any_pieces_gives_the_same_answer_and_usage_as_whole(
            cuts in proptest::collection::vec(0usize..1024, 0..24),
            drop in proptest::bool::ANY,
        ) {
            for (flavor, body) in [(Flavor::OpenAi, OPENAI_STREAM), (Flavor::Anthropic, ANTHROPIC_STREAM)] {
                let drop = drop && flavor == Flavor::OpenAi;
                let whole = run_split(flavor, drop, body, &[]);
                proptest::prop_assert_eq!(run_split(flavor, drop, body, &cuts), whole);
            }
        }
    }

    #[test]
    fn anthropic_stream_usage() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":\
            {\"input_tokens\":20,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let (out, got, reported) = run(&mut observer(Flavor::Anthropic, true, false), stream, 5);
        assert_eq!(out, stream);
        assert!(reported);
        let want = TokenUsage {
            input: 20,
            cached_input: 4,
            output: 9,
        };
        assert_eq!(got, want);
        // Cut after the text: input from message_start, output from the text (8 chars → 2).
        let cut = &stream[..stream.find("event: message_delta").unwrap()];
        let mut o = observer(Flavor::Anthropic, true, false);
        for chunk in cut.as_bytes().chunks(9) {
            o.chunk(Bytes::copy_from_slice(chunk));
        }
        let (got, reported) = o.usage();
        assert!(!reported);
        assert_eq!((got.input, got.cached_input, got.output), (20, 4, 2));
    }

    #[test]
    fn openai_responses_api_stream() {
        let stream = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi!\"}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":\
            {\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":3},\"output_tokens\":4}}}\n\n";
        let (out, got, reported) = run(&mut observer(Flavor::OpenAi, true, false), stream, 3);
        assert_eq!(out, stream);
        assert!(reported);
        let want = TokenUsage {
            input: 6,
            cached_input: 3,
            output: 4,
        };
        assert_eq!(got, want);
    }

    #[test]
    fn json_answers() {
        let openai = r#"{"choices":[{"message":{"content":"abc"}}],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
        let (out, got, reported) = run(&mut observer(Flavor::OpenAi, false, false), openai, 10);
        assert_eq!(out, openai);
        assert!(reported);
        assert_eq!((got.input, got.cached_input, got.output), (5, 0, 6));
        let anthropic = r#"{"content":[{"type":"text","text":"abcdefgh"}],"usage":{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":2}}"#;
        let (_, got, _) = run(
            &mut observer(Flavor::Anthropic, false, false),
            anthropic,
            10,
        );
        assert_eq!((got.input, got.output), (5, 4));
        // No usage: the request's input estimate plus the answer's text (8 chars → 2).
        let bare = r#"{"content":[{"type":"text","text":"abcdefgh"}]}"#;
        let (_, got, reported) = run(&mut observer(Flavor::Anthropic, false, false), bare, 10);
        assert!(!reported);
        assert_eq!((got.input, got.output), (7, 2));
    }

    #[test]
    fn failed_answers_cost_only_the_route() {
        let mut o = observer(Flavor::OpenAi, false, false);
        o.setup.billable = false;
        o.setup.fixed = 3;
        o.chunk(Bytes::from_static(b"{\"error\":{}}"));
        let mut ticket = Ticket::default();
        o.settle(&mut ticket);
        assert_eq!(o.setup.missing.get(), 0);
    }
}
