//! A small stateful Kubernetes API server for the runtime's tests, with a fake kubelet.
//!
//! It speaks the parts of the API the runtime uses, over real HTTP: server-side apply and JSON
//! merge patches, get, list with label selectors, watch (newline-delimited events from a
//! resource version), delete (namespaces and pods gracefully, dependents in the background)
//! and pod logs. The kubelet, every 20 ms, makes the pods of Deployments (`Recreate`: the old
//! pods go before the new start), runs a pod per Job to completion, moves pods from Pending to
//! Running, and ends a deleted pod after it took [`Fake::set_stop_time`] to stop — or its
//! grace period, if that is shorter (then it was killed: exit code 137, else 143) — leaving it
//! `Failed` for 100 ms before it goes, as kubelets since Kubernetes 1.27 do. Every request is
//! recorded.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (plural, namespace — empty for cluster-wide objects —, name)
type Key = (String, String, String);

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    /// Every change: (resource version, key, type, object).
    history: Vec<(u64, Key, &'static str, Value)>,
    requests: Vec<Seen>,
    /// Each pod's output lines (by uid).
    logs: HashMap<String, Vec<(DateTime<Utc>, String)>>,
    stop_time: Duration,
    job_time: Duration,
    uids: u64,
    /// Deployments whose pods fail to start (the container exits at once, again and again).
    failing: Vec<String>,
    /// Every patch is answered 500 (an API server that does not take changes: its storage
    /// failing, an admission webhook broken). Not 503: kube's client retries that one itself,
    /// for minutes.
    refusing: bool,
    /// Every patch is answered 503 (an API server overloaded; kube's client retries it).
    overloaded: bool,
    /// Every patch is answered this much later (on either address), after it took effect.
    patch_latency: Duration,
    /// Patches of the one object whose path ends so are answered 500.
    refusing_only: Option<String>,
}

#[derive(Clone)]
pub struct Fake {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    pub url: String,
    /// The same API server, answering each apply or patch 30 ms late (a server far away).
    pub slow_url: String,
    tasks: Arc<Vec<tokio::task::JoinHandle<()>>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "pods" => "Pod",
        "namespaces" => "Namespace",
        "priorityclasses" => "PriorityClass",
        "secrets" => "Secret",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "deployments" => "Deployment",
        "services" => "Service",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        _ => "Unknown",
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), [("content-type", "application/json")], body.to_string()).into_response()
}

fn ok(value: &Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Whether `labels` match a selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated).
pub fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|r| !r.trim().is_empty()).all(|req| {
        let req = req.trim();
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        if let Some((k, v)) = req.split_once("!=") {
            get(k) != Some(v)
        } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            get(k) == Some(v)
        } else if let Some(k) = req.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(req).is_some()
        }
    })
}

/// Where a request goes: the plural, the namespace, the name and a subresource.
struct Route {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match *segments.first()? {
        "api" => segments.get(2..)?,
        "apis" => segments.get(3..)?,
        _ => return None,
    };
    let s = |i: usize| rest.get(i).map(|s| s.to_string());
    Some(match rest.len() {
        1 => Route { plural: s(0)?, namespace: None, name: None, sub: None },
        2 => Route { plural: s(0)?, namespace: None, name: s(1), sub: None },
        3 if rest[0] == "namespaces" => Route { plural: s(2)?, namespace: s(1), name: None, sub: None },
        4 if rest[0] == "namespaces" => Route { plural: s(2)?, namespace: s(1), name: s(3), sub: None },
        5 if rest[0] == "namespaces" => Route { plural: s(2)?, namespace: s(1), name: s(3), sub: s(4) },
        _ => return None,
    })
}

/// Applies `patch` onto `target` as a JSON merge patch (RFC 7386).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().unwrap();
            for (k, v) in fields {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Inner {
    fn record(&mut self, key: &Key, kind: &'static str, object: Value) {
        self.rv += 1;
        self.history.push((self.rv, key.clone(), kind, object));
    }

    /// The running pods of a component (in any namespace).
    fn running_pods(&self, component: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(k, o)| {
                k.0 == "pods"
                    && o["metadata"]["labels"]["pergola.dev/component"] == component
                    && o["status"]["phase"] == "Running"
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stores an object (new or changed): its resource version, and an event.
    fn put(&mut self, key: Key, mut object: Value) {
        let created = !self.objects.contains_key(&key);
        self.rv += 1;
        let rv = self.rv;
        if created {
            self.uids += 1;
            object["metadata"]["uid"] = json!(format!("uid-{}", self.uids));
            object["metadata"]["creationTimestamp"] = json!(now());
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.history.push((rv, key, if created { "ADDED" } else { "MODIFIED" }, object));
    }

    fn remove(&mut self, key: &Key) {
        if let Some(mut object) = self.objects.remove(key) {
            self.rv += 1;
            object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.history.push((self.rv, key.clone(), "DELETED", object));
        }
    }

    /// Marks an object as being deleted (a pod stops, a namespace empties).
    fn deleting(&mut self, key: &Key) {
        if let Some(mut object) = self.objects.get(key).cloned() {
            if object["metadata"]["deletionTimestamp"].is_null() {
                // As the API server does: a pod's deletion time is when its grace period ends
                // (the kubelet kills it then), and the grace period is kept beside it.
                let grace = if key.0 == "pods" {
                    object["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)
                } else {
                    0
                };
                let at = Utc::now() + chrono::Duration::seconds(grace);
                object["metadata"]["deletionTimestamp"] = json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
                object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                if key.0 == "namespaces" {
                    object["status"] = json!({"phase": "Terminating"});
                }
                self.put(key.clone(), object);
            }
        }
    }

    /// The pods of `owner` (`Kind/name`) in namespace `ns`.
    fn owned_by(&self, ns: &str, owner: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(k, o)| k.0 == "pods" && k.1 == ns && o["metadata"]["annotations"]["fake/owner"] == owner)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn new_pod(&mut self, ns: &str, owner: &str, template: &Value, hash: &str) {
        self.uids += 1;
        let name = format!("{}-{}", owner.split('/').nth(1).unwrap_or("pod"), self.uids);
        let mut meta = template["metadata"].clone();
        meta["name"] = json!(name);
        meta["namespace"] = json!(ns);
        meta["annotations"] = json!({"fake/owner": owner, "fake/hash": hash});
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"],
            "status": {"phase": "Pending"}});
        self.put(("pods".into(), ns.into(), name), pod);
    }

    /// One round of the kubelet and the controllers.
    fn tick(&mut self) {
        let now_t = Utc::now();
        let since = |o: &Value, field: &str| {
            o["metadata"][field]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| now_t - t.with_timezone(&Utc))
        };
        // Namespaces being deleted: everything in them goes, then they do.
        let ending: Vec<Key> = self
            .objects
            .iter()
            .filter(|(k, o)| {
                k.0 == "namespaces"
                    && since(o, "deletionTimestamp").is_some_and(|d| d >= chrono::Duration::milliseconds(200))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for ns in ending {
            let inside: Vec<Key> = self.objects.keys().filter(|k| k.1 == ns.2).cloned().collect();
            for key in inside {
                self.remove(&key);
            }
            self.remove(&ns);
        }
        // Deployments: Recreate — old pods go first, then the new ones start.
        let deployments: Vec<(Key, Value)> =
            self.objects.iter().filter(|(k, _)| k.0 == "deployments").map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, d) in deployments {
            let owner = format!("Deployment/{}", key.2);
            let template = &d["spec"]["template"];
            let hash = format!("{:x}", md5ish(&template.to_string()));
            let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
            let pods = self.owned_by(&key.1, &owner);
            let old: Vec<Key> = pods
                .iter()
                .filter(|k| self.objects[*k]["metadata"]["annotations"]["fake/hash"] != hash)
                .cloned()
                .collect();
            for k in &old {
                self.deleting(k);
            }
            if !old.is_empty() {
                continue;
            }
            let live: Vec<Key> =
                pods.iter().filter(|k| self.objects[*k]["metadata"]["deletionTimestamp"].is_null()).cloned().collect();
            if live.len() < replicas {
                for _ in live.len()..replicas {
                    self.new_pod(&key.1, &owner, template, &hash);
                }
            }
            for k in live.iter().skip(replicas) {
                self.deleting(k);
            }
        }
        // Jobs: one pod each, once.
        let jobs: Vec<(Key, Value)> =
            self.objects.iter().filter(|(k, _)| k.0 == "jobs").map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, mut job) in jobs {
            let owner = format!("Job/{}", key.2);
            if job["spec"]["suspend"] == true {
                for pod in self.owned_by(&key.1, &owner) {
                    if self.objects[&pod]["status"]["phase"] != "Succeeded" {
                        self.deleting(&pod);
                    }
                }
                continue;
            }
            if job["status"]["startTime"].is_null() {
                self.new_pod(&key.1, &owner, &job["spec"]["template"].clone(), "job");
                job["status"] = json!({"startTime": now(), "active": 1});
                self.put(key, job);
            } else if job["status"]["succeeded"].is_null() {
                let done =
                    self.owned_by(&key.1, &owner).iter().any(|k| self.objects[k]["status"]["phase"] == "Succeeded");
                if done {
                    job["status"] =
                        json!({"startTime": job["status"]["startTime"], "succeeded": 1, "completionTime": now()});
                    self.put(key, job);
                }
            }
        }
        // Pods: orphans go; Pending → Running; a job's pod completes; deleted pods stop.
        let pods: Vec<(Key, Value)> =
            self.objects.iter().filter(|(k, _)| k.0 == "pods").map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, mut pod) in pods {
            let owner = pod["metadata"]["annotations"]["fake/owner"].as_str().unwrap_or_default().to_owned();
            let (owner_kind, owner_name) = owner.split_once('/').unwrap_or(("", ""));
            let plural = if owner_kind == "Job" { "jobs" } else { "deployments" };
            let owned = self.objects.contains_key(&(plural.into(), key.1.clone(), owner_name.into()));
            let phase = pod["status"]["phase"].as_str().unwrap_or("Pending").to_owned();
            let container = pod["spec"]["containers"][0]["name"].as_str().unwrap_or("main").to_owned();
            if let Some(past_kill) = since(&pod, "deletionTimestamp") {
                let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_u64().unwrap_or(30);
                let waited = past_kill + chrono::Duration::seconds(grace as i64);
                let stop = self.stop_time.min(Duration::from_secs(grace));
                let ended = pod["metadata"]["annotations"]["fake/ended"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| now_t - t.with_timezone(&Utc));
                if let Some(ended) = ended {
                    // As the kubelet does since Kubernetes 1.27: a pod whose container ended
                    // stays Failed for a moment, then goes.
                    if ended >= chrono::Duration::milliseconds(100) {
                        self.remove(&key);
                    }
                } else if phase == "Succeeded" || phase == "Failed" {
                    self.remove(&key);
                } else if waited.to_std().unwrap_or_default() >= stop {
                    // SIGTERM honoured (143), or SIGKILL at the end of the grace period (137).
                    let code = if self.stop_time >= Duration::from_secs(grace) { 137 } else { 143 };
                    pod["status"] = json!({"phase": "Failed", "containerStatuses": [{"name": container,
                        "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                        "state": {"terminated": {"exitCode": code, "reason": "Error", "finishedAt": now()}}}]});
                    pod["metadata"]["annotations"]["fake/ended"] = json!(now());
                    self.put(key, pod);
                }
                continue;
            }
            if !owned {
                self.deleting(&key);
                continue;
            }
            let age = since(&pod, "creationTimestamp").and_then(|a| a.to_std().ok()).unwrap_or_default();
            if phase == "Pending" && age >= Duration::from_millis(30) {
                let failing = self.failing.contains(&owner_name.to_owned());
                pod["status"] = if failing {
                    json!({"phase": "Running", "containerStatuses": [{"name": container, "ready": false,
                        "restartCount": 1, "image": "x", "imageID": "", "started": false,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 3, "startedAt": now(), "finishedAt": now()}}}]})
                } else {
                    json!({"phase": "Running", "containerStatuses": [{"name": container, "ready": true,
                        "restartCount": 0, "image": "x", "imageID": "", "started": true,
                        "state": {"running": {"startedAt": now()}}}]})
                };
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                self.logs.entry(uid).or_default().push((Utc::now(), format!("{container} started in {}", key.2)));
                self.put(key, pod);
            } else if phase == "Running" && owner_kind == "Job" && age >= self.job_time {
                pod["status"] = json!({"phase": "Succeeded", "containerStatuses": [{"name": container, "ready": false,
                    "restartCount": 0, "image": "x", "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "startedAt": now(), "finishedAt": now()}}}]});
                self.put(key, pod);
            }
        }
    }
}

/// A stable hash of a pod template (which pods belong to which version of a Deployment).
fn md5ish(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

impl Fake {
    /// Starts the API server on a free port, with its kubelet.
    pub async fn start() -> Fake {
        let inner = Arc::new(Mutex::new(Inner {
            stop_time: Duration::from_millis(100),
            job_time: Duration::from_millis(150),
            ..Inner::default()
        }));
        let (changed, _) = tokio::sync::watch::channel(0);
        let changed = Arc::new(changed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(handle).with_state((inner.clone(), changed.clone(), Duration::ZERO));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let slow_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slow_url = format!("http://{}", slow_listener.local_addr().unwrap());
        let slow = axum::Router::new().fallback(handle).with_state((
            inner.clone(),
            changed.clone(),
            Duration::from_millis(30),
        ));
        let slow_server = tokio::spawn(async move {
            axum::serve(slow_listener, slow).await.unwrap();
        });
        let kubelet = {
            let (inner, changed) = (inner.clone(), changed.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let rv = {
                        let mut state = inner.lock().unwrap();
                        state.tick();
                        state.rv
                    };
                    changed.send_if_modified(|old| std::mem::replace(old, rv) != rv);
                }
            })
        };
        Fake { inner, changed, url, slow_url, tasks: Arc::new(vec![server, slow_server, kubelet]) }
    }

    /// A kube client for it.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// A kube client whose applies and patches are each answered 30 ms late.
    pub fn slow_client(&self) -> kube::Client {
        let config = kube::Config::new(self.slow_url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// How long a deleted pod takes to stop (the grace period, if shorter, ends it).
    pub fn set_stop_time(&self, stop: Duration) {
        self.inner.lock().unwrap().stop_time = stop;
    }

    /// The Deployment `name`'s pods crash at start from now on.
    pub fn fail(&self, deployment: &str) {
        self.inner.lock().unwrap().failing.push(deployment.into());
    }

    /// From now on (or no longer), every patch — an apply too — is answered 500, and nothing
    /// changes.
    pub fn refuse_changes(&self, refuse: bool) {
        self.inner.lock().unwrap().refusing = refuse;
    }

    /// From now on (`None`: no longer), patches of the object whose path ends with `suffix`
    /// (`/deployments/worker`) are answered 500, and it does not change.
    pub fn refuse_changes_to(&self, suffix: Option<&str>) {
        self.inner.lock().unwrap().refusing_only = suffix.map(str::to_owned);
    }

    /// From now on (or no longer), every patch is answered 503, and nothing changes.
    pub fn overload(&self, overloaded: bool) {
        self.inner.lock().unwrap().overloaded = overloaded;
    }

    /// From now on, every patch (a scale to 0, a suspended schedule) takes effect at once but
    /// is answered `latency` later (a busy API server, a slow admission webhook).
    pub fn set_patch_latency(&self, latency: Duration) {
        self.inner.lock().unwrap().patch_latency = latency;
    }

    /// Changes an object behind the runtime's back (a hand edit, a request that never came).
    pub fn patch(&self, plural: &str, namespace: &str, name: &str, patch: &Value) {
        let mut state = self.inner.lock().unwrap();
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        let mut object = state.objects[&key].clone();
        merge_patch(&mut object, patch);
        state.put(key, object);
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.inner.lock().unwrap().objects.get(&(plural.into(), namespace.into(), name.into())).cloned()
    }

    /// Every object of a kind (in every namespace).
    pub fn all(&self, plural: &str) -> Vec<Value> {
        self.inner.lock().unwrap().objects.iter().filter(|(k, _)| k.0 == plural).map(|(_, v)| v.clone()).collect()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Adds an output line to every running pod of a component.
    pub fn print(&self, component: &str, line: &str) {
        let mut state = self.inner.lock().unwrap();
        for key in state.running_pods(component) {
            let uid = state.objects[&key]["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
            state.logs.entry(uid).or_default().push((Utc::now(), line.to_owned()));
        }
    }

    /// Makes the running container of a component's pods exit with `code` and start again.
    pub fn crash(&self, component: &str, code: i32) {
        let mut state = self.inner.lock().unwrap();
        let keys = state.running_pods(component);
        for key in keys {
            let mut pod = state.objects[&key].clone();
            let status = &mut pod["status"]["containerStatuses"][0];
            status["restartCount"] = json!(status["restartCount"].as_i64().unwrap_or(0) + 1);
            status["lastState"] = json!({"terminated": {"exitCode": code, "startedAt": now(), "finishedAt": now()}});
            status["state"] = json!({"running": {"startedAt": now()}});
            state.put(key, pod);
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if Arc::strong_count(&self.tasks) == 1 {
            for task in self.tasks.iter() {
                task.abort();
            }
        }
    }
}

type Shared = (Arc<Mutex<Inner>>, Arc<tokio::sync::watch::Sender<u64>>, Duration);

async fn handle(
    State((inner, changed, delay)): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::PATCH && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.lock().unwrap().requests.push(Seen {
        method: method.to_string(),
        uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        content_type: content_type.clone(),
        body: parsed.clone(),
    });
    let refused_here = inner.lock().unwrap().refusing_only.as_ref().is_some_and(|p| uri.path().ends_with(p.as_str()));
    if method == Method::PATCH && (inner.lock().unwrap().refusing || refused_here) {
        return status(500, "InternalError", "etcdserver: request timed out");
    }
    if method == Method::PATCH && inner.lock().unwrap().overloaded {
        return status(503, "ServiceUnavailable", "the API server is overloaded");
    }
    let Some(r) = route(uri.path()) else { return status(404, "NotFound", "no such path") };
    let q = query(&uri);
    let response = {
        let mut state = inner.lock().unwrap();
        match (&method, &r.name, r.sub.as_deref()) {
            (&Method::GET, Some(name), Some("log")) => {
                let ns = r.namespace.clone().unwrap_or_default();
                let Some(pod) = state.objects.get(&("pods".into(), ns, name.clone())) else {
                    return status(404, "NotFound", "no such pod");
                };
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                let uid_for_lines = uid.clone();
                let since = q.get("sinceTime").and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                let stamps = q.get("timestamps").is_some_and(|t| t == "true");
                let format = move |at: &DateTime<Utc>, line: &str| {
                    let stamp = if stamps {
                        format!("{} ", at.to_rfc3339_opts(SecondsFormat::Nanos, true))
                    } else {
                        String::new()
                    };
                    format!("{stamp}{line}\n")
                };
                let lines = move |state: &Inner, from: usize| -> Vec<String> {
                    state
                        .logs
                        .get(&uid_for_lines)
                        .into_iter()
                        .flatten()
                        .skip(from)
                        .filter(|(at, _)| since.is_none_or(|s| *at >= s))
                        .map(|(at, line)| format(at, line))
                        .collect()
                };
                let sent = state.logs.get(&uid).map_or(0, Vec::len);
                let text: String = lines(&state, 0).concat();
                if q.get("follow").is_none_or(|f| f != "true") {
                    return ([("content-type", "text/plain")], text).into_response();
                }
                // Followed: what is there, then each new line while the pod lives — for at most
                // 2 s (an API server drops long streams too; the runtime follows again).
                let inner = inner.clone();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(text)) });
                let rest = futures_util::stream::unfold(sent, move |mut sent| {
                    let (inner, uid, lines) = (inner.clone(), uid.clone(), lines.clone());
                    async move {
                        loop {
                            if tokio::time::Instant::now() >= deadline {
                                return None;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let state = inner.lock().unwrap();
                            if !state.objects.values().any(|o| o["metadata"]["uid"] == uid.as_str()) {
                                return None;
                            }
                            let total = state.logs.get(&uid).map_or(0, Vec::len);
                            if total > sent {
                                let more = lines(&state, sent).concat();
                                sent = total;
                                return Some((Ok(Bytes::from(more)), sent));
                            }
                        }
                    }
                });
                use futures_util::StreamExt;
                return Response::builder()
                    .header("content-type", "text/plain")
                    .body(Body::from_stream(first.chain(rest)))
                    .unwrap();
            }
            (&Method::GET, None, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => None,
            (&Method::GET, None, None) => {
                let selector = q.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(k, _)| k.0 == r.plural && r.namespace.as_ref().is_none_or(|ns| &k.1 == ns))
                    .filter(|(_, o)| selects(&selector, &o["metadata"]["labels"]))
                    .map(|(_, o)| o.clone())
                    .collect();
                Some(ok(&json!({"kind": format!("{}List", kind_of(&r.plural)), "apiVersion": "v1",
                    "metadata": {"resourceVersion": state.rv.to_string()}, "items": items})))
            }
            (&Method::GET, Some(name), None) => {
                let key = (r.plural.clone(), r.namespace.clone().unwrap_or_default(), name.clone());
                Some(match state.objects.get(&key) {
                    Some(o) => ok(o),
                    None => status(404, "NotFound", &format!("{} \"{name}\" not found", r.plural)),
                })
            }
            (&Method::PATCH, Some(name), None) => {
                let ns = r.namespace.clone().unwrap_or_default();
                let key = (r.plural.clone(), ns.clone(), name.clone());
                if !ns.is_empty() {
                    match state.objects.get(&("namespaces".into(), String::new(), ns.clone())) {
                        None => return status(404, "NotFound", &format!("namespaces \"{ns}\" not found")),
                        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                            return status(403, "Forbidden", &format!("namespace {ns} is being terminated"))
                        }
                        _ => {}
                    }
                }
                let existing = state.objects.get(&key).cloned();
                if r.plural == "jobs" && content_type.starts_with("application/apply-patch") {
                    if let Some(job) = &existing {
                        if job["spec"]["template"] != parsed["spec"]["template"] {
                            return status(422, "Invalid", "Job.batch is invalid: spec.template: field is immutable");
                        }
                    }
                }
                let object = if content_type.starts_with("application/apply-patch") {
                    if !q.contains_key("fieldManager") {
                        return status(400, "BadRequest", "fieldManager is required for apply requests");
                    }
                    let mut merged = existing.unwrap_or(Value::Null);
                    merge_patch(&mut merged, &parsed);
                    merged
                } else if content_type.starts_with("application/merge-patch") {
                    let Some(mut merged) = existing else {
                        return status(404, "NotFound", &format!("{} \"{name}\" not found", r.plural));
                    };
                    merge_patch(&mut merged, &parsed);
                    merged
                } else {
                    return status(415, "UnsupportedMediaType", "unsupported patch type");
                };
                state.put(key.clone(), object);
                Some(ok(&state.objects[&key]))
            }
            (&Method::DELETE, Some(name), None) => {
                let key = (r.plural.clone(), r.namespace.clone().unwrap_or_default(), name.clone());
                let Some(object) = state.objects.get(&key).cloned() else {
                    return status(404, "NotFound", &format!("{} \"{name}\" not found", r.plural));
                };
                if r.plural == "namespaces" && !object["metadata"]["deletionTimestamp"].is_null() {
                    return status(409, "Conflict", &format!("namespace {name} is being terminated"));
                }
                match r.plural.as_str() {
                    "namespaces" | "pods" => state.deleting(&key),
                    _ => state.remove(&key),
                }
                Some(ok(&object))
            }
            _ => Some(status(405, "MethodNotAllowed", "not supported by the fake")),
        }
    };
    let rv = inner.lock().unwrap().rv;
    changed.send_if_modified(|old| std::mem::replace(old, rv) != rv);
    if let Some(response) = response {
        let latency = inner.lock().unwrap().patch_latency;
        if method == Method::PATCH && !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        return response;
    }
    // A watch: the changes after `resourceVersion`, as they happen, until its timeout.
    let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(30u64).min(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let receiver = changed.subscribe();
    let state = (from, receiver, VecDeque::<String>::new());
    let stream = futures_util::stream::unfold(state, move |(mut cursor, mut receiver, mut pending)| {
        let (inner, selector, plural, namespace) =
            (inner.clone(), selector.clone(), r.plural.clone(), r.namespace.clone());
        async move {
            loop {
                if let Some(line) = pending.pop_front() {
                    return Some((Ok::<_, std::io::Error>(Bytes::from(line)), (cursor, receiver, pending)));
                }
                {
                    let state = inner.lock().unwrap();
                    let from = cursor;
                    for (rv, key, kind, object) in state.history.iter().filter(|h| h.0 > from) {
                        cursor = *rv;
                        if key.0 == plural
                            && namespace.as_ref().is_none_or(|ns| &key.1 == ns)
                            && selects(&selector, &object["metadata"]["labels"])
                        {
                            pending.push_back(format!("{}\n", json!({"type": kind, "object": object})));
                        }
                    }
                }
                if !pending.is_empty() {
                    continue;
                }
                match tokio::time::timeout_at(deadline, receiver.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return None,
                }
            }
        }
    });
    Response::builder().header("content-type", "application/json").body(Body::from_stream(stream)).unwrap()
}
