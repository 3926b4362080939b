//! The ConfigMap backend: the state JSON under data key `state.json`, read and written through the
//! Kubernetes REST API with compare-and-swap on `metadata.resourceVersion`.
//!
//! Mutual exclusion is a lease kept in an annotation of the same ConfigMap
//! (`sentry.dev/lease: {"holder": RUN_ID, "expires": RFC3339}`), taken, renewed and released by
//! compare-and-swap. Its term is `global.timeout` plus a margin; a background thread renews it
//! every third of that, so a long run keeps it and a killed run loses it within one term. Every
//! save renews it as well (a PUT carries the annotation anyway).
//!
//! Endpoint: `SENTRY_KUBE_API` (e.g. `http://127.0.0.1:8001` from `kubectl proxy`, no
//! credentials) or, in a pod, `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the
//! service account's token and CA.

use super::{Location, LockMode, State, StateError, StateStore, StoreOptions, from_json, merge, to_compact_json};
use crate::http::{Http, HttpErrorKind, Method, Request};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The data key holding the state document.
pub const DATA_KEY: &str = "state.json";
/// The `binaryData` key of the state since format 2: compact JSON, gzip-compressed.
pub const GZ_KEY: &str = "state.json.gz";
/// Largest state a compressed copy may expand to (a gzip bomb is refused, not unpacked).
const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;
/// The annotation holding the lease.
pub const LEASE_ANNOTATION: &str = "sentry.dev/lease";
/// Overrides the API endpoint (no credentials sent), e.g. `kubectl proxy`.
pub const KUBE_API_ENV: &str = "SENTRY_KUBE_API";
/// FOR TESTS ONLY: replaces the service-account directory so a test can supply a token and CA.
pub const TEST_SA_DIR_ENV: &str = "SENTRY_TEST_SA_DIR";
/// Where a pod's service-account token, CA and namespace are mounted.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The API server refuses a ConfigMap whose data exceeds 1 MiB; refuse first, with a clear message.
pub const MAX_DATA_BYTES: u64 = 1024 * 1024;
/// Longest slack added to `global.timeout` for the lease term.
pub const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// The lease term: `lock_timeout` plus a fifth of it as slack for clock skew (1 s to
/// [`LEASE_MARGIN`]). It is renewed every third of the term, so only a dead run lets it lapse.
pub fn lease_term(lock_timeout: Duration) -> Duration {
    lock_timeout + (lock_timeout / 5).clamp(Duration::from_secs(1), LEASE_MARGIN)
}

/// Largest response read: a full ConfigMap plus metadata.
const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;
/// Compare-and-swap attempts before giving up on an object that keeps changing.
const MAX_CAS_ATTEMPTS: usize = 5;
/// How often `LockMode::Wait` looks at the lease again.
const LEASE_POLL: Duration = Duration::from_secs(1);

/// The lease annotation's value.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    expires: String,
}

/// A state kept in a ConfigMap.
pub struct ConfigMapStore {
    shared: Arc<Mutex<Session>>,
    renewer: Option<Renewer>,
    location: String,
}

/// What the store and its lease-renewing thread share; one request at a time.
struct Session {
    api: KubeApi,
    run_id: String,
    /// Lease term.
    term: Duration,
    read_only: bool,
    /// This run holds the lease.
    locked: bool,
    /// Another run took the lease over: set once, then every save fails.
    lost: Option<String>,
    /// The object as last read or written; `None` when it does not exist.
    object: Option<Value>,
    /// `object` reflects the server (a GET or write happened).
    fetched: bool,
}

struct Renewer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for ConfigMapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStore").field("location", &self.location).finish_non_exhaustive()
    }
}

impl ConfigMapStore {
    /// Opens ConfigMap `name` at the endpoint the process environment names (see [`Endpoint::from_env`]).
    pub fn open(
        namespace: Option<&str>,
        name: &str,
        mode: LockMode,
        opts: &StoreOptions,
    ) -> Result<ConfigMapStore, StateError> {
        let endpoint = Endpoint::from_env(&|k| std::env::var(k).ok()).map_err(|message| StateError::Kube {
            location: match namespace {
                Some(ns) => format!("configmap:{ns}/{name}"),
                None => format!("configmap:{name}"),
            },
            message,
        })?;
        Self::open_at(&endpoint, namespace, name, mode, opts)
    }

    /// Opens ConfigMap `name` at `endpoint` and, unless `mode` is `None`, takes the lease
    /// (creating the ConfigMap if missing).
    pub fn open_at(
        endpoint: &Endpoint,
        namespace: Option<&str>,
        name: &str,
        mode: LockMode,
        opts: &StoreOptions,
    ) -> Result<ConfigMapStore, StateError> {
        let api = KubeApi::new(endpoint, namespace, name, opts.http_timeout)?;
        let location = api.location.clone();
        let term = lease_term(opts.lock_timeout);
        let mut shared = Session {
            api,
            run_id: opts.run_id.clone(),
            term,
            read_only: mode == LockMode::None,
            locked: false,
            lost: None,
            object: None,
            fetched: false,
        };
        let wait = match mode {
            LockMode::None => None,
            LockMode::Try => Some(Duration::ZERO),
            LockMode::Wait(d) => Some(d),
        };
        if let Some(wait) = wait {
            shared.acquire(wait)?;
        }
        let shared = Arc::new(Mutex::new(shared));
        let renewer = wait.map(|_| Renewer::start(Arc::clone(&shared), (term / 3).max(Duration::from_secs(1))));
        Ok(ConfigMapStore { shared, renewer, location })
    }

    fn shared(&self) -> MutexGuard<'_, Session> {
        // A panic elsewhere while holding it leaves plain data behind; carry on with it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for ConfigMapStore {
    fn load(&mut self) -> Result<State, StateError> {
        let mut s = self.shared();
        let object = s.api.get()?;
        s.object = object;
        s.fetched = true;
        Ok(s.stored_state(s.object.as_ref())?.unwrap_or_default())
    }

    fn save(&mut self, state: &State) -> Result<(), StateError> {
        let mut s = self.shared();
        if s.read_only {
            return Err(StateError::ReadOnly { location: s.api.location.clone() });
        }
        let location = s.api.location.clone();
        let (locked, run_id, term) = (s.locked, s.run_id.clone(), s.term);
        s.cas(&mut |obj, retry| {
            // Checked on every attempt: a stored state that does not parse is never replaced.
            let stored = stored_state(&location, Some(obj))?;
            let to_write = match (retry, stored) {
                // Someone wrote behind our back: keep their repositories ours does not have.
                (true, Some(theirs)) => merge(state, &theirs),
                _ => state.clone(),
            };
            // Over the limit, the cache validators go first: they only save requests (SPEC §3).
            let gz = super::encode_within(&to_write, MAX_DATA_BYTES, |st| gzip(&to_compact_json(st)))
                .map_err(|size| StateError::TooLarge { location: location.clone(), size, limit: MAX_DATA_BYTES })?;
            set_data(obj, &gz);
            if locked {
                set_lease(obj, &run_id, term);
            }
            Ok(true)
        })
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

impl Drop for ConfigMapStore {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            drop(r.stop);
            let _ = r.thread.join();
        }
        let mut s = self.shared();
        if s.locked && s.lost.is_none() {
            let run_id = s.run_id.clone();
            let released = s.cas(&mut |obj, _| {
                let ours = lease_of(obj).is_some_and(|(holder, _)| holder == run_id);
                if ours && let Some(a) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
                    a.remove(LEASE_ANNOTATION);
                }
                Ok(ours)
            });
            match released {
                Ok(()) => s.locked = false,
                Err(e) => log::warn!("could not release the lease ({e}); it expires by itself"),
            }
        }
    }
}

impl Renewer {
    fn start(shared: Arc<Mutex<Session>>, every: Duration) -> Renewer {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // Wakes every `every`, or at once when the store drops the sender.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                if !s.locked || s.lost.is_some() {
                    break;
                }
                let (run_id, term) = (s.run_id.clone(), s.term);
                match s.cas(&mut |obj, _| {
                    set_lease(obj, &run_id, term);
                    Ok(true)
                }) {
                    Ok(()) => log::debug!("renewed the lease on {}", s.api.location),
                    // Lost for good is reported by the next save; anything else may pass.
                    Err(e) => log::warn!("could not renew the lease: {e}"),
                }
            }
        });
        Renewer { stop, thread }
    }
}

impl Session {
    /// Takes the lease, waiting up to `wait` while another run holds an unexpired one.
    fn acquire(&mut self, wait: Duration) -> Result<(), StateError> {
        let deadline = Instant::now().checked_add(wait);
        let mut races = 0;
        loop {
            let current = self.api.get()?;
            let mut obj = match &current {
                Some(obj) => {
                    if let Some((holder, expires)) = lease_of(obj).filter(|(h, _)| *h != self.run_id) {
                        let now = SystemTime::now();
                        // A lease can never reach further than one term from now: one that does
                        // (a skewed clock, a hand edit) would be obeyed forever (SPEC §3).
                        let bogus = now.checked_add(self.term).is_none_or(|limit| expires > limit);
                        if bogus {
                            log::warn!(
                                "the lease of run {holder} on {} expires at {}, further ahead than one term ({} s): invalid, taking it over",
                                self.api.location,
                                crate::time::rfc3339(expires),
                                self.term.as_secs()
                            );
                        } else if expires > now {
                            if crate::signals::stop_requested() {
                                return Err(StateError::Stopped { location: self.api.location.clone() });
                            }
                            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                            if left.is_some_and(|l| l.is_zero()) {
                                let until = crate::time::rfc3339(expires);
                                let holder = format!("run {holder}, lease until {until}");
                                return Err(StateError::Busy { location: self.api.location.clone(), holder });
                            }
                            std::thread::sleep(left.map_or(LEASE_POLL, |l| LEASE_POLL.min(l)));
                            continue;
                        } else {
                            log::info!("taking over the expired lease of run {holder} on {}", self.api.location);
                        }
                    }
                    obj.clone()
                }
                None => self.api.new_object(),
            };
            set_lease(&mut obj, &self.run_id, self.term);
            match self.api.write(&obj, current.is_some())? {
                Written::Ok(v) => {
                    self.object = Some(v);
                    self.fetched = true;
                    self.locked = true;
                    return Ok(());
                }
                // Another run moved first: look again.
                Written::Conflict => races += 1,
            }
            if races >= MAX_CAS_ATTEMPTS * 2 {
                return Err(self.api.kube("the ConfigMap kept changing while taking the lease; giving up".into()));
            }
        }
    }

    /// The compare-and-swap loop: applies `mutate` to the latest known object (`retry` is true
    /// after a conflict re-read it), then writes it with its resourceVersion. `mutate` returns
    /// false when there is nothing to write.
    fn cas(&mut self, mutate: &mut dyn FnMut(&mut Value, bool) -> Result<bool, StateError>) -> Result<(), StateError> {
        if let Some(holder) = &self.lost {
            return Err(StateError::LeaseLost { location: self.api.location.clone(), holder: holder.clone() });
        }
        if !self.fetched {
            self.object = self.api.get()?;
            self.fetched = true;
        }
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let exists = self.object.is_some();
            let mut obj = self.object.clone().unwrap_or_else(|| self.api.new_object());
            if self.locked
                && let Some((holder, expires)) = lease_of(&obj).filter(|(h, _)| *h != self.run_id)
            {
                let holder = format!("run {holder}, lease until {}", crate::time::rfc3339(expires));
                self.lost = Some(holder.clone());
                return Err(StateError::LeaseLost { location: self.api.location.clone(), holder });
            }
            if !mutate(&mut obj, attempt > 0)? {
                return Ok(());
            }
            match self.api.write(&obj, exists)? {
                Written::Ok(v) => {
                    self.object = Some(v);
                    return Ok(());
                }
                Written::Conflict => {
                    log::info!("{} changed behind this run's back; re-reading and merging", self.api.location);
                    self.object = self.api.get()?;
                }
            }
        }
        Err(self.api.kube(format!("the ConfigMap kept changing; gave up after {MAX_CAS_ATTEMPTS} attempts")))
    }

    fn stored_state(&self, obj: Option<&Value>) -> Result<Option<State>, StateError> {
        stored_state(&self.api.location, obj)
    }
}

/// The state in an object: `binaryData` `state.json.gz` (format 2), else `data` `state.json`
/// (written by sentry 1.x; converted by the next save).
fn stored_state(location: &str, obj: Option<&Value>) -> Result<Option<State>, StateError> {
    let corrupt = |reason: String| StateError::Corrupt { location: location.to_string(), reason };
    if let Some(packed) = obj.and_then(|o| o.pointer(&format!("/binaryData/{GZ_KEY}"))).filter(|v| !v.is_null()) {
        use base64::Engine;
        let text = packed.as_str().ok_or_else(|| corrupt(format!("binaryData key {GZ_KEY} is not a string")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| corrupt(format!("binaryData key {GZ_KEY} is not base64: {e}")))?;
        let json = gunzip(&bytes).map_err(|e| corrupt(format!("binaryData key {GZ_KEY}: {e}")))?;
        return from_json(location, &json).map(Some);
    }
    let Some(data) = obj.and_then(|o| o.pointer("/data")).filter(|d| !d.is_null()) else { return Ok(None) };
    match data.get(DATA_KEY) {
        None => Ok(None),
        Some(Value::String(text)) => from_json(location, text.as_bytes()).map(Some),
        Some(_) => Err(corrupt(format!("data key {DATA_KEY} is not a string"))),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Unpacks at most [`MAX_UNPACKED_BYTES`].
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_UNPACKED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() as u64 > MAX_UNPACKED_BYTES {
        return Err(format!("unpacks to more than {MAX_UNPACKED_BYTES} bytes"));
    }
    Ok(out)
}

/// The current lease: (holder, expiry). A lease that does not parse counts as none, so a
/// hand-edited annotation cannot block every run forever.
fn lease_of(obj: &Value) -> Option<(String, SystemTime)> {
    let raw = obj.pointer("/metadata/annotations")?.get(LEASE_ANNOTATION)?.as_str()?;
    let parsed = serde_json::from_str::<Lease>(raw)
        .ok()
        .and_then(|l| crate::time::parse_rfc3339(&l.expires).map(|t| (l.holder, t)));
    if parsed.is_none() {
        log::warn!("ignoring an unreadable lease annotation {LEASE_ANNOTATION}: {raw:?}");
    }
    parsed
}

fn set_lease(obj: &mut Value, run_id: &str, term: Duration) {
    let lease = Lease {
        holder: run_id.to_string(),
        expires: crate::time::rfc3339(SystemTime::now().checked_add(term).unwrap_or_else(SystemTime::now)),
    };
    let text = serde_json::to_string(&lease).unwrap_or_else(|e| unreachable!("lease serializes: {e}"));
    object_at(obj, "metadata", "annotations").insert(LEASE_ANNOTATION.into(), Value::String(text));
}

/// Stores the packed state under `binaryData`, and removes version 1's `data` copy.
fn set_data(obj: &mut Value, gz: &[u8]) {
    use base64::Engine;
    if let Some(o) = obj.as_object_mut() {
        if !o.get("binaryData").is_some_and(Value::is_object) {
            o.insert("binaryData".into(), json!({}));
        }
        if let Some(data) = o.get_mut("data").and_then(Value::as_object_mut) {
            data.remove(DATA_KEY);
        }
        if let Some(bin) = o.get_mut("binaryData").and_then(Value::as_object_mut) {
            bin.insert(GZ_KEY.into(), Value::String(base64::engine::general_purpose::STANDARD.encode(gz)));
        }
    }
}

/// `obj[outer][inner]` as a map, created (replacing anything else found there) when missing.
fn object_at<'a>(obj: &'a mut Value, outer: &str, inner: &str) -> &'a mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let mut slot = obj;
    for key in [outer, inner] {
        let map = slot.as_object_mut().unwrap_or_else(|| unreachable!("made an object above"));
        let entry = map.entry(key.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        slot = entry;
    }
    slot.as_object_mut().unwrap_or_else(|| unreachable!("made an object above"))
}

/// The outcome of a write the caller can act on; every other failure is an error.
enum Written {
    /// Stored; the object as the server now has it.
    Ok(Value),
    /// 409 (stale resourceVersion, or created meanwhile) or 404 (deleted meanwhile): re-read.
    Conflict,
}

/// Where the Kubernetes API is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `scheme://host:port`, no trailing slash.
    pub base: String,
    /// Bearer token (in-cluster); never printed.
    pub token: Option<Secret>,
    /// The only trusted CA (PEM), in-cluster.
    pub ca_pem: Option<Vec<u8>>,
    /// The service-account directory, for the pod's namespace.
    pub sa_dir: PathBuf,
}

impl Endpoint {
    /// From the environment, looked up through `var`: `SENTRY_KUBE_API` (no credentials), else
    /// in-cluster (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA from the service-account
    /// directory, re-read on every call because projected tokens rotate).
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, String> {
        let sa_dir = match var(TEST_SA_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(SA_DIR),
        };
        if let Some(base) =
            var(KUBE_API_ENV).map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty())
        {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(format!("{KUBE_API_ENV}={base:?} is not an http:// or https:// URL"));
            }
            return Ok(Endpoint { base, token: None, ca_pem: None, sa_dir });
        }
        let host = var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
        if host.is_empty() {
            return Err(format!(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); set {KUBE_API_ENV} \
                 (e.g. http://127.0.0.1:8001 with kubectl proxy) to reach a cluster from outside"
            ));
        }
        let port = var("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty()).unwrap_or_else(|| "443".into());
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
        let token_path = sa_dir.join("token");
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| format!("cannot read the service account token {}: {e}", token_path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("the service account token {} is empty", token_path.display()));
        }
        let ca_path = sa_dir.join("ca.crt");
        let ca =
            std::fs::read(&ca_path).map_err(|e| format!("cannot read the cluster CA {}: {e}", ca_path.display()))?;
        Ok(Endpoint {
            base: format!("https://{host}:{port}"),
            token: Some(Secret::new(token)),
            ca_pem: Some(ca),
            sa_dir,
        })
    }
}

/// One ConfigMap on one API server.
struct KubeApi {
    http: Http,
    base: String,
    token: Option<Secret>,
    namespace: String,
    name: String,
    location: String,
}

impl KubeApi {
    /// The API for ConfigMap `name` in `namespace` (else the pod's own, from the service-account directory).
    fn new(endpoint: &Endpoint, namespace: Option<&str>, name: &str, timeout: Duration) -> Result<KubeApi, StateError> {
        let given = match namespace {
            Some(ns) => format!("configmap:{ns}/{name}"),
            None => format!("configmap:{name}"),
        };
        let err = |message: String| StateError::Kube { location: given.clone(), message };
        let namespace = match namespace {
            Some(ns) => ns.to_string(),
            None => {
                let path = endpoint.sa_dir.join("namespace");
                let ns = std::fs::read_to_string(&path).map_err(|e| {
                    err(format!(
                        "cannot read the pod's namespace from {}: {e}; outside a pod, name it: configmap:NAMESPACE/{name}",
                        path.display()
                    ))
                })?;
                ns.trim().to_string()
            }
        };
        // The namespace file goes into a URL path: hold it to the same rules as a written one.
        Location::parse(&format!("configmap:{namespace}/{name}")).map_err(&err)?;
        let ca_path = endpoint.sa_dir.join("ca.crt");
        let http = Http::cluster(endpoint.ca_pem.as_deref(), timeout)
            .map_err(|m| err(format!("the CA file {} {m}", ca_path.display())))?;
        Ok(KubeApi {
            http,
            base: endpoint.base.clone(),
            token: endpoint.token.clone(),
            location: format!("configmap:{namespace}/{name}"),
            namespace,
            name: name.to_string(),
        })
    }

    fn kube(&self, message: String) -> StateError {
        StateError::Kube { location: self.location.clone(), message }
    }

    fn collection_url(&self) -> String {
        format!("{}/api/v1/namespaces/{}/configmaps", self.base, self.namespace)
    }

    fn object_url(&self) -> String {
        format!("{}/{}", self.collection_url(), self.name)
    }

    fn new_object(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace},
        })
    }

    /// The object, or `None` when it does not exist.
    fn get(&self) -> Result<Option<Value>, StateError> {
        let (code, body) = self.send(Method::Get, &self.object_url(), None)?;
        match code {
            200 => self.object_of(&body).map(Some),
            404 => Ok(None),
            _ => Err(self.refusal("read", code, &body)),
        }
    }

    /// PUT (with the object's resourceVersion) when it `exists`, else POST.
    fn write(&self, obj: &Value, exists: bool) -> Result<Written, StateError> {
        let body = serde_json::to_vec(obj).unwrap_or_else(|e| unreachable!("value serializes: {e}"));
        let (code, reply) = if exists {
            self.send(Method::Put, &self.object_url(), Some(body))?
        } else {
            self.send(Method::Post, &self.collection_url(), Some(body))?
        };
        match code {
            200 | 201 => self.object_of(&reply).map(Written::Ok),
            409 => {
                log::debug!("{}: 409 {}", self.location, status_text(&reply));
                Ok(Written::Conflict)
            }
            404 if exists => Ok(Written::Conflict),
            _ => Err(self.refusal("write", code, &reply)),
        }
    }

    fn object_of(&self, body: &str) -> Result<Value, StateError> {
        match serde_json::from_str::<Value>(body) {
            Ok(v) if v.get("kind").and_then(Value::as_str) == Some("ConfigMap") => Ok(v),
            _ => Err(self.kube("the API server answered with something other than a ConfigMap".into())),
        }
    }

    /// A clear error for an answer that is not a success, with what to do about it.
    fn refusal(&self, what: &str, code: u16, body: &str) -> StateError {
        let hint = match code {
            401 => "; the service account token was rejected".to_string(),
            403 => format!(
                "; the service account needs get, create and update on configmaps in namespace {}",
                self.namespace
            ),
            _ => String::new(),
        };
        self.kube(format!("cannot {what} the ConfigMap: HTTP {code}: {}{hint}", status_text(body)))
    }

    /// Sends one request (no retry, no redirect, no proxy: see [`Http::cluster`]); `(status,
    /// body)` for every HTTP answer, an error when none came.
    fn send(&self, method: Method, url: &str, body: Option<Vec<u8>>) -> Result<(u16, String), StateError> {
        let mut req =
            Request::new(method, url).header("Accept", "application/json").any_status().max_body(MAX_RESPONSE_BYTES);
        if let Some(body) = body {
            req = req.body("application/json", body);
        }
        if let Some(t) = &self.token {
            req = req.secret_header("Authorization", Secret::new(format!("Bearer {}", t.expose())));
        }
        let unreadable = |why: &str| self.kube(format!("cannot read the answer of {} {url}: {why}", method.as_str()));
        // Error texts name the URL at most; the token lives only in the header.
        let resp = self.http.send(&req).map_err(|e| match e.kind {
            HttpErrorKind::Protocol => unreadable(&e.detail),
            _ => self.kube(format!("cannot reach the Kubernetes API at {}: {}", self.base, e.detail)),
        })?;
        let text = String::from_utf8(resp.body).map_err(|_| unreadable("not UTF-8"))?;
        Ok((resp.status, text))
    }
}

/// The message of a Kubernetes `Status` body, else the start of the body.
fn status_text(body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let from_status = parsed.as_ref().and_then(|v| {
        let message = v.get("message").and_then(Value::as_str)?;
        Some(match v.get("reason").and_then(Value::as_str) {
            Some(reason) if !reason.is_empty() => format!("{reason}: {message}"),
            _ => message.to_string(),
        })
    });
    let mut text = from_status.unwrap_or_else(|| body.trim().to_string());
    if text.len() > 300 {
        let cut = (0..=300).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_annotation_round_trips_and_garbage_counts_as_none() {
        let mut obj = json!({"kind": "ConfigMap", "metadata": {"annotations": null}});
        set_lease(&mut obj, "run-1", Duration::from_secs(120));
        let (holder, expires) = lease_of(&obj).expect("lease");
        assert_eq!(holder, "run-1");
        assert!(expires > SystemTime::now() + Duration::from_secs(100));
        obj["metadata"]["annotations"][LEASE_ANNOTATION] = json!("{\"holder\":\"x\",\"expires\":\"soon\"}");
        assert!(lease_of(&obj).is_none());
        obj["metadata"]["annotations"][LEASE_ANNOTATION] = json!("not json");
        assert!(lease_of(&obj).is_none());
    }

    #[test]
    fn the_state_is_packed_and_version_1_data_is_read_and_replaced() {
        let v1 =
            json!({"kind": "ConfigMap", "metadata": {}, "data": {"other": "abc", "state.json": "{\"version\":1}"}});
        assert_eq!(stored_state("l", Some(&v1)).expect("v1 parses"), Some(State::default()));
        let mut obj = v1.clone();
        set_data(&mut obj, &gzip(&to_compact_json(&State::default())));
        assert!(obj["data"].get(DATA_KEY).is_none(), "the v1 copy is gone");
        assert_eq!(obj["data"]["other"], "abc", "other keys are kept");
        assert_eq!(stored_state("l", Some(&obj)).expect("parses"), Some(State::default()));
        let mut bad = obj.clone();
        bad["binaryData"][GZ_KEY] = json!("not base64!");
        assert!(stored_state("l", Some(&bad)).is_err());
        let empty = json!({"kind": "ConfigMap", "metadata": {}});
        assert!(stored_state("l", Some(&empty)).expect("no data").is_none());
    }

    #[test]
    fn status_text_prefers_the_status_message() {
        let body = r#"{"kind":"Status","status":"Failure","message":"configmaps \"s\" already exists","reason":"AlreadyExists","code":409}"#;
        assert_eq!(status_text(body), "AlreadyExists: configmaps \"s\" already exists");
        assert_eq!(status_text("plain"), "plain");
        assert!(status_text(&"é".repeat(400)).ends_with('…'));
    }
}
