//! A fake Kubernetes API server on loopback: ConfigMaps only, with the semantics the state store
//! depends on — resourceVersion compare-and-swap (409 Conflict), 409 AlreadyExists on create,
//! 404 when missing, 401 without the right bearer token, `Status` bodies — plus a request log and
//! a way to change an object behind the client's back.
//!
//! Plain HTTP through [`super::http1`]; HTTPS through rustls over a std listener, one request per
//! connection. Both share [`handle`].

use super::http1::{Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The Authorization header, if any.
    pub auth: Option<String>,
    pub status: u16,
    /// The request body.
    pub body: String,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<(String, String), Value>,
    next_rv: u64,
    token: Option<String>,
    log: Vec<Logged>,
}

/// The running fake; stops when dropped.
pub struct FakeKube {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<AtomicBool>,
    http: Option<Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKube {
    /// A plain-HTTP fake that accepts any request (like `kubectl proxy`).
    pub fn start() -> FakeKube {
        Self::start_http(None)
    }

    /// A plain-HTTP fake that requires `Authorization: Bearer <token>`.
    pub fn with_token(token: &str) -> FakeKube {
        Self::start_http(Some(token.to_string()))
    }

    fn start_http(token: Option<String>) -> FakeKube {
        let inner = Arc::new(Mutex::new(Inner { token, next_rv: 100, ..Default::default() }));
        let inn = Arc::clone(&inner);
        let server = Server::start(move |req| {
            let auth = req.header("authorization").map(str::to_string);
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let (code, reply) = handle(&inn, &req.method, &req.url, auth, body);
            Response::new(code, reply).header("Content-Type", "application/json")
        });
        let port = server.port();
        FakeKube {
            url: format!("http://127.0.0.1:{port}"),
            port,
            inner,
            stop: Arc::new(AtomicBool::new(false)),
            http: Some(server),
            thread: None,
        }
    }

    /// An HTTPS fake presenting `config`'s certificate and requiring `Authorization: Bearer <token>`.
    pub fn start_tls(token: &str, config: rustls::ServerConfig) -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake kube");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Mutex::new(Inner { token: Some(token.into()), next_rv: 100, ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let config = Arc::new(config);
        let (inn, stopping) = (Arc::clone(&inner), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (inn, config) = (Arc::clone(&inn), Arc::clone(&config));
                std::thread::spawn(move || serve_tls(stream, config, &inn));
            }
        });
        FakeKube { url: format!("https://127.0.0.1:{port}"), port, inner, stop, http: None, thread: Some(thread) }
    }

    /// The stored object, if any.
    pub fn object(&self, ns: &str, name: &str) -> Option<Value> {
        self.inner.lock().expect("lock").objects.get(&(ns.into(), name.into())).cloned()
    }

    /// The `state.json` data of an object.
    /// The state document stored in an object: format 2's `binaryData` `state.json.gz`
    /// (unpacked here, as `kubectl ... | base64 -d | gunzip` would), else format 1's `data`.
    pub fn state_json(&self, ns: &str, name: &str) -> Option<String> {
        use base64::Engine;
        use std::io::Read;
        let obj = self.object(ns, name)?;
        if let Some(packed) = obj.pointer("/binaryData/state.json.gz").and_then(Value::as_str) {
            let gz = base64::engine::general_purpose::STANDARD.decode(packed).expect("binaryData is base64");
            let mut text = String::new();
            flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut text).expect("gzip JSON");
            return Some(text);
        }
        obj.pointer("/data/state.json")?.as_str().map(String::from)
    }

    /// The lease annotation of an object, parsed.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        let obj = self.object(ns, name)?;
        let raw = obj.pointer("/metadata/annotations")?.get("sentry.dev/lease")?.as_str()?.to_string();
        Some(serde_json::from_str(&raw).expect("lease is JSON"))
    }

    /// Creates or replaces an object directly (as `kubectl apply` would), with a new resourceVersion.
    pub fn put(&self, ns: &str, name: &str, mut obj: Value) {
        let mut inner = self.inner.lock().expect("lock");
        inner.next_rv += 1;
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["namespace"] = json!(ns);
        obj["metadata"]["resourceVersion"] = json!(inner.next_rv.to_string());
        obj["kind"] = json!("ConfigMap");
        obj["apiVersion"] = json!("v1");
        inner.objects.insert((ns.into(), name.into()), obj);
    }

    /// Changes an object behind the client's back; its resourceVersion moves on.
    pub fn edit(&self, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut obj = self.object(ns, name).expect("object to edit");
        f(&mut obj);
        self.put(ns, name, obj);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.inner.lock().expect("lock").log.clone()
    }

    /// "METHOD STATUS" of every request so far, e.g. `["GET 404", "POST 201"]`.
    pub fn calls(&self) -> Vec<String> {
        self.log().iter().map(|l| format!("{} {}", l.method, l.status)).collect()
    }

    /// Forgets the log.
    pub fn clear_log(&self) {
        self.inner.lock().expect("lock").log.clear();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The plain-HTTP server stops itself when dropped; wake the TLS accept loop.
        if self.http.is_none() {
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one request over TLS, then closes (`Connection: close`).
fn serve_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>, inner: &Arc<Mutex<Inner>>) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, stream));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return; // e.g. the client rejected our certificate
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (mut auth, mut length) = (None, 0usize);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_string()),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (code, reply) = handle(inner, &method, &target, auth, String::from_utf8_lossy(&body).into_owned());
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

/// A Kubernetes `Status` failure body.
fn status(code: u16, reason: &str, message: String, name: &str) -> (u16, String) {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {"name": name, "kind": "configmaps"}, "code": code,
    });
    (code, body.to_string())
}

/// The API: GET / PUT `/api/v1/namespaces/{ns}/configmaps/{name}`, POST `/api/v1/namespaces/{ns}/configmaps`.
fn handle(inner: &Arc<Mutex<Inner>>, method: &str, target: &str, auth: Option<String>, body: String) -> (u16, String) {
    let mut guard = inner.lock().expect("lock");
    let inner = &mut *guard;
    let (code, reply) = respond(inner, method, target, auth.as_deref(), &body);
    let path = target.split('?').next().unwrap_or("").to_string();
    inner.log.push(Logged { method: method.into(), path, auth, status: code, body });
    (code, reply)
}

fn respond(inner: &mut Inner, method: &str, target: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    if let Some(token) = &inner.token
        && auth != Some(format!("Bearer {token}").as_str())
    {
        return status(401, "Unauthorized", "Unauthorized".into(), "");
    }
    let path = target.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "configmaps"] => (ns.to_string(), None),
        ["api", "v1", "namespaces", ns, "configmaps", name] => (ns.to_string(), Some(name.to_string())),
        _ => return status(404, "NotFound", format!("the server could not find the requested resource {path}"), ""),
    };
    let not_found = |name: &str| status(404, "NotFound", format!("configmaps \"{name}\" not found"), name);
    match (method, name) {
        ("GET", Some(name)) => match inner.objects.get(&(ns, name.clone())) {
            Some(obj) => (200, obj.to_string()),
            None => not_found(&name),
        },
        ("POST", None) => {
            let Ok(mut obj) = serde_json::from_str::<Value>(body) else {
                return status(400, "BadRequest", "the body is not JSON".into(), "");
            };
            let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str).map(String::from) else {
                return status(422, "Invalid", "metadata.name: Required value".into(), "");
            };
            if obj.pointer("/metadata/namespace").and_then(Value::as_str).is_some_and(|n| n != ns) {
                return status(400, "BadRequest", "the namespace of the object does not match the URL".into(), &name);
            }
            if inner.objects.contains_key(&(ns.clone(), name.clone())) {
                return status(409, "AlreadyExists", format!("configmaps \"{name}\" already exists"), &name);
            }
            if let Err(e) = check_size(&obj, &name) {
                return e;
            }
            inner.next_rv += 1;
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["resourceVersion"] = json!(inner.next_rv.to_string());
            obj["metadata"]["uid"] = json!(format!("uid-{name}"));
            inner.objects.insert((ns, name), obj.clone());
            (201, obj.to_string())
        }
        ("PUT", Some(name)) => {
            let Ok(mut obj) = serde_json::from_str::<Value>(body) else {
                return status(400, "BadRequest", "the body is not JSON".into(), &name);
            };
            if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
                return status(400, "BadRequest", "the name of the object does not match the URL".into(), &name);
            }
            let Some(current) = inner.objects.get(&(ns.clone(), name.clone())) else {
                return not_found(&name);
            };
            let current_rv = current.pointer("/metadata/resourceVersion").cloned();
            // Like the real server for ConfigMaps: no resourceVersion means an unconditional update.
            if let Some(rv) = obj.pointer("/metadata/resourceVersion").filter(|v| !v.is_null())
                && Some(rv) != current_rv.as_ref()
            {
                return status(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; \
                         please apply your changes to the latest version and try again"
                    ),
                    &name,
                );
            }
            if let Err(e) = check_size(&obj, &name) {
                return e;
            }
            inner.next_rv += 1;
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["resourceVersion"] = json!(inner.next_rv.to_string());
            inner.objects.insert((ns, name), obj.clone());
            (200, obj.to_string())
        }
        _ => status(405, "MethodNotAllowed", format!("{method} is not supported here"), ""),
    }
}

/// The real limit: data and binaryData together at most 1 MiB.
fn check_size(obj: &Value, name: &str) -> Result<(), (u16, String)> {
    let size: usize = ["data", "binaryData"]
        .iter()
        .filter_map(|k| obj.get(k).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > 1024 * 1024 {
        return Err(status(422, "Invalid", format!("ConfigMap \"{name}\" is invalid: []: Too long"), name));
    }
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as (CA PEM, rustls server config).
pub fn tls_for_localhost() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fake-kube-ca");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .expect("server config");
    (ca_cert.pem(), config)
}
