//! A fake Glacier vault service on 127.0.0.1 for tests: what moto lacks (multipart uploads,
//! ranged job output) with the real validation rules, plus fault injection.
//!
//! It checks what the real service checks: part sizes (1 MiB x 2^n), range alignment, each part's
//! tree hash and SHA-256, the whole archive's size and tree hash at completion, and the
//! description's length and characters. It ignores signatures. Retrieval jobs finish after a
//! configurable delay (none by default).

#![allow(missing_docs)]

mod routes;
pub mod sigv4;
mod treehash;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glacier_backup_archiver::treehash::TreeHash;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

type Reply = Result<Response<Full<Bytes>>, std::io::Error>;

/// How a request is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 500 ServiceUnavailableException.
    Unavailable,
    /// 400 ThrottlingException.
    Throttling,
    /// The connection is closed without a response.
    DropConnection,
}

/// Knobs tests turn.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Fraction of part uploads that fail with `part_fault` (before being stored).
    pub part_failure_rate: f64,
    /// How those failures look.
    pub part_fault: FaultKind,
    /// Parts at this index or later are refused for good (400 InvalidParameterValueException).
    pub refuse_parts_from: Option<u64>,
    /// Wait before answering each part upload.
    pub part_delay: Duration,
    /// Part uploads from this index on wait, unanswered, until it is cleared or raised: a
    /// test can stop a run at a known part, whatever the machine's speed.
    pub hold_parts_from: Option<u64>,
    /// The n-th request (1-based, counted from now on) fails this way.
    pub fail_request: Option<(u64, FaultKind)>,
    /// Retrieval jobs complete this long after being started.
    pub job_delay: Duration,
    /// Jobs started while this is set stay in progress until [`FakeGlacier::release_jobs`]:
    /// the test, not the clock, decides when a job is done.
    pub hold_jobs: bool,
    /// The next job output request whose range starts at this offset drops the connection.
    pub drop_output_at: Option<u64>,
    /// Keep archive bytes (turn off for large benchmarks: only hashes are kept).
    pub keep_data: bool,
    /// Refuse requests not signed (SigV4) with [`sigv4::ACCESS_KEY`] over exactly what was
    /// sent, as AWS does. Off only for tests that send raw requests.
    pub check_signatures: bool,
    /// The next request of this kind is carried out, then its reply is lost (the connection
    /// dropped): what a client killed mid-call, or cut off by the network, sees.
    pub lose_reply: Option<Call>,
}

/// A call whose reply can be lost after it was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// UploadArchive.
    UploadArchive,
    /// InitiateMultipartUpload.
    Initiate,
    /// CompleteMultipartUpload.
    Complete,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            part_failure_rate: 0.0,
            part_fault: FaultKind::Unavailable,
            refuse_parts_from: None,
            part_delay: Duration::ZERO,
            hold_parts_from: None,
            fail_request: None,
            job_delay: Duration::ZERO,
            hold_jobs: false,
            drop_output_at: None,
            keep_data: true,
            check_signatures: true,
            lose_reply: None,
        }
    }
}

/// What the server saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Every request.
    pub requests: u64,
    /// Part uploads stored: (upload id, offset), in arrival order.
    pub parts_stored: Vec<(String, u64)>,
    /// Requests failed on purpose.
    pub injected_faults: u64,
    /// Time spent inside request handlers (reading bodies, hashing, storing).
    pub busy: Duration,
    /// Multipart uploads initiated.
    pub uploads_started: u64,
    /// Archive bytes sent as job output.
    pub output_bytes: u64,
    /// ListJobs requests answered.
    pub job_lists: u64,
}

#[derive(Debug, Clone)]
pub struct StoredArchive {
    pub description: String,
    pub size: u64,
    pub tree_hash: TreeHash,
    pub data: Option<Bytes>,
}

#[derive(Debug)]
struct Upload {
    description: String,
    created: String,
    part_size: u64,
    /// By offset: bytes (empty unless kept), length and tree hash.
    parts: BTreeMap<u64, (Bytes, u64, TreeHash)>,
}

#[derive(Debug)]
struct Job {
    /// Empty for an inventory job.
    archive_id: String,
    /// An inventory job's output, taken when the job starts (a real inventory lags too).
    inventory: Option<Bytes>,
    tier: String,
    ready_at: Instant,
}

#[derive(Debug, Default)]
struct Vault {
    archives: HashMap<String, StoredArchive>,
    uploads: HashMap<String, Upload>,
    /// Completed uploads: archive id, size and tree hash, so a repeated Complete answers
    /// with the same archive (Glacier's Complete is idempotent).
    completed: HashMap<String, (String, u64, TreeHash)>,
    jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Default)]
struct State {
    vaults: HashMap<String, Vault>,
    behaviour: Behaviour,
    stats: Stats,
    next_id: u64,
    rng: u64,
    requests_since_fault_set: u64,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let digest = Sha256::digest(format!("{prefix}{}", self.next_id));
        format!("{prefix}{}", hex::encode(&digest[..24]))
    }

    /// A deterministic coin (xorshift), so failing tests fail the same way every time.
    fn chance(&mut self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 10_000) as f64 / 10_000.0 < rate
    }
}

/// A running fake; stops when dropped.
pub struct FakeGlacier {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGlacier {
    /// Starts on a free port of 127.0.0.1, with its own thread and runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: 0x9E37_79B9_7F4A_7C15,
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = shared.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let state = state.clone();
                                    async move { handle(state, req).await }
                                });
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        FakeGlacier {
            endpoint: format!("http://{addr}"),
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn create_vault(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .vaults
            .entry(name.to_owned())
            .or_default();
    }

    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state.behaviour);
        state.requests_since_fault_set = 0;
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    pub fn archives(&self, vault: &str) -> Vec<(String, StoredArchive)> {
        let state = self.state.lock().unwrap();
        let mut list: Vec<_> = state
            .vaults
            .get(vault)
            .map(|v| {
                v.archives
                    .iter()
                    .map(|(k, a)| (k.clone(), a.clone()))
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    pub fn uploads_in_progress(&self, vault: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.vaults.get(vault).map_or(0, |v| v.uploads.len())
    }

    /// Opens a multipart upload as another client would have (another machine, an earlier
    /// version), and gives its id.
    pub fn open_upload(&self, vault: &str, description: &str, part_size: u64) -> String {
        let mut state = self.state.lock().unwrap();
        let id = state.id("upload-");
        let v = state.vaults.get_mut(vault).expect("the vault exists");
        let created = format!("2026-01-01T00:00:{:02}.000Z", v.uploads.len() % 60);
        v.uploads.insert(
            id.clone(),
            Upload {
                description: description.to_owned(),
                created,
                part_size,
                parts: BTreeMap::new(),
            },
        );
        id
    }

    /// Finishes every job now (those held by `hold_jobs` included) and holds no more.
    pub fn release_jobs(&self) {
        let mut state = self.state.lock().unwrap();
        state.behaviour.hold_jobs = false;
        let now = Instant::now();
        for vault in state.vaults.values_mut() {
            for job in vault.jobs.values_mut() {
                job.ready_at = job.ready_at.min(now);
            }
        }
    }

    /// Whether this multipart upload is still open.
    pub fn upload_open(&self, vault: &str, upload: &str) -> bool {
        let state = self.state.lock().unwrap();
        state
            .vaults
            .get(vault)
            .is_some_and(|v| v.uploads.contains_key(upload))
    }
}

impl Drop for FakeGlacier {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: Bytes) -> Reply {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    Ok(builder.body(Full::new(body)).expect("valid response"))
}

fn json(status: StatusCode, value: serde_json::Value) -> Reply {
    respond(
        status,
        &[("content-type", "application/json".into())],
        Bytes::from(value.to_string()),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"code": code, "message": message, "type": "Client"});
    respond(
        status,
        &[
            ("content-type", "application/json".into()),
            ("x-amzn-errortype", code.to_owned()),
        ],
        Bytes::from(body.to_string()),
    )
}

fn fault(kind: FaultKind) -> Reply {
    match kind {
        FaultKind::Unavailable => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailableException",
            "injected fault",
        ),
        FaultKind::Throttling => error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "injected fault",
        ),
        FaultKind::DropConnection => Err(std::io::Error::other("injected dropped connection")),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn bad(message: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        message,
    )
}

fn missing(what: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("{what} not found"),
    )
}

fn valid_description(d: &str) -> bool {
    d.len() <= 1024 && d.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// 1 MiB times a power of two, up to 4 GiB.
fn valid_part_size(size: u64) -> bool {
    size.is_power_of_two() && (1 << 20..=4096 << 20).contains(&size)
}

/// Parts in one multipart upload, as Glacier allows.
const MAX_PARTS: u64 = 10_000;

/// A request as the route handlers see it.
struct Received<'a> {
    headers: &'a hyper::HeaderMap,
    body: Bytes,
    /// The body's tree hash and SHA-256 (none for an empty body).
    hashes: Option<BodyHashes>,
    /// `x-amz-archive-description`: empty when absent, `None` when not visible ASCII.
    description: Option<String>,
    query: &'a str,
    range: Option<&'a str>,
    keep_data: bool,
    refuse_from: Option<u64>,
    job_delay: Duration,
}

impl Received<'_> {
    /// A header's text value.
    fn get(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Reply {
    let started = Instant::now();
    let injected = {
        let mut s = state.lock().unwrap();
        s.stats.requests += 1;
        s.requests_since_fault_set += 1;
        match s.behaviour.fail_request {
            Some((n, kind)) if n == s.requests_since_fault_set => {
                s.stats.injected_faults += 1;
                Some(kind)
            }
            _ => None,
        }
    };
    if let Some(kind) = injected {
        return fault(kind);
    }
    let output_start = header(&req, "range")
        .filter(|_| req.uri().path().ends_with("/output"))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, _)| a.parse::<u64>().ok());
    if let Some(start) = output_start {
        let mut s = state.lock().unwrap();
        if s.behaviour.drop_output_at == Some(start) {
            s.behaviour.drop_output_at = None;
            s.stats.injected_faults += 1;
            return fault(FaultKind::DropConnection);
        }
    }
    let method = req.method().clone();
    let path: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .skip(1)
        .map(str::to_owned)
        .collect();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req.headers().clone();
    let part_upload = method == Method::PUT && path.len() == 5 && path[3] == "multipart-uploads";
    if part_upload {
        let (delay, fail) = {
            let mut s = state.lock().unwrap();
            let rate = s.behaviour.part_failure_rate;
            let fail = s.chance(rate).then_some(s.behaviour.part_fault);
            if fail.is_some() {
                s.stats.injected_faults += 1;
            }
            (s.behaviour.part_delay, fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = fail {
            return fault(kind);
        }
        // Held parts wait, unanswered, until the test lets them through.
        let start = header(&req, "content-range")
            .and_then(parse_content_range)
            .map(|(start, _)| start);
        loop {
            let held = {
                let s = state.lock().unwrap();
                let part_size = s
                    .vaults
                    .get(&path[2])
                    .and_then(|v| v.uploads.get(&path[4]))
                    .map(|u| u.part_size);
                match (s.behaviour.hold_parts_from, start, part_size) {
                    (Some(from), Some(start), Some(size)) => start / size >= from,
                    _ => false,
                }
            };
            if !held {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let range_header = header(&req, "range").map(str::to_owned);
    let raw_path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    // Hashed once, before taking the lock, so parts arriving together are checked in parallel.
    let hashes = BodyHashes::of(&body);
    if state.lock().unwrap().behaviour.check_signatures {
        let checked = sigv4::verify(method.as_str(), &raw_path, &query, &headers, &hashes.linear);
        if let Err((code, message)) = checked {
            return error(StatusCode::FORBIDDEN, code, &message);
        }
    }
    let hashes = (!body.is_empty()).then_some(hashes);
    // A header that is there but not visible ASCII is refused, not read as missing.
    let description = match headers.get("x-amz-archive-description") {
        None => Some(String::new()),
        Some(value) => value
            .to_str()
            .ok()
            .map(str::to_owned)
            .filter(|d| valid_description(d)),
    };
    let mut guard = state.lock().unwrap();
    let s = &mut *guard;
    let received = Received {
        headers: &headers,
        body,
        hashes,
        description,
        query: &query,
        range: range_header.as_deref(),
        keep_data: s.behaviour.keep_data,
        refuse_from: s.behaviour.refuse_parts_from,
        job_delay: if s.behaviour.hold_jobs {
            // Until released: far beyond any test's patience.
            Duration::from_secs(24 * 3600)
        } else {
            s.behaviour.job_delay
        },
    };
    let r = &received;
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let reply = match (&method, segments.as_slice()) {
        (&Method::PUT, [_, "vaults", vault]) => routes::create_vault(s, r, vault),
        (&Method::GET, [_, "vaults", vault]) => routes::describe_vault(s, r, vault),
        (&Method::POST, [_, "vaults", vault, "archives"]) => routes::upload_archive(s, r, vault),
        (&Method::POST, [_, "vaults", vault, "multipart-uploads"]) => {
            routes::initiate_upload(s, r, vault)
        }
        (&Method::PUT, [_, "vaults", vault, "multipart-uploads", upload]) => {
            routes::upload_part(s, r, vault, upload)
        }
        (&Method::GET, [_, "vaults", vault, "multipart-uploads", upload]) => {
            routes::list_parts_of(s, r, vault, upload)
        }
        (&Method::POST, [_, "vaults", vault, "multipart-uploads", upload]) => {
            routes::complete_upload(s, r, vault, upload)
        }
        (&Method::GET, [_, "vaults", vault, "multipart-uploads"]) => {
            routes::list_uploads(s, r, vault)
        }
        (&Method::DELETE, [_, "vaults", vault, "multipart-uploads", upload]) => {
            routes::abort_upload(s, r, vault, upload)
        }
        (&Method::POST, [_, "vaults", vault, "jobs"]) => routes::start_job(s, r, vault),
        (&Method::GET, [_, "vaults", vault, "jobs"]) => routes::list_jobs(s, r, vault),
        (&Method::GET, [_, "vaults", vault, "jobs", job]) => routes::describe_job(s, r, vault, job),
        (&Method::GET, [_, "vaults", vault, "jobs", job, "output"]) => {
            routes::job_output_of(s, r, vault, job)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!("{method} {}", path.join("/")),
        ),
    };
    let call = match (&method, segments.as_slice()) {
        (&Method::POST, [_, "vaults", _, "archives"]) => Some(Call::UploadArchive),
        (&Method::POST, [_, "vaults", _, "multipart-uploads"]) => Some(Call::Initiate),
        (&Method::POST, [_, "vaults", _, "multipart-uploads", _]) => Some(Call::Complete),
        _ => None,
    };
    let lost = call.is_some()
        && s.behaviour.lose_reply == call
        && reply.as_ref().is_ok_and(|r| r.status().is_success());
    if lost {
        s.behaviour.lose_reply = None;
        s.stats.injected_faults += 1;
    }
    drop(guard);
    if lost {
        return fault(FaultKind::DropConnection);
    }
    finish(&state, started, reply)
}

fn finish(state: &Arc<Mutex<State>>, started: Instant, reply: Reply) -> Reply {
    state.lock().unwrap().stats.busy += started.elapsed();
    reply
}

fn created_archive(vault: &str, id: &str, hash: TreeHash) -> Reply {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/-/vaults/{vault}/archives/{id}")),
            ("x-amz-archive-id", id.to_owned()),
            ("x-amz-sha256-tree-hash", hash.to_hex()),
        ],
        Bytes::new(),
    )
}

/// What an uploaded body hashes to, both ways Glacier checks it.
struct BodyHashes {
    tree: TreeHash,
    linear: String,
}

impl BodyHashes {
    fn of(body: &[u8]) -> Self {
        BodyHashes {
            tree: TreeHash(treehash::of(body)),
            linear: hex::encode(Sha256::digest(body)),
        }
    }
}

/// The body's tree hash, when the claimed tree hash and payload SHA-256 (both required, as
/// Glacier requires them of uploads) match it.
fn check_hashes(
    hashes: Option<&BodyHashes>,
    tree: Option<String>,
    content: Option<String>,
) -> Result<TreeHash, &'static str> {
    let hashes = hashes.ok_or("Invalid Content-Length: 0")?;
    let Some(tree) = tree else {
        return Err("missing x-amz-sha256-tree-hash");
    };
    if !tree.eq_ignore_ascii_case(&hashes.tree.to_hex()) {
        return Err("Checksum mismatch: the tree hash does not match the body");
    }
    match content {
        None => Err("missing x-amz-content-sha256"),
        Some(content) if !content.eq_ignore_ascii_case(&hashes.linear) => {
            Err("x-amz-content-sha256 does not match the body")
        }
        Some(_) => Ok(hashes.tree),
    }
}

/// `bytes a-b/*` -> (a, b).
fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("bytes ")?.strip_suffix("/*")?;
    let (a, b) = rest.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

fn list_parts(u: &Upload, upload: &str, query: &str) -> Reply {
    // Small pages, so that callers must follow the marker.
    const PAGE: usize = 3;
    let marker: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("marker="))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let page: Vec<_> = u.parts.range(marker..).take(PAGE + 1).collect();
    let next = (page.len() > PAGE).then(|| page[PAGE].0.to_string());
    let parts: Vec<_> = page
        .iter()
        .take(PAGE)
        .map(|(start, (_, len, hash))| {
            serde_json::json!({"RangeInBytes": format!("{}-{}", start, *start + len - 1), "SHA256TreeHash": hash.to_hex()})
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "ArchiveDescription": u.description,
            "MultipartUploadId": upload,
            "PartSizeInBytes": u.part_size,
            "Parts": parts,
            "Marker": next,
        }),
    )
}

/// Checks completion the way Glacier does: parts contiguous from 0, all full but the last,
/// covering exactly the claimed size, with the claimed tree hash.
fn assemble(
    u: &Upload,
    size: Option<u64>,
    claimed: Option<&str>,
) -> Result<(Bytes, TreeHash, u64), String> {
    let size = size.ok_or("missing x-amz-archive-size")?;
    if u.parts.is_empty() {
        return Err("the upload has no parts".into());
    }
    let mut hashes = Vec::new();
    let mut data = Vec::new();
    let mut expected_offset = 0;
    let count = u.parts.len();
    for (i, (offset, (bytes, len, hash))) in u.parts.iter().enumerate() {
        if *offset != expected_offset {
            return Err(format!("part missing at offset {expected_offset}"));
        }
        if i + 1 < count && *len != u.part_size {
            return Err(format!("part at {offset} is shorter than the part size"));
        }
        hashes.push(hash.0);
        data.extend_from_slice(bytes);
        expected_offset += len;
    }
    if expected_offset != size {
        return Err(format!(
            "parts cover {expected_offset} bytes, archive size says {size}"
        ));
    }
    let hash = TreeHash(treehash::of_parts(&hashes));
    if !claimed.is_some_and(|c| c.eq_ignore_ascii_case(&hash.to_hex())) {
        return Err("Checksum mismatch: the archive tree hash does not match its parts".into());
    }
    Ok((Bytes::from(data), hash, size))
}

fn inventory(vault: &str, v: &Vault) -> Bytes {
    let list: Vec<_> = v
        .archives
        .iter()
        .map(|(id, a)| {
            serde_json::json!({
                "ArchiveId": id,
                "ArchiveDescription": a.description,
                "CreationDate": "2026-01-01T00:00:00Z",
                "Size": a.size,
                "SHA256TreeHash": a.tree_hash.to_hex(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "VaultARN": format!("arn:aws:glacier:us-east-1:012345678901:vaults/{vault}"),
        "InventoryDate": "2026-01-01T00:00:00Z",
        "ArchiveList": list,
    });
    Bytes::from(body.to_string())
}

fn describe(v: &Vault, id: &str, job: &Job) -> serde_json::Value {
    let done = job.ready_at <= Instant::now();
    if job.inventory.is_some() {
        return serde_json::json!({
            "JobId": id,
            "Action": "InventoryRetrieval",
            "Completed": done,
            "StatusCode": if done { "Succeeded" } else { "InProgress" },
            "CreationDate": "2026-01-01T00:00:00.000Z",
        });
    }
    let archive = v.archives.get(&job.archive_id);
    serde_json::json!({
        "JobId": id,
        "Action": "ArchiveRetrieval",
        "ArchiveId": job.archive_id,
        "Completed": done,
        "StatusCode": if done { "Succeeded" } else { "InProgress" },
        "Tier": job.tier,
        "ArchiveSizeInBytes": archive.map(|a| a.size),
        "ArchiveSHA256TreeHash": archive.map(|a| a.tree_hash.to_hex()),
        "CreationDate": "2026-01-01T00:00:00.000Z",
    })
}

/// Whether Glacier sends a range's tree hash: the range must be one subtree of the archive's
/// tree, a power-of-two number of MiB starting at a multiple of that size (or such a span cut
/// short by the archive's end).
fn tree_hash_aligned(start: u64, len: u64, archive_len: u64) -> bool {
    const MIB: u64 = 1 << 20;
    let span = len.div_ceil(MIB).next_power_of_two() * MIB;
    start.is_multiple_of(span) && (len == span || start + len == archive_len)
}

fn job_output(archive: &StoredArchive, range: Option<&str>) -> Reply {
    let Some(data) = &archive.data else {
        return bad("this fake was told not to keep archive bytes");
    };
    let len = data.len() as u64;
    let (start, end) = match range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    {
        None => (0, len.saturating_sub(1)),
        Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b && b < len => (a, b),
            _ => {
                return error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidParameterValueException",
                    "bad range",
                )
            }
        },
    };
    let slice = data.slice(start as usize..(end + 1) as usize);
    let mut headers = vec![("content-type", "application/octet-stream".to_owned())];
    let aligned = tree_hash_aligned(start, end + 1 - start, len);
    if aligned {
        headers.push(("x-amz-sha256-tree-hash", hex::encode(treehash::of(&slice))));
    }
    let status = if range.is_some() {
        headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    respond(status, &headers, slice)
}
