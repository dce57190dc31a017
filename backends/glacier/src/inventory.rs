//! Reading a vault inventory (the JSON output of an inventory-retrieval job).

use glacier_backup_archiver::{origin, ListedArchive, Listing};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inventory {
    inventory_date: Option<String>,
    #[serde(default)]
    archive_list: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    archive_id: String,
    #[serde(default)]
    archive_description: String,
    creation_date: Option<String>,
    size: u64,
    #[serde(rename = "SHA256TreeHash")]
    sha256_tree_hash: Option<String>,
}

fn date(text: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text?, &Rfc3339).ok()
}

/// The archives listed, each with its origin when the description is one of ours.
pub fn parse(json: &[u8]) -> Result<Listing, serde_json::Error> {
    let inventory: Inventory = serde_json::from_slice(json)?;
    let mut archives: Vec<ListedArchive> = inventory
        .archive_list
        .into_iter()
        .map(|entry| ListedArchive {
            tree_hash: entry.sha256_tree_hash.and_then(|h| h.parse().ok()),
            created_at: date(entry.creation_date.as_deref()),
            origin: origin::decode(&entry.archive_description),
            index_of: origin::indexed_by_description(&entry.archive_description).map(str::to_owned),
            description: Some(entry.archive_description),
            ..ListedArchive::new(entry.archive_id, entry.size)
        })
        .collect();
    archives.sort_by(|a, b| a.archive_id.cmp(&b.archive_id));
    Ok(Listing {
        archives,
        taken_at: date(inventory.inventory_date.as_deref()),
        incomplete: Vec::new(),
        indexes: Vec::new(),
    }
    .split_indexes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_format() {
        let json = br#"{"VaultARN":"arn:aws:glacier:us-east-1:012345678901:vaults/v",
            "InventoryDate":"2026-11-25T06:00:00Z",
            "ArchiveList":[
              {"ArchiveId":"b","ArchiveDescription":"photos.tar gb1:d:1764000000::/home/me/photos",
               "CreationDate":"2026-11-24T10:00:00Z","Size":2048,
               "SHA256TreeHash":"beb0fe31a1c7ca8c6c04d574ea906e3f97b31fdca7571defb5b44dca89b5af60"},
              {"ArchiveId":"a","ArchiveDescription":"backup_2021.tar",
               "CreationDate":"2021-03-20T10:00:00Z","Size":10,"SHA256TreeHash":"nothex"}]}"#;
        let listing = parse(json).unwrap();
        assert_eq!(
            listing.taken_at,
            Some(time::macros::datetime!(2026-11-25 06:00 UTC))
        );
        let [theirs, ours] = &listing.archives[..] else {
            panic!("{listing:?}")
        };
        assert_eq!(theirs.archive_id, "a");
        assert_eq!(theirs.origin, None);
        assert_eq!(theirs.tree_hash, None);
        assert_eq!(theirs.description.as_deref(), Some("backup_2021.tar"));
        let origin = ours.origin.as_ref().unwrap();
        assert_eq!(origin.source_path, std::path::Path::new("/home/me/photos"));
        assert_eq!(ours.size, 2048);
        assert!(ours.tree_hash.is_some());
    }
}
