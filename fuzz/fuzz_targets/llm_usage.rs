//! LLM usage metering (JSON answers and SSE streams, OpenAI and Anthropic) never panics on any
//! answer cut into any pieces, and passes through what it does not hide.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prometheus::IntCounter;
use tollgate::domain::price::ModelPrice;
use tollgate::meter::body::Observe;
use tollgate::proxy::llm::Flavor;
use tollgate::proxy::llm::usage::{Setup, UsageObserver};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let flavor = if mode & 1 == 0 { Flavor::OpenAi } else { Flavor::Anthropic };
    let sse = mode & 2 != 0;
    let drop_usage_chunk = sse && flavor == Flavor::OpenAi && mode & 4 != 0;
    let mut observer = UsageObserver::new(Setup {
        flavor,
        price: ModelPrice {
            input: 1_000_000,
            output: 2_000_000,
            cached_input: 500_000,
            max_output_tokens: 100,
        },
        input_tokens: 7,
        fixed: 0,
        billable: true,
        sse,
        drop_usage_chunk,
        missing: IntCounter::new("missing", "missing").unwrap(),
        recorder: None,
    });
    let piece = usize::from(mode >> 3) + 1;
    let mut out = Vec::new();
    for chunk in body.chunks(piece) {
        out.extend_from_slice(&observer.chunk(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&observer.end());
    if !drop_usage_chunk {
        assert_eq!(out, body, "an answer passes through unchanged");
    }
});
