//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod config;
pub mod moto;
pub mod sandbox;
pub mod setup;
#[cfg(feature = "azure")]
pub mod stall;
pub mod trees;

/// `len` incompressible bytes, the same for the same `seed` (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // Spread, so that small seeds (1, 2, 3) start far apart.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Waits until `done` holds, looking every 2 ms (a test that kills a run at a moment needs to
/// see it soon), for two minutes at most; `what` says what never happened.
/// Every file below `dir` (directories walked, not listed), sorted.
pub fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => stack.push(path),
                false => found.push(path),
            }
        }
    }
    found.sort();
    found
}

pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
