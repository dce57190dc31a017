//! glacier-backup's engine: configuration, backup candidates, the ledger of uploads, archive
//! streaming and the backup run. The storage backends implement
//! [`glacier_backup_archiver::Archiver`]; the binary in `main.rs` wires everything to the CLI.

#![warn(missing_docs)]

pub mod config;

pub use glacier_backup_archiver as archiver;
pub mod candidate;
pub mod ledger;
pub mod source;
pub mod stream;
