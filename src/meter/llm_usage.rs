//! LLM usage per key and model (requests, input, cached input and output tokens, cost), added up
//! in memory as answers settle and written to `llm_usage_daily` by the flush, beside the
//! counters. LLM requests are few and slow next to the proxy's other work, so one mutex over a
//! small map is enough; it is held for a few map operations, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::domain::price::TokenUsage;

/// Totals of one key and model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LlmRow {
    pub key_id: Uuid,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Token cost in micro-USD at upstream price.
    pub cost_micros: u64,
}

impl LlmRow {
    fn add(&mut self, other: &LlmRow) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_micros += other.cost_micros;
    }
}

/// Usage not written to the store yet, by (key, model).
#[derive(Debug, Default)]
pub struct LlmUsage {
    pending: Mutex<HashMap<(Uuid, Arc<str>), LlmRow>>,
    /// A batch whose write failed, retried as is with its idempotency token (a commit whose
    /// acknowledgement was lost is never applied twice).
    failed: Mutex<Option<(String, Vec<LlmRow>)>>,
}

impl LlmUsage {
    fn lock(&self) -> MutexGuard<'_, HashMap<(Uuid, Arc<str>), LlmRow>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one settled answer.
    pub fn record(&self, key: Uuid, model: &Arc<str>, usage: TokenUsage, cost_micros: u64) {
        let one = LlmRow {
            key_id: key,
            model: model.to_string(),
            requests: 1,
            input_tokens: usage.input,
            cached_input_tokens: usage.cached_input,
            output_tokens: usage.output,
            cost_micros,
        };
        self.lock()
            .entry((key, model.clone()))
            .or_insert_with(|| LlmRow {
                key_id: key,
                model: model.to_string(),
                ..LlmRow::default()
            })
            .add(&one);
    }

    fn failed(&self) -> MutexGuard<'_, Option<(String, Vec<LlmRow>)>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next batch to write with its token: the failed one if any, else everything pending
    /// under a new token (empty if there is nothing).
    pub fn take_batch(&self) -> (String, Vec<LlmRow>) {
        if let Some(batch) = self.failed().take() {
            return batch;
        }
        let rows = self.lock().drain().map(|(_, row)| row).collect();
        (Uuid::new_v4().to_string(), rows)
    }

    /// Keeps a batch whose write failed for the next flush.
    pub fn keep_failed(&self, token: String, rows: Vec<LlmRow>) {
        *self.failed() = Some((token, rows));
    }

    /// What is not written yet for one key.
    pub fn pending_for(&self, key: Uuid) -> Vec<LlmRow> {
        let mut rows: Vec<LlmRow> = self
            .lock()
            .values()
            .filter(|row| row.key_id == key)
            .cloned()
            .collect();
        if let Some((_, failed)) = &*self.failed() {
            rows.extend(failed.iter().filter(|row| row.key_id == key).cloned());
        }
        rows
    }
}

/// `rows` and `more` added up by model, sorted by model.
pub fn merge_by_model(rows: Vec<LlmRow>, more: Vec<LlmRow>) -> Vec<LlmRow> {
    let mut by_model: HashMap<String, LlmRow> = HashMap::new();
    for row in rows.into_iter().chain(more) {
        match by_model.get_mut(&row.model) {
            Some(existing) => existing.add(&row),
            None => {
                by_model.insert(row.model.clone(), row);
            }
        }
    }
    let mut merged: Vec<LlmRow> = by_model.into_values().collect();
    merged.sort_unstable_by(|a, b| a.model.cmp(&b.model));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up_and_a_failed_write_is_restored() {
        let usage = LlmUsage::default();
        let (key, model): (Uuid, Arc<str>) = (Uuid::new_v4(), "gpt".into());
        let tokens = TokenUsage {
            input: 10,
            cached_input: 2,
            output: 5,
        };
        usage.record(key, &model, tokens, 100);
        usage.record(key, &model, tokens, 100);
        let (token, rows) = usage.take_batch();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].requests, rows[0].output_tokens, rows[0].cost_micros),
            (2, 10, 200)
        );
        assert!(usage.take_batch().1.is_empty());
        usage.record(key, &model, tokens, 100);
        usage.keep_failed(token.clone(), rows);
        let merged = merge_by_model(Vec::new(), usage.pending_for(key));
        assert_eq!((merged[0].requests, merged[0].input_tokens), (3, 30));
        assert!(usage.pending_for(Uuid::new_v4()).is_empty());
        // The failed batch is retried first, with its own token.
        assert_eq!(usage.take_batch().0, token);
        assert_eq!(usage.take_batch().1[0].requests, 1);
    }
}
