//! Tollgate: an authenticating reverse-proxy gateway with lock-free quotas.
//!
//! The folders show the architecture: `config` (TOML → validated model), `domain` (pure types
//! and decisions), `store` (durable state), `proxy` (the data plane), `api` (the control plane),
//! `meter` (usage counters) and `metrics` (Prometheus).
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod store;
