//! A TCP proxy on 127.0.0.1 that passes a set number of request bytes on to its target and then
//! holds everything else: an upload that is under way and can go no further, for a test to
//! kill at a known point.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Stall {
    /// `http://127.0.0.1:<port>`, standing for the target's origin.
    pub origin: String,
    passed: Arc<AtomicU64>,
}

impl Stall {
    /// Forwards to `target` (`host:port`) until `limit` bytes from clients have gone through.
    pub fn new(target: &str, limit: u64) -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let passed = Arc::new(AtomicU64::new(0));
        let counted = passed.clone();
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counted = counted.clone();
                std::thread::spawn(move || pump(client_in, server_out, Some((counted, limit))));
                std::thread::spawn(move || pump(server, client, None));
            }
        });
        Stall { origin, passed }
    }

    /// Request bytes passed on so far.
    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`; with a budget, stops passing bytes on (but keeps both ends open) once
/// the budget shared by every connection is spent.
fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<(Arc<AtomicU64>, u64)>) {
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
        if let Some((passed, limit)) = &budget {
            let before = passed.fetch_add(read as u64, Ordering::SeqCst);
            allowed = limit.saturating_sub(before).min(read as u64) as usize;
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
