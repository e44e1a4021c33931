//! Validation of `[prices."MODEL"]`: USD per million tokens (decimal strings or numbers, at
//! most 6 decimals) become exact micro-USD per million tokens.

use std::collections::{BTreeMap, HashMap};

use super::{Errors, all};
use crate::config::file::{Failed, NumOrString, PriceFile, entry_path};
use crate::config::units;
use crate::domain::price::{DEFAULT_MAX_OUTPUT_TOKENS, ModelPrice, Prices};

pub(super) fn prices(
    table: &BTreeMap<String, PriceFile>,
    failed: &Failed,
    e: &mut Errors,
) -> Option<Prices> {
    let entries = table
        .iter()
        .map(|(model, p)| {
            let path = entry_path("prices", model);
            if failed.contains(&path) {
                return None;
            }
            if model.trim().is_empty() {
                e.push(path, "the model name must not be empty");
                return None;
            }
            price(p, &path, e).map(|price| (model.clone(), price))
        })
        .collect();
    let entries: HashMap<String, ModelPrice> = all(entries)?.into_iter().collect();
    Some(Prices(entries))
}

fn price(p: &PriceFile, path: &str, e: &mut Errors) -> Option<ModelPrice> {
    let at = |field: &str| format!("{path}.{field}");
    let required = |v: &Option<NumOrString>| match v {
        None => Err("is required (USD per million tokens)".to_string()),
        Some(v) => usd(v),
    };
    let input = e.check(&at("input_usd_per_mtok"), required(&p.input_usd_per_mtok));
    let output = e.check(&at("output_usd_per_mtok"), required(&p.output_usd_per_mtok));
    let cached = p.cached_input_usd_per_mtok.as_ref().map(usd).transpose();
    let cached = e.check(&at("cached_input_usd_per_mtok"), cached);
    let max = match p.max_output_tokens {
        None => Ok(DEFAULT_MAX_OUTPUT_TOKENS),
        Some(n) => u64::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| "must be greater than 0".to_string()),
    };
    let max_output_tokens = e.check(&at("max_output_tokens"), max);
    let input = input?;
    Some(ModelPrice {
        input,
        output: output?,
        cached_input: cached?.unwrap_or(input),
        max_output_tokens: max_output_tokens?,
    })
}

fn usd(value: &NumOrString) -> Result<u64, String> {
    match value {
        NumOrString::Int(n) => units::usd_micros_from_int(*n),
        NumOrString::Float(f) => units::usd_micros_from_float(*f),
        NumOrString::Str(s) => units::parse_usd_micros(s),
    }
}
