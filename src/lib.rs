//! microbadger: a container-image metadata service.
//!
//! It reads image manifests and config blobs (never layers) from Docker Hub or any OCI
//! registry, turns them into labels, layers, platforms and a label-schema / OCI-annotation
//! compliance report, and (in later parts) serves pages, badges and a JSON API, refreshed by
//! webhooks and hourly by workers sized by a built-in microscaler.
//!
//! # Layout
//! - [`reference`]: image reference parsing and normalisation (pure).
//! - [`oci`]: wire types for manifests, indexes and image configs (pure).
//! - [`inspect`]: manifest + config -> [`inspect::ImageVersion`], derived fields, compliance (pure).
//! - [`registry`]: talking to registries: auth, manifests, blobs, tags, limits, retries,
//!   allow-list and SSRF guard; [`registry::hub`] for Docker Hub's repository API.
//! - [`store`]: repositories, versions, tags and the event log (SQLite or PostgreSQL).
//! - [`queue`]: prioritised, deduplicated jobs with leases (SQLite file or Redis).
//! - [`worker`], [`scheduler`]: refresh jobs, and the hourly refresh of every repository.
//! - [`web`]: pages, badges, JSON API and webhooks (axum); [`badge`] renders SVG badges (pure).
//! - [`app`]: the backends built once from the configuration.
//! - [`config`]: one [`config::Config`] from `MICROBADGER_*` variables.
//! - [`cli`]: the clap commands; `main.rs` only calls [`cli::run`].
//!
//! Data flows one way: registry -> inspect -> (store -> web). The pure modules never do I/O.

pub mod app;
pub mod badge;
pub mod cli;
pub mod config;
pub mod inspect;
pub mod oci;
pub mod queue;
pub mod reference;
pub mod registry;
pub mod scaler;
pub mod scheduler;
pub mod store;
pub mod web;
pub mod worker;
