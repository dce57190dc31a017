//! A `moto_server` on a port of 127.0.0.1 it chose itself, stopped when dropped: the one
//! launcher for the root's integration tests and each AWS backend crate's own tests.
//! `scripts/test` installs moto into the workspace's `.venv`; set MOTO_SERVER to use another
//! installation.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    child: Child,
    /// Every request moto logged so far, in order.
    log: Arc<Mutex<Vec<Request>>>,
}

/// One request moto answered, as its access log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path and query, percent-encoded as sent.
    pub path: String,
    pub status: u16,
}

impl Request {
    /// A line of werkzeug's access log, e.g. `127.0.0.1 - - [date] "GET /b/k HTTP/1.1" 206 -`
    /// (the request part may be coloured by the status).
    fn parse(line: &str) -> Option<Request> {
        let plain = strip_colours(line);
        let (_, rest) = plain.split_once('"')?;
        let (request, rest) = rest.split_once('"')?;
        let mut words = request.split(' ');
        let (method, path) = (words.next()?, words.next()?);
        let status = rest.split_whitespace().next()?.parse().ok()?;
        Some(Request {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
        })
    }
}

/// `line` without its ANSI colour sequences (ESC `[` ... `m`).
fn strip_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

fn executable() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        // This crate sits two levels below the workspace root, where `.venv` is.
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
        })
}

impl Moto {
    pub fn start() -> Moto {
        let exe = executable();
        assert!(
            exe.exists(),
            "{} not found: run scripts/test, which installs moto[server] into .venv",
            exe.display()
        );
        // Port 0: moto_server binds a free port itself and says which, so no other process
        // can take the port between our choosing it and moto binding it.
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let (found, port) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let logged = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            // Read to the end, so moto's request log never fills the pipe and stalls it.
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(address) = line.split("Running on http://").nth(1) {
                    let _ = found.send(address.trim().to_owned());
                } else if let Some(request) = Request::parse(&line) {
                    logged.lock().unwrap().push(request);
                }
            }
        });
        let address = port
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server did not say where it listens");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("http://{address}"),
            child,
            log,
        }
    }

    /// Every request moto answered until now. moto logs a request as it answers it, and the
    /// log reaches us through a pipe, so this first sends a request of its own and waits until
    /// the log has it.
    pub fn requests(&self) -> Vec<Request> {
        static MARKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mark = format!(
            "/moto-api/glacier-backup-mark-{}",
            MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.send("GET", &mark, "");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(at) = log.iter().position(|r| r.path == mark) {
                    return log[..at].to_vec();
                }
            }
            assert!(Instant::now() < deadline, "moto never logged {mark}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sets how one of moto's models moves between states (its state manager), e.g.
    /// `s3::keyrestore` with `{"progression": "manual", "times": 1}`.
    pub fn set_transition(&self, model: &str, transition: &str) {
        let body = format!(r#"{{"model_name": "{model}", "transition": {transition}}}"#);
        let reply = self.send("POST", "/moto-api/state-manager/set-transition", &body);
        assert!(
            reply.starts_with("HTTP/1.1 201") || reply.starts_with("HTTP/1.0 201"),
            "{reply}"
        );
    }

    /// Sends one request of `method` to `path` with a JSON `body`: moto's reply, whole.
    fn send(&self, method: &str, path: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_access_log_line_gives_its_request_coloured_or_not() {
        for line in [
            "127.0.0.1 - - [07/Dec/2026 16:35:50] \"GET /b/k%20y?x-id=GetObject HTTP/1.1\" 206 -",
            "127.0.0.1 - - [07/Dec/2026 16:35:50] \"\u{1b}[35m\u{1b}[1mGET /b/k%20y?x-id=GetObject HTTP/1.1\u{1b}[0m\" 206 -",
        ] {
            assert_eq!(
                super::Request::parse(line),
                Some(super::Request {
                    method: "GET".into(),
                    path: "/b/k%20y?x-id=GetObject".into(),
                    status: 206
                })
            );
        }
        assert_eq!(
            super::Request::parse(" * Running on http://127.0.0.1:5000"),
            None
        );
    }
}
