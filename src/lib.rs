//! glacier-backup's engine, usable on its own: every verb's loop is here, and the binary only
//! parses arguments, prints the reports and picks exit codes.
//!
//! - Configuration: [`config::load`] reads a file; [`config::Config::empty`] starts one in
//!   code (set `backend`, `backend_sections`, push [`config::PathRule`]s).
//! - The destination: [`config::Config::open_archiver`] builds the configured backend (from
//!   the registry, [`backends`]), an [`archiver::Archiver`]; [`config::Config::ledger_path`],
//!   [`ledger::LedgerLock`] and [`ledger::Ledger`] are its record of uploads.
//! - Backup: [`resolve::resolve`] lists the candidates, [`backup::run_backup`] uploads what
//!   needs it and returns a [`backup::RunReport`].
//! - Restore: [`restore::RestoreRequest::new`], [`restore::select`], then
//!   [`restore::restore_all`], which returns a [`restore::RestoreReport`].
//! - Migrate: [`migrate::Plan`] and [`migrate::Cost`] before, [`migrate::migrate_all`] returning
//!   a [`migrate::MigrateReport`].
//! - Inventory and verify: [`inventory`], [`verify`].
//! - Progress goes to a [`progress::Progress`] the caller implements; logs go through `tracing`
//!   to whatever subscriber the caller installs (the library installs none).
//!
//! `examples/library.rs` runs a backup and a restore this way, with no config file.

#![warn(missing_docs)]

pub mod config;

pub use glacier_backup_archiver as archiver;
pub use glacier_backup_archiver::{shown, shown_bytes};
pub mod backends;
pub mod backup;
pub mod candidate;
pub mod catalog;
pub mod chain;
pub mod clock;
pub mod codec;
pub mod costs;
pub mod fsat;
pub mod inventory;
pub mod ledger;
pub mod migrate;
pub mod poll;
pub mod progress;
pub mod prune;
pub mod resolve;
pub mod restore;
pub mod stats;
pub mod stream;
pub mod upload;
pub mod verify;

/// A size as shown to people: `512 B`, `1.5 KiB`, `3.0 GiB` (powers of 1024). Exact byte
/// counts stay in JSON output and the ledger.
pub fn display_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// An error and its causes on one line, each cause once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A time as shown to people: UTC, to the second, RFC 3339.
pub fn display_time(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod display_tests {
    use super::display_size;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(display_size(0), "0 B");
        assert_eq!(display_size(1023), "1023 B");
        assert_eq!(display_size(1536), "1.5 KiB");
        assert_eq!(display_size(3 << 30), "3.0 GiB");
    }
}
