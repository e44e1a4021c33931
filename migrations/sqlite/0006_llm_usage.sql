-- LLM usage per day, key and model: requests, tokens (input at the full price, cached input,
-- output) and token cost in micro-USD at upstream price. Written by the flush.
CREATE TABLE llm_usage_daily (
    day                 TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model               TEXT NOT NULL,
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cost_micros         INTEGER NOT NULL,
    PRIMARY KEY (day, key_id, model)
);
CREATE INDEX llm_usage_daily_key ON llm_usage_daily (key_id, day);
