//! A fake Glacier vault service on 127.0.0.1 for tests: what moto lacks (multipart uploads,
//! ranged job output) with the real validation rules, plus fault injection.
//!
//! It checks what the real service checks: part sizes (1 MiB x 2^n), range alignment, each part's
//! tree hash and SHA-256, the whole archive's size and tree hash at completion, and the
//! description's length and characters, and each request's SigV4 signature (see [`sigv4`]). Retrieval jobs finish after a
//! configurable delay (none by default).

#![allow(missing_docs)]

mod checks;
mod output;
mod reply;
mod routes;
pub mod sigv4;
mod state;
mod treehash;

use checks::*;
use output::*;
use reply::*;
use state::*;

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
    /// Fraction of part uploads that fail with `part_fault` (once their body is read, before
    /// being stored).
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
    /// Job output requests whose range starts at this offset or later wait, unanswered, until
    /// it is cleared or raised: a test stops a reader at a known byte.
    pub hold_output_from: Option<u64>,
    /// The next job output request whose range starts at this offset gets one byte flipped
    /// (its tree-hash header is still that of the true bytes): damage in transit.
    pub corrupt_output_at: Option<u64>,
    /// The date inventories say they were taken (RFC 3339). Glacier's lag a day behind; a test
    /// dates them after its uploads to have every archive expected in them.
    pub inventory_date: String,
    /// Keep archive bytes (turn off for large benchmarks: only hashes are kept).
    pub keep_data: bool,
    /// Refuse requests not signed (SigV4) with [`sigv4::ACCESS_KEY`] over exactly what was
    /// sent, as AWS does. Off only for tests that send raw requests.
    pub check_signatures: bool,
    /// Every request waits this long before it is handled: a round trip from home to AWS.
    pub latency: Duration,
    /// UploadArchive requests wait, unanswered, while this is set: a test sees how many a
    /// client has under way at once.
    pub hold_archive_uploads: bool,
    /// The next request of this kind is carried out, then its reply is lost (the connection
    /// dropped): what a client killed mid-call, or cut off by the network, sees.
    pub lose_reply: Option<Call>,
    /// DeleteArchive requests after this many were carried out wait, unanswered, until it is
    /// cleared or raised: a test stops a prune at a known deletion.
    pub hold_deletes_after: Option<u64>,
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
    /// DeleteArchive.
    Delete,
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
            hold_output_from: None,
            corrupt_output_at: None,
            inventory_date: "2026-01-01T00:00:00Z".into(),
            keep_data: true,
            check_signatures: true,
            lose_reply: None,
            latency: Duration::ZERO,
            hold_archive_uploads: false,
            hold_deletes_after: None,
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
    /// Archive retrieval jobs started.
    pub retrievals_started: u64,
    /// Each archive retrieval job's range as asked (start..end, end exclusive), `None` for the
    /// whole archive, in order.
    pub retrieval_ranges: Vec<Option<(u64, u64)>>,
    /// Archives DeleteArchive removed, in order (an archive already gone is not counted).
    pub deleted: Vec<String>,
    /// Each job output sent: the offset it starts at and its length, in order.
    pub outputs: Vec<(u64, u64)>,
    /// ListJobs requests answered.
    pub job_lists: u64,
    /// UploadArchive requests received and not yet answered.
    pub archive_uploads_in_progress: u64,
    /// The most UploadArchive requests under way at once.
    pub most_archive_uploads_at_once: u64,
}

#[derive(Debug, Clone)]
pub struct StoredArchive {
    pub description: String,
    pub size: u64,
    pub tree_hash: TreeHash,
    pub data: Option<Bytes>,
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

    /// Removes an archive as if another client had deleted it; whether it was there.
    pub fn remove(&self, vault: &str, archive_id: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let vault = state.vaults.get_mut(vault);
        vault.is_some_and(|v| v.archives.remove(archive_id).is_some())
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

    /// Stores an archive as another client would have (another tool, the Python tool), and
    /// gives its id.
    pub fn plant(&self, vault: &str, description: &str, data: &[u8]) -> String {
        let mut state = self.state.lock().unwrap();
        let id = state.id("archive-");
        let v = state.vaults.get_mut(vault).expect("the vault exists");
        v.archives.insert(
            id.clone(),
            StoredArchive {
                description: description.to_owned(),
                size: data.len() as u64,
                tree_hash: TreeHash(treehash::of(data)),
                data: Some(Bytes::copy_from_slice(data)),
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

/// Counts an UploadArchive request as under way until it is answered (or its client left).
struct ArchiveUploadUnderWay(Arc<Mutex<State>>);

impl ArchiveUploadUnderWay {
    fn enter(state: &Arc<Mutex<State>>) -> Self {
        let mut s = state.lock().unwrap();
        s.stats.archive_uploads_in_progress += 1;
        s.stats.most_archive_uploads_at_once = s
            .stats
            .most_archive_uploads_at_once
            .max(s.stats.archive_uploads_in_progress);
        ArchiveUploadUnderWay(state.clone())
    }
}

impl Drop for ArchiveUploadUnderWay {
    fn drop(&mut self) {
        self.0.lock().unwrap().stats.archive_uploads_in_progress -= 1;
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Reply {
    let latency = state.lock().unwrap().behaviour.latency;
    tokio::time::sleep(latency).await;
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
        {
            let mut s = state.lock().unwrap();
            if s.behaviour.drop_output_at == Some(start) {
                s.behaviour.drop_output_at = None;
                s.stats.injected_faults += 1;
                return fault(FaultKind::DropConnection);
            }
        }
        while state
            .lock()
            .unwrap()
            .behaviour
            .hold_output_from
            .is_some_and(|from| start >= from)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
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
    let archive_upload = method == Method::POST && path.len() == 4 && path[3] == "archives";
    let _counted = archive_upload.then(|| ArchiveUploadUnderWay::enter(&state));
    while archive_upload && state.lock().unwrap().behaviour.hold_archive_uploads {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delete = method == Method::DELETE && path.len() == 5 && path[3] == "archives";
    while delete && {
        let s = state.lock().unwrap();
        let done = s.stats.deleted.len() as u64;
        s.behaviour
            .hold_deletes_after
            .is_some_and(|after| done >= after)
    } {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
            // As AWS's do, the failure comes once the part has arrived: the client sent it all.
            let _ = req.into_body().collect().await;
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
        (&Method::DELETE, [_, "vaults", vault, "archives", archive]) => {
            routes::delete_archive(s, r, vault, archive)
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
        (&Method::DELETE, [_, "vaults", _, "archives", _]) => Some(Call::Delete),
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
