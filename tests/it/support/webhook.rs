//! A loopback webhook receiver that records every request and answers with scripted statuses.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub body: String,
    pub status: u16,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    port: u16,
}

impl Receiver {
    /// Starts a receiver that answers 200 unless [`Receiver::respond`] scripted otherwise.
    pub fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (s, l, sc) = (server.clone(), log.clone(), script.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().take(1 << 20).read_to_string(&mut body);
                let status = sc.lock().expect("script").pop_front().unwrap_or(200);
                let content_type = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("content-type"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                l.lock().expect("log").push(Received { path: req.url().to_string(), content_type, body, status });
                let _ = req.respond(tiny_http::Response::from_string("ok").with_status_code(status));
            }
        });
        Receiver { server, log, script, thread: Some(thread), port }
    }

    /// The next answers, in order (then 200).
    pub fn respond(&self, statuses: &[u16]) {
        self.script.lock().expect("script").extend(statuses);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").clone()
    }

    /// Bodies of requests answered 2xx, parsed.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| serde_json::from_str(&r.body).expect("JSON body"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
