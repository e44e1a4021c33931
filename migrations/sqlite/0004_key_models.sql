-- Per-key LLM model allow-list: a JSON array of model names, or NULL for any priced model.
ALTER TABLE keys ADD COLUMN models TEXT;
