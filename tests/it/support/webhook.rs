//! A loopback webhook receiver that records every request and answers with scripted statuses.

use super::http1::{Response, Server};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub content_type: String,
    pub body: String,
    pub status: u16,
    /// The `Via` header a proxy added, if any.
    pub via: Option<String>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    server: Server,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 unless [`Receiver::respond`] scripted otherwise.
    pub fn start() -> Receiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (l, sc) = (log.clone(), script.clone());
        let server = Server::start(move |req| {
            let status = sc.lock().expect("script").pop_front().unwrap_or(200);
            l.lock().expect("log").push(Received {
                path: req.url.clone(),
                content_type: req.header("content-type").unwrap_or_default().to_string(),
                body: String::from_utf8_lossy(&req.body).into_owned(),
                status,
                via: req.header("via").map(String::from),
            });
            Response::new(status, "ok")
        });
        Receiver { server, log, script }
    }

    /// The next answers, in order (then 200).
    pub fn respond(&self, statuses: &[u16]) {
        self.script.lock().expect("script").extend(statuses);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port())
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
