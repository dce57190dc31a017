//! What the fake holds: vaults, their archives, open uploads and jobs.

use super::*;

#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) description: String,
    pub(crate) created: String,
    pub(crate) part_size: u64,
    /// By offset: bytes (empty unless kept), length and tree hash.
    pub(crate) parts: BTreeMap<u64, (Bytes, u64, TreeHash)>,
}

#[derive(Debug)]
pub(crate) struct Job {
    /// Empty for an inventory job.
    pub(crate) archive_id: String,
    /// An inventory job's output, taken when the job starts (a real inventory lags too).
    pub(crate) inventory: Option<Bytes>,
    pub(crate) tier: String,
    pub(crate) ready_at: Instant,
    /// The bytes an archive retrieval was asked for (`RetrievalByteRange`), start..end; `None`
    /// for the whole archive.
    pub(crate) range: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Vault {
    pub(crate) archives: HashMap<String, StoredArchive>,
    pub(crate) uploads: HashMap<String, Upload>,
    /// Completed uploads: archive id, size and tree hash, so a repeated Complete answers
    /// with the same archive (Glacier's Complete is idempotent).
    pub(crate) completed: HashMap<String, (String, u64, TreeHash)>,
    pub(crate) jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) vaults: HashMap<String, Vault>,
    pub(crate) behaviour: Behaviour,
    pub(crate) stats: Stats,
    pub(crate) next_id: u64,
    pub(crate) rng: u64,
    pub(crate) requests_since_fault_set: u64,
}

impl State {
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let digest = Sha256::digest(format!("{prefix}{}", self.next_id));
        format!("{prefix}{}", hex::encode(&digest[..24]))
    }

    /// A deterministic coin (xorshift), so failing tests fail the same way every time.
    pub(crate) fn chance(&mut self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 10_000) as f64 / 10_000.0 < rate
    }
}
