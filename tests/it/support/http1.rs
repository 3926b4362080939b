//! A small HTTP/1.1 server for the test doubles: a thread per connection, keep-alive, request
//! bodies by `Content-Length` or chunked, `Expect: 100-continue`, answers with `Content-Length`.
//!
//! Why not tiny_http (used before): its task pool checks for an idle worker and queues the new
//! connection without a guarantee that a worker will take it, so under a burst of new keep-alive
//! connections one could sit unread behind long-lived ones until the client timed out (seen in
//! the P1 benchmark: 1 to 24 of 1000 requests waiting 30 s, the request bytes unread in the
//! server's socket). A thread per connection cannot starve.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head (request line plus headers) accepted.
const MAX_HEAD: u64 = 64 * 1024;

/// One request, body already read (de-chunked).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    /// Header names lowercased; a repeated header keeps its values joined by ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// An answer; `Content-Length` (and `Transfer-Encoding`) are the server's business.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: Vec::new(), body: body.into() }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// A running server on 127.0.0.1; stops (and closes its open connections) when dropped.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves every request with `handler`, each connection on its own thread.
    pub fn start(handler: impl Fn(Request) -> Response + Send + Sync + 'static) -> Server {
        Server::start_with(|_| handler)
    }

    /// Like [`Server::start`], for a handler that must know its own port (to build links or
    /// redirects to itself): `make` gets the port before the first request can arrive.
    pub fn start_with<H>(make: impl FnOnce(u16) -> H) -> Server
    where
        H: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(make(port));
        let (stopping, conns) = (stop.clone(), open.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    conns.lock().expect("conns lock").push(clone);
                }
                let (handler, stopping) = (handler.clone(), stopping.clone());
                std::thread::spawn(move || serve(stream, &*handler, &stopping));
            }
        });
        Server { port, stop, open, thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, then close every connection still open (a client's pooled
        // connection must see the server gone, as with a real server that stopped).
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self.open.lock().expect("conns lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, stop: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    // An idle keep-alive connection is dropped after a while, as real servers do.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while !stop.load(Ordering::SeqCst) {
        let Some((request, http10)) = read_request(&mut reader, &mut writer) else { return };
        let head_only = request.method == "HEAD";
        let client_close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) || http10;
        let response = handler(request);
        let server_close = response.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v == "close");
        if write_response(&mut writer, &response, head_only).is_err() || client_close || server_close {
            return;
        }
    }
}

/// Reads one request; `None` at end of stream or on a malformed one (the connection is closed).
fn read_request(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> Option<(Request, bool)> {
    let mut head = reader.by_ref().take(MAX_HEAD);
    let mut line = String::new();
    if head.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, url, version) = (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut h = String::new();
        if head.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        headers.entry(k).and_modify(|old| *old = format!("{old}, {v}")).or_insert(v);
    }
    if headers.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else {
        let n: usize = headers.get("content-length").map_or(Some(0), |v| v.trim().parse().ok())?;
        let mut body = vec![0; n];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some((Request { method, url, headers, body }, version == "HTTP/1.0"))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

fn write_response(w: &mut TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("transfer-encoding") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    // 1xx, 204 and 304 carry no body (RFC 9110 §6.4.1).
    let bodyless = r.status < 200 || r.status == 204 || r.status == 304;
    if !bodyless {
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !bodyless && !head_only {
        bytes.extend_from_slice(&r.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
