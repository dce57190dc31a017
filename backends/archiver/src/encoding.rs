//! How an archive's bytes were transformed before they were stored: compressed with zstd,
//! encrypted with age, both, or neither. Stored bytes are `age(zstd(archive))`, each layer
//! optional, so stock tools undo them: `age -d -i KEY | zstd -d`.

/// Compression applied to an archive before it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as made (the Python tool's archives, and the default).
    #[default]
    None,
    /// zstd frames; the level, when known (a key alone does not say).
    Zstd(Option<i32>),
}

impl Compression {
    /// `none` or `zstd`, as the ledger and the metadata spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd(_) => "zstd",
        }
    }

    /// The zstd level, when compressed and known.
    pub fn level(self) -> Option<i32> {
        match self {
            Compression::Zstd(level) => level,
            Compression::None => None,
        }
    }

    /// Inverse of [`Compression::as_str`], with the level if known.
    pub fn parse(name: &str, level: Option<i32>) -> Option<Self> {
        match name {
            "none" | "" => Some(Compression::None),
            "zstd" => Some(Compression::Zstd(level)),
            _ => None,
        }
    }
}

/// The layers on an archive's stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Compression, the inner layer.
    pub compression: Compression,
    /// Encrypted with age, the outer layer.
    pub encrypted: bool,
    /// The age recipients (`age1...`) it was encrypted to, when known.
    pub recipients: Vec<String>,
}

impl Encoding {
    /// No layer: the archive's own bytes.
    pub fn plain() -> Self {
        Encoding::default()
    }

    /// True when the stored bytes are the archive's own.
    pub fn is_plain(&self) -> bool {
        self.compression == Compression::None && !self.encrypted
    }

    /// What stored names end with: `.zst`, `.age`, `.zst.age` or nothing, so that a file
    /// copied out of a bucket says which tools open it.
    pub fn suffix(&self) -> &'static str {
        match (self.compression, self.encrypted) {
            (Compression::None, false) => "",
            (Compression::None, true) => ".age",
            (Compression::Zstd(_), false) => ".zst",
            (Compression::Zstd(_), true) => ".zst.age",
        }
    }

    /// Reads the layers off the end of a stored name (the inverse of [`Encoding::suffix`]):
    /// the encoding and the name without its suffix.
    pub fn split_suffix(name: &str) -> (Encoding, &str) {
        let (name, encrypted) = match name.strip_suffix(".age") {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        let (name, compression) = match name.strip_suffix(".zst") {
            Some(rest) => (rest, Compression::Zstd(None)),
            None => (name, Compression::None),
        };
        (
            Encoding {
                compression,
                encrypted,
                recipients: Vec::new(),
            },
            name,
        )
    }

    /// The recipients as one comma-separated list, as the ledger and the metadata keep them
    /// (`None` when there are none).
    pub fn recipients_list(&self) -> Option<String> {
        (!self.recipients.is_empty()).then(|| self.recipients.join(","))
    }

    /// Inverse of [`Encoding::recipients_list`].
    pub fn parse_recipients(list: &str) -> Vec<String> {
        list.split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A short tag for one-line metadata: `zstd3`, `zstd`, `age`, `zstd3+age`; empty when plain.
    pub fn tag(&self) -> String {
        let mut layers = Vec::new();
        match self.compression {
            Compression::None => {}
            Compression::Zstd(Some(level)) => layers.push(format!("zstd{level}")),
            Compression::Zstd(None) => layers.push("zstd".to_owned()),
        }
        if self.encrypted {
            layers.push("age".to_owned());
        }
        layers.join("+")
    }

    /// Inverse of [`Encoding::tag`] (recipients are not part of it); `None` for an unknown layer.
    pub fn from_tag(tag: &str) -> Option<Encoding> {
        let mut encoding = Encoding::plain();
        for layer in tag.split('+').filter(|l| !l.is_empty()) {
            if layer == "age" && !encoding.encrypted {
                encoding.encrypted = true;
            } else if let Some(level) = layer.strip_prefix("zstd") {
                if encoding.compression != Compression::None || encoding.encrypted {
                    return None;
                }
                let level = match level {
                    "" => None,
                    digits => Some(digits.parse().ok()?),
                };
                encoding.compression = Compression::Zstd(level);
            } else {
                return None;
            }
        }
        Some(encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_tags_round_trip() {
        for (compression, encrypted, suffix, tag) in [
            (Compression::None, false, "", ""),
            (Compression::None, true, ".age", "age"),
            (Compression::Zstd(Some(3)), false, ".zst", "zstd3"),
            (Compression::Zstd(Some(19)), true, ".zst.age", "zstd19+age"),
        ] {
            let encoding = Encoding {
                compression,
                encrypted,
                recipients: Vec::new(),
            };
            assert_eq!(encoding.suffix(), suffix);
            assert_eq!(encoding.tag(), tag);
            assert_eq!(Encoding::from_tag(tag), Some(encoding.clone()));
            let stored = format!("x.tar{suffix}");
            let (back, rest) = Encoding::split_suffix(&stored);
            assert_eq!(rest, "x.tar");
            assert_eq!(
                (back.compression.as_str(), back.encrypted),
                (compression.as_str(), encrypted)
            );
        }
        for bad in ["gzip", "age+zstd3", "zstdx", "age+age"] {
            assert_eq!(Encoding::from_tag(bad), None, "{bad}");
        }
    }
}
