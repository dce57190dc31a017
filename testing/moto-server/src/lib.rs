//! A `moto_server` on a port of 127.0.0.1 it chose itself, stopped when dropped: the one
//! launcher for the root's integration tests and each AWS backend crate's own tests.
//! `scripts/test` installs moto into the workspace's `.venv`; set MOTO_SERVER to use another
//! installation.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    child: Child,
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
        std::thread::spawn(move || {
            use std::io::BufRead;
            // Read to the end, so moto's request log never fills the pipe and stalls it.
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(address) = line.split("Running on http://").nth(1) {
                    let _ = found.send(address.trim().to_owned());
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
        }
    }
}

impl Moto {
    /// Sets how one of moto's models moves between states (its state manager), e.g.
    /// `s3::keyrestore` with `{"progression": "manual", "times": 1}`.
    pub fn set_transition(&self, model: &str, transition: &str) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let body = format!(r#"{{"model_name": "{model}", "transition": {transition}}}"#);
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /moto-api/state-manager/set-transition HTTP/1.1\r\nHost: {address}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 201") || reply.starts_with("HTTP/1.0 201"),
            "{reply}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
