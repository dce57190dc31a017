//! Azurite's blob service on a port of 127.0.0.1 it chose itself, storing into a directory of
//! its own, stopped (by its pid) when dropped: the one launcher for the root's integration
//! tests and the azure backend's own. `scripts/test` installs Azurite (npm) into the
//! workspace's `.azurite` and Azure's Python client into `.azurite/venv`; set AZURITE to use another
//! Azurite.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's one account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its key, published by Microsoft for the emulator.
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    /// The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
    child: Child,
    _data: tempfile::TempDir,
}

/// What Azure's own client library reads of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    /// `Hot`, `Cool`, `Cold`...
    pub tier: String,
    pub metadata: BTreeMap<String, String>,
    pub size: u64,
}

fn workspace() -> PathBuf {
    // This crate sits two levels below the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn executable() -> PathBuf {
    std::env::var_os("AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".azurite/node_modules/.bin/azurite-blob"))
}

fn python() -> PathBuf {
    workspace().join(".azurite/venv/bin/python")
}

impl Azurite {
    pub fn start() -> Azurite {
        let exe = executable();
        assert!(
            exe.exists(),
            "{} not found: run scripts/test, which installs Azurite into .azurite",
            exe.display()
        );
        let data = tempfile::tempdir().expect("azurite data directory");
        // Port 0: Azurite binds a free port itself and says which.
        let mut child = Command::new(&exe)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(data.path())
            // object_store may speak a newer API version than this Azurite knows.
            .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let (found, address) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            use std::io::BufRead;
            // Read to the end, so Azurite's output never fills the pipe and stalls it.
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(address) = line.split("listens on http://").nth(1) {
                    let _ = found.send(address.trim().to_owned());
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(60))
            .expect("Azurite did not say where it listens");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Azurite {
            endpoint: format!("http://{address}/{ACCOUNT}"),
            child,
            _data: data,
        }
    }

    /// The process id, for a test that stops it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection string for Azure's own clients.
    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.endpoint
        )
    }

    /// Runs `script` with Azure's Python client, `service` bound to this Azurite: its output.
    fn python(&self, script: &str) -> String {
        let python = python();
        let program = format!(
            "import json, sys\nfrom azure.storage.blob import BlobServiceClient\n\
             service = BlobServiceClient.from_connection_string(sys.argv[1])\n{script}"
        );
        let out = Command::new(&python)
            .args(["-c", &program, &self.connection_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "azure-storage-blob failed (scripts/test installs it into .azurite/venv): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Creates a container.
    pub fn create_container(&self, name: &str) {
        self.python(&format!("service.create_container({name:?})"));
    }

    /// Stores a small blob at `key` and takes an infinite lease on it, as another writer could:
    /// Azure then refuses to replace or delete it without the lease's id.
    pub fn leased_blob(&self, container: &str, key: &str) {
        self.python(&format!(
            "blob = service.get_blob_client({container:?}, {key:?})\n\
             blob.upload_blob(b'held')\n\
             blob.acquire_lease(lease_duration=-1)"
        ));
    }

    /// Deletes a blob, as another writer could.
    pub fn delete_blob(&self, container: &str, key: &str) {
        self.python(&format!(
            "service.get_blob_client({container:?}, {key:?}).delete_blob()"
        ));
    }

    /// Every blob in a container by name, with its tier, metadata and size as Azure's own
    /// client library reads them (one listing).
    pub fn blobs(&self, container: &str) -> BTreeMap<String, BlobProperties> {
        let out = self.python(&format!(
            "blobs = service.get_container_client({container:?}).list_blobs(include=['metadata'])\n\
             print(json.dumps({{b.name: {{'tier': b.blob_tier, 'metadata': b.metadata, 'size': b.size}} for b in blobs}}))"
        ));
        let value: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let blobs = value.as_object().expect("a JSON object");
        blobs
            .iter()
            .map(|(name, p)| {
                let metadata = p["metadata"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let properties = BlobProperties {
                    tier: p["tier"].as_str().unwrap_or_default().to_owned(),
                    metadata,
                    size: p["size"].as_u64().unwrap_or_default(),
                };
                (name.clone(), properties)
            })
            .collect()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
