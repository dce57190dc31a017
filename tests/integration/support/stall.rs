//! A TCP proxy on 127.0.0.1 that passes requests on to its target until a set number of request
//! bytes, or a request naming a marker, and then holds everything else: an upload that is under
//! way and can go no further, for a test to kill at a known point.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Stall {
    /// `http://127.0.0.1:<port>`, standing for the target's origin.
    pub origin: String,
    passed: Arc<AtomicU64>,
    held: Arc<std::sync::atomic::AtomicBool>,
}

/// When to stop passing requests on.
#[derive(Clone)]
struct Budget {
    passed: Arc<AtomicU64>,
    limit: u64,
    marker: Option<Vec<u8>>,
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl Stall {
    /// Forwards to `target` (`host:port`) until `limit` bytes from clients have gone through.
    pub fn new(target: &str, limit: u64) -> Stall {
        Self::holding(target, limit, None)
    }

    /// Forwards to `target` until a client sends `marker` (a name in a request line): that
    /// request, and everything after it, is held.
    pub fn at(target: &str, marker: &str) -> Stall {
        Self::holding(target, u64::MAX, Some(marker.as_bytes().to_vec()))
    }

    fn holding(target: &str, limit: u64, marker: Option<Vec<u8>>) -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let passed = Arc::new(AtomicU64::new(0));
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let budget = Budget {
            passed: passed.clone(),
            limit,
            marker,
            held: held.clone(),
        };
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let budget = budget.clone();
                std::thread::spawn(move || pump(client_in, server_out, Some(budget)));
                std::thread::spawn(move || pump(server, client, None));
            }
        });
        Stall {
            origin,
            passed,
            held,
        }
    }

    /// Request bytes passed on so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }

    /// Whether a request is held.
    pub fn holding_one(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`; with a budget, stops passing bytes on (but keeps both ends open) once
/// the budget shared by every connection is spent, or the marker is seen.
fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<Budget>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer) else {
            return;
        };
        if read == 0 {
            let _ = to.shutdown(std::net::Shutdown::Write);
            return;
        }
        let mut allowed = read;
        if let Some(budget) = &budget {
            let chunk = &buffer[..read];
            let marked = budget.marker.as_ref().is_some_and(|marker| {
                chunk
                    .windows(marker.len())
                    .any(|window| window == marker.as_slice())
            });
            let before = budget.passed.fetch_add(read as u64, Ordering::SeqCst);
            allowed = budget.limit.saturating_sub(before).min(read as u64) as usize;
            if marked || budget.held.load(Ordering::SeqCst) {
                allowed = 0;
            }
            if allowed < read {
                budget.held.store(true, Ordering::SeqCst);
            }
        }
        if to.write_all(&buffer[..allowed]).is_err() {
            return;
        }
        if allowed < read {
            // Held: the connection stays open and silent until its process is gone.
            std::thread::park();
        }
    }
}
