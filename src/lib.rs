//! Tollgate: an authenticating reverse-proxy gateway with lock-free quotas.
//!
//! The folders show the architecture: `config` (TOML → validated model), `domain` (pure types
//! and decisions), `store` (durable state), `index` (keys in memory), `proxy` (the data plane),
//! `api` (the control plane), `manage` (management operations shared by the API and the CLI),
//! `metrics` (Prometheus), `gateway` (assembly), plus the `demo` and its `echo` upstream.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
pub mod echo;
pub mod gateway;
pub mod index;
pub mod manage;
pub mod meter;
pub mod metrics;
pub mod proxy;
pub mod shutdown;
pub mod store;
