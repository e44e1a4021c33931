//! LLM prices and token usage: what one model costs per million tokens (in integer micro-USD,
//! never floats) and the cost of a request's token counts.

use std::collections::HashMap;

/// Output tokens reserved for a request that names no maximum and whose model has no
/// `max_output_tokens` in the price table.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// Tokens per million.
const MTOK: u128 = 1_000_000;

/// One model's prices, micro-USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    pub output: u64,
    /// Input tokens read from the upstream's prompt cache (defaults to `input`).
    pub cached_input: u64,
    /// Output tokens reserved when the request names no maximum.
    pub max_output_tokens: u64,
}

/// Token counts of one request, split by price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens at the full input price.
    pub input: u64,
    /// Input tokens served from the prompt cache.
    pub cached_input: u64,
    pub output: u64,
}

impl ModelPrice {
    /// The cost of `usage` in micro-USD: ceil(Σ tokens × price / 1e6), saturating.
    pub fn cost(&self, usage: TokenUsage) -> u64 {
        let part = |tokens: u64, price: u64| tokens as u128 * price as u128;
        let total = part(usage.input, self.input)
            .saturating_add(part(usage.cached_input, self.cached_input))
            .saturating_add(part(usage.output, self.output));
        total.div_ceil(MTOK).min(u64::MAX as u128) as u64
    }
}

/// The price table, by model name as the client sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prices(pub HashMap<String, ModelPrice>);

impl Prices {
    /// The prices of `model`, if it is in the table.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.0.get(model)
    }
}

/// Tokens estimated from text: one per four characters, rounded up.
pub fn tokens_from_chars(chars: u64) -> u64 {
    chars.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: ModelPrice = ModelPrice {
        input: 150_000,
        output: 600_000,
        cached_input: 75_000,
        max_output_tokens: 16_384,
    };

    #[test]
    fn cost_is_exact_and_rounds_up_once() {
        let u = |input, cached_input, output| TokenUsage {
            input,
            cached_input,
            output,
        };
        assert_eq!(MINI.cost(u(0, 0, 0)), 0);
        // 1M input tokens at $0.15 = 150 000 micro-USD.
        assert_eq!(MINI.cost(u(1_000_000, 0, 0)), 150_000);
        // 10 input + 20 output = 1.5 + 12 = 13.5 micro-USD → 14.
        assert_eq!(MINI.cost(u(10, 0, 20)), 14);
        // 1 token of anything is still charged.
        assert_eq!(MINI.cost(u(1, 0, 0)), 1);
        assert_eq!(MINI.cost(u(0, 1_000_000, 0)), 75_000);
        let huge = ModelPrice {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: u64::MAX,
            max_output_tokens: 1,
        };
        assert_eq!(huge.cost(u(u64::MAX, u64::MAX, u64::MAX)), u64::MAX);
    }

    #[test]
    fn chars_to_tokens() {
        assert_eq!(tokens_from_chars(0), 0);
        assert_eq!(tokens_from_chars(1), 1);
        assert_eq!(tokens_from_chars(8), 2);
        assert_eq!(tokens_from_chars(9), 3);
    }
}
