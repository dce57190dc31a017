//! glacier-backup's engine: configuration, backup candidates, the ledger of uploads, archive
//! streaming and the backup run (`backup`). The storage backends implement
//! [`glacier_backup_archiver::Archiver`]; the binary in `main.rs` wires everything to the CLI.

#![warn(missing_docs)]

pub mod config;

pub use glacier_backup_archiver as archiver;
pub use glacier_backup_archiver::{shown, shown_bytes};
pub mod backends;
pub mod backup;
pub mod candidate;
pub mod fsat;
pub mod inventory;
pub mod ledger;
pub mod poll;
pub mod resolve;
pub mod restore;
pub mod stream;
pub mod verify;

/// A time as shown to people: UTC, to the second, RFC 3339.
pub fn display_time(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
