//! Reading a key file (identities, recipients, the authentication key) safely: the one reader
//! of every key file, for `keys.rs`, `auth.rs` and the configuration.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Longest key file read (age's own limit for identity files): a guard against a device that
/// never ends, such as `/dev/zero`.
pub const MAX_KEY_FILE_BYTES: u64 = 16 << 20;

/// Reads a key file (identities or recipients) whole. Anything but a regular file is refused
/// before a byte is read: it is opened without blocking, so a FIFO cannot hang the run, and
/// checked by the handle opened, so it cannot be swapped between the check and the read. A
/// file over [`MAX_KEY_FILE_BYTES`] is refused rather than cut short.
pub fn read_key_file(path: &Path) -> io::Result<String> {
    read_key_file_and_mode(path).map(|(text, _)| text)
}

/// [`read_key_file`], with the mode of the file read (from the handle read).
pub(super) fn read_key_file_and_mode(path: &Path) -> io::Result<(String, u32)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory is never read as a key file)",
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, too large for a key file",
                MAX_KEY_FILE_BYTES >> 20
            ),
        )
    };
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(too_large());
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_KEY_FILE_BYTES + 1), &mut text)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(too_large());
    }
    Ok((text, meta.permissions().mode()))
}
