//! Tree-hashes a file through the same pipeline a backup uses (large reads, parts hashed on
//! several cores) and prints the hash and the time taken. Used by `benches/run.py`.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use glacier_backup::archiver::parts::PartChecker;
use glacier_backup::archiver::SourceKind;
use glacier_backup::candidate::{Candidate, PathCandidate};
use glacier_backup::stream::archive_parts;

#[tokio::main]
async fn main() {
    let path = std::env::args_os()
        .nth(1)
        .expect("usage: treehash_file FILE [PART_MIB]");
    let part_mib: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("PART_MIB is a number"))
        .unwrap_or(8);
    let start = Instant::now();
    let candidate = Arc::new(PathCandidate::new(path.into(), SourceKind::File));
    let size = std::fs::metadata(candidate.source_path()).map_or(0, |m| m.len());
    let mut parts = archive_parts(candidate, part_mib << 20, size);
    let mut checker = PartChecker::new("bench", false);
    while let Some(part) = parts.next().await {
        checker
            .accept(&part.expect("file reads"))
            .expect("parts in order");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{} {} {seconds:.3}", checker.tree_hash(), checker.size());
}
