//! The integration tests, one binary: the real `glacier-backup` binary and the library's public
//! API against a sandbox per test, a local destination, the fake Glacier and moto_server (AWS
//! stand-ins on 127.0.0.1 only). Modules by topic; AWS ones only in builds with their backend.

mod support;

#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "local")]
mod bandwidth;
#[cfg(feature = "local")]
mod catalog;
mod chains;
mod cli;
mod engine;
#[cfg(feature = "glacier")]
mod glacier_fake;
#[cfg(feature = "local")]
mod indexes;
#[cfg(all(feature = "s3", feature = "glacier", feature = "local"))]
mod layers;
#[cfg(all(feature = "s3", feature = "glacier"))]
mod migrate;
#[cfg(feature = "glacier")]
mod moto_glacier;
#[cfg(all(feature = "s3", feature = "glacier", feature = "local"))]
mod moto_s3;
mod operator;
#[cfg(feature = "local")]
mod parallel;
#[cfg(feature = "local")]
mod partial;
#[cfg(feature = "local")]
mod prune;
#[cfg(all(feature = "s3", feature = "local"))]
mod stats;
