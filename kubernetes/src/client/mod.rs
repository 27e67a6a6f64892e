//! The Kubernetes runtime (`PERGOLA_RUNTIME=kubernetes`, cargo feature `client`): what the
//! services ask of a runtime, done by a cluster.
//!
//! - **start** renders the release ([`crate::render::objects`]) and server-side applies every
//!   object (forced, field manager `pergola`), then deletes what earlier releases of the stage
//!   left (their jobs, configuration, components the release no longer has). Applying is
//!   idempotent, so deploying and reconciling after a restart are the same call; each apply
//!   mints a fresh build-fetch token for the release's `fetch-rN` Secret.
//! - **stop** scales the stage's Deployments to 0 and suspends its CronJobs (a suspend: jobs
//!   already started run to completion), and with a halt suspends its Jobs too; it then waits,
//!   up to the grace period and a margin, for the pods to go, and reports a component whose
//!   pods outlived the grace period as killed (and one still there after the margin as left).
//!   A request the API server did not take ends the stop at once, `refused`: the services ask
//!   again.
//! - **forget** (purge) deletes the stage's namespace, with everything in it.
//! - **status**, **logs** and the **events** come from one watcher of every pod Pergola
//!   manages (label `app.kubernetes.io/managed-by=pergola`) and from following each running
//!   pod's log; nothing is asked of the API server when a page is shown.
//! - The share-link proxy reaches a service at its `Service` (`NAME.NAMESPACE.svc:80`).

mod observe;
mod requests;

pub use observe::{events, view, PodView, LOG_LINES, MAX_LINE};
pub use requests::{resource, FIELD_MANAGER, RELEASE_KINDS};

use crate::render::{self, namespace_of, Cluster, Stage, INSTALL_LABEL, MANAGED_BY};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use observe::{Ended, Pods};
use pergola_core::{
    BuildMinter, EventSink, Runtime, RuntimeError, StageKey, StageSpec, StopMode, StopReport, StopWait,
};
use pergola_domain::runtime::{ComponentState, ComponentStatus, Health, LogLine};
use pergola_domain::{ComponentKind, ComponentSpec, Isolation, StageEvent};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a stop waits beyond the grace period for the pods to be gone.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);
/// How long the requests of a start (the applies) or of a stop's ask may take together: kube's
/// client retries an API server answering 503, 504 or 429 for minutes, and the stage's turn is
/// held meanwhile. A start then fails, saying so on the stage's timeline (what it applied so
/// far stays; the release is applied whole again by the next deploy, resume, restore or a
/// server's start); a stop is asked again by the services.
pub const ASK_WITHIN: Duration = Duration::from_secs(20);
/// How often a stop looks whether the stage's pods are gone.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How often the running releases' build-fetch tokens are minted again (each works for 15
/// minutes: a pod started later — rescheduled, scaled up — still downloads its build).
pub const FETCH_TOKEN_REFRESH: Duration = Duration::from_secs(5 * 60);
/// How long a log follower waits before following a pod's log again after it ended (doubled
/// each time nothing new came, up to [`FOLLOW_AT_MOST_EVERY`]).
const FOLLOW_AGAIN: Duration = Duration::from_millis(500);
const FOLLOW_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// Runs stages on a Kubernetes cluster. Cheap to clone (one state, shared).
#[derive(Clone)]
pub struct KubernetesRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    cluster: Cluster,
    minter: Mutex<Option<BuildMinter>>,
    sink: Mutex<Option<EventSink>>,
    /// What was last applied per stage (the services' desired state, as this server saw it).
    stages: Mutex<HashMap<StageKey, Applied>>,
    pods: Mutex<Pods>,
    listed_once: AtomicBool,
    /// The namespaces of purged stages (their pods are still going): not watched.
    forgotten: Mutex<std::collections::HashSet<String>>,
    /// The stages this server asked to stop and is waiting for (how many stops of each).
    stopping: Mutex<HashMap<StageKey, usize>>,
    /// [`ASK_WITHIN`], or what a test set.
    ask_within: Mutex<Duration>,
}

/// One stop of a stage counted in [`Inner::stopping`] until it is dropped (waited for, or not).
struct Stopping {
    inner: Arc<Inner>,
    key: StageKey,
}

impl Stopping {
    fn new(inner: &Arc<Inner>, key: &StageKey) -> Self {
        *lock(&inner.stopping).entry(key.clone()).or_default() += 1;
        Self { inner: inner.clone(), key: key.clone() }
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        let mut stopping = lock(&self.inner.stopping);
        if let Some(n) = stopping.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                stopping.remove(&self.key);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Applied {
    /// The release applied (its configuration too: the fetch token's Secret is applied again
    /// from it).
    spec: StageSpec,
    running: bool,
    /// Components scaled to 0 by a stop the API server then refused part-way: the stage still
    /// runs, they do not.
    scaled_down: std::collections::BTreeSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KubernetesRuntime {
    /// A runtime applying to the cluster `client` speaks to; `cluster` says where builds run
    /// and how pods reach the control plane. Call [`KubernetesRuntime::watch`] to learn what
    /// runs.
    pub fn new(client: Client, cluster: Cluster) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                cluster,
                minter: Mutex::new(None),
                sink: Mutex::new(None),
                stages: Mutex::new(HashMap::new()),
                pods: Mutex::new(Pods::default()),
                listed_once: AtomicBool::new(false),
                forgotten: Mutex::new(Default::default()),
                stopping: Mutex::new(HashMap::new()),
                ask_within: Mutex::new(ASK_WITHIN),
            }),
        }
    }

    /// The same runtime, giving a start's or a stop's requests `within` instead of
    /// [`ASK_WITHIN`] (tests).
    pub fn asking_within(self, within: Duration) -> Self {
        *lock(&self.inner.ask_within) = within;
        self
    }

    /// A client for the cluster this server runs in, or the one `KUBECONFIG` names.
    pub async fn connect(cluster: Cluster) -> Result<Self, String> {
        let client = Client::try_default().await.map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
        Ok(Self::new(client, cluster))
    }

    /// Starts watching the pods Pergola manages (until the task is aborted): the status,
    /// output and events of every stage come from here. Every [`FETCH_TOKEN_REFRESH`], the
    /// running releases get fresh build-fetch tokens.
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        let runtime = self.clone();
        tokio::spawn(async move {
            let refresh = async {
                loop {
                    tokio::time::sleep(FETCH_TOKEN_REFRESH).await;
                    runtime.refresh_fetch_tokens().await;
                }
            };
            tokio::join!(inner.watch(), refresh);
        })
    }

    /// Puts a fresh token into the build-fetch token Secret of every running release this
    /// server applied; returns how many were renewed. A Secret that is gone is not made again:
    /// another server deployed a newer release since (its objects replaced this one's), or the
    /// stage was purged — this server then forgets what it applied there.
    pub async fn refresh_fetch_tokens(&self) -> usize {
        let running: Vec<Applied> = lock(&self.inner.stages).values().filter(|a| a.running).cloned().collect();
        let mut renewed = 0;
        for applied in running {
            let spec = &applied.spec;
            let Ok(token) = self.inner.mint(&spec.key, spec.release) else { continue };
            let ns = self.inner.namespace(&spec.key);
            let patch = json!({"stringData": {"token": token}});
            let secret = render::fetch_secret(spec.release);
            match requests::merge_present(&self.inner.client, "Secret", &ns, &secret, &patch).await {
                Ok(true) => renewed += 1,
                Ok(false) => {
                    let mut stages = lock(&self.inner.stages);
                    if stages.get(&spec.key).is_some_and(|a| a.spec.release == spec.release) {
                        stages.remove(&spec.key);
                    }
                }
                Err(e) => tracing::warn!(
                    project = spec.key.project,
                    stage = spec.key.stage,
                    error = e,
                    "renewing a build-fetch token"
                ),
            }
        }
        renewed
    }

    /// Whether the watcher has listed the cluster's pods at least once.
    pub fn synced(&self) -> bool {
        self.inner.listed_once.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// A stage's namespace, of this installation.
    fn namespace(&self, key: &StageKey) -> String {
        namespace_of(self.cluster.install.as_deref(), &key.project, &key.stage)
    }

    /// `requests`, or an error once they took longer than [`ASK_WITHIN`].
    async fn within(&self, requests: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
        let within = *lock(&self.ask_within);
        tokio::time::timeout(within, requests)
            .await
            .unwrap_or_else(|_| Err(format!("the API server did not answer within {} s", within.as_secs_f32())))
    }

    fn send(&self, key: &StageKey, kind: pergola_domain::EventKind, component: &str, message: String) {
        if let Some(sink) = lock(&self.sink).as_ref() {
            sink.send(key.clone(), StageEvent::of_component(Utc::now(), kind, component, message));
        }
    }

    async fn watch(self: Arc<Self>) {
        // Only this installation's pods (another's, on the same cluster, carry another name).
        let selector = match &self.cluster.install {
            Some(name) => format!("{}={},{INSTALL_LABEL}={name}", MANAGED_BY.0, MANAGED_BY.1),
            None => format!("{}={},!{INSTALL_LABEL}", MANAGED_BY.0, MANAGED_BY.1),
        };
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher::watcher(pods, watcher::Config::default().labels(&selector)).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(pod)) => self.seen(&pod, true),
                // What the list finds is how things are, not something that happened now.
                Ok(Event::InitApply(pod)) => self.seen(&pod, false),
                Ok(Event::Delete(pod)) => {
                    if let Some(uid) = &pod.metadata.uid {
                        // The pod as it was last: its deletion time, how its container ended.
                        let last = observe::view(&pod, self.cluster.install.as_deref());
                        self.gone(uid, Some(last));
                    }
                }
                Ok(Event::Init) => lock(&self.pods).listed = Some(Vec::new()),
                Ok(Event::InitDone) => {
                    let listed = lock(&self.pods).listed.take().unwrap_or_default();
                    let known: Vec<String> = lock(&self.pods).by_uid.keys().cloned().collect();
                    // Gone while the watch was lost: when and how it ended is not known.
                    for uid in known.iter().filter(|uid| !listed.contains(uid)) {
                        self.gone(uid, None);
                    }
                    self.listed_once.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "watching the cluster's pods (trying again)"),
            }
        }
    }

    fn seen(self: &Arc<Self>, pod: &Pod, happened: bool) {
        let Some(after) = observe::view(pod, self.cluster.install.as_deref()) else { return };
        if lock(&self.forgotten).contains(&after.namespace) {
            return;
        }
        let (before, follow) = {
            let mut pods = lock(&self.pods);
            if let Some(listed) = pods.listed.as_mut() {
                listed.push(after.uid.clone());
            }
            let before = pods.by_uid.insert(after.uid.clone(), after.clone());
            let follow = after.running_since.is_some() && pods.following.insert(after.uid.clone());
            // A pod asked to stop whose container ended (Failed or Succeeded, kept a while
            // before it goes): it stopped now — in the same lock as `present` no longer
            // counting it.
            if after.deleting.is_some() && (after.sigkilled.is_some() || observe::ended(&after.phase)) {
                let slot = (after.key.clone(), after.component.clone());
                if pods.ended.get(&slot).is_none_or(|e| e.uid != after.uid) {
                    let kill_at = before.as_ref().map_or(after.deleting, |b| after.grace_ends(b).or(after.deleting));
                    let ended = Ended { uid: after.uid.clone(), at: Utc::now(), kill_at, sigkilled: after.sigkilled };
                    pods.ended.insert(slot, ended);
                }
            }
            (before, follow)
        };
        if happened {
            for (kind, message) in observe::events(before.as_ref(), &after) {
                self.send(&after.key, kind, &after.component, message);
            }
        }
        if follow {
            tokio::spawn(self.clone().follow(after));
        }
    }

    /// A pod is gone: `last`, as the deletion showed it (`None`: missed while the watch was
    /// lost — nothing known of how it ended).
    fn gone(&self, uid: &str, last: Option<Option<PodView>>) {
        let mut pods = lock(&self.pods);
        let Some(known) = pods.by_uid.remove(uid) else { return };
        let slot = (known.key.clone(), known.component.clone());
        if pods.ended.get(&slot).is_some_and(|e| e.uid == uid) {
            // Its end was seen already (its container ended before the pod went).
            return;
        }
        let ended = match last {
            Some(last) => {
                let kill_at = last.as_ref().map_or(known.deleting, |l| l.grace_ends(&known));
                let sigkilled = last.as_ref().map_or(known.sigkilled, |l| l.sigkilled);
                Ended { uid: uid.to_owned(), at: Utc::now(), kill_at, sigkilled }
            }
            None => Ended { uid: uid.to_owned(), at: Utc::now(), kill_at: None, sigkilled: None },
        };
        pods.ended.insert(slot, ended);
    }

    /// Follows a pod's log into its component's book until the pod is gone or has ended;
    /// a stream that ends early (the container restarted, the API server dropped it) is
    /// followed again from the last line's time, lines seen already skipped.
    async fn follow(self: Arc<Self>, pod: PodView) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let book = (pod.key.clone(), pod.component.clone());
        let mut last: Option<chrono::DateTime<Utc>> = None;
        let mut at_last: Vec<String> = Vec::new();
        let mut pause = FOLLOW_AGAIN;
        'follow: loop {
            let since =
                last.and_then(|t| k8s_openapi::jiff::Timestamp::from_nanosecond(t.timestamp_nanos_opt()?.into()).ok());
            let params = LogParams {
                container: Some(pod.component.clone()),
                follow: true,
                timestamps: true,
                since_time: since,
                ..LogParams::default()
            };
            let mut fresh = false;
            match api.log_stream(&pod.name, &params).await {
                Ok(mut reader) => {
                    while let Ok(Some(raw)) = observe::read_line(&mut reader).await {
                        let (at, text) = observe::parse_log_line(&raw);
                        let at = at.unwrap_or_else(Utc::now);
                        match last {
                            Some(l) if at < l => continue,
                            Some(l) if at == l && at_last.contains(&text) => continue,
                            Some(l) if at == l => at_last.push(text.clone()),
                            _ => {
                                last = Some(at);
                                at_last = vec![text.clone()];
                            }
                        }
                        let mut pods = lock(&self.pods);
                        if !pods.by_uid.contains_key(&pod.uid) {
                            break 'follow;
                        }
                        pods.logs.entry(book.clone()).or_default().push(at, text);
                        fresh = true;
                    }
                }
                Err(e) => tracing::debug!(pod = pod.name, error = %e, "following a pod's log"),
            }
            let still = lock(&self.pods).by_uid.get(&pod.uid).cloned();
            match still {
                Some(p) if !observe::ended(&p.phase) => {
                    // A container that keeps crashing ends its log at once: ask less and less
                    // often, and often again once it prints.
                    pause = if fresh { FOLLOW_AGAIN } else { (pause * 2).min(FOLLOW_AT_MOST_EVERY) };
                    tokio::time::sleep(pause).await;
                }
                _ => break,
            }
        }
        lock(&self.pods).following.remove(&pod.uid);
    }

    fn mint(&self, key: &StageKey, release: i64) -> Result<String, RuntimeError> {
        let minter = lock(&self.minter).clone();
        minter.and_then(|m| m(key, release)).ok_or_else(|| {
            RuntimeError::Cluster("no build-fetch token can be made: the server has no secret key".into())
        })
    }

    /// The components of a stage whose pods are still there (jobs and cron runs left out
    /// when `jobs` is false).
    /// Waits (up to `within`) until the stage's pods that were asked to stop are gone: none
    /// of its stops on this server is still waiting, and the watcher sees none of its pods
    /// terminating (another server's stop).
    async fn until_stopped(&self, key: &StageKey, within: Duration) {
        let started = tokio::time::Instant::now();
        loop {
            let stopping = lock(&self.stopping).contains_key(key);
            if !stopping && !lock(&self.pods).of(key).any(|p| p.deleting.is_some()) {
                return;
            }
            if started.elapsed() > within {
                tracing::warn!(project = key.project, stage = key.stage, "starting while pods are still stopping");
                return;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    fn present(&self, key: &StageKey, jobs: bool) -> Vec<String> {
        let pods = lock(&self.pods);
        let mut names: Vec<String> = pods
            .of(key)
            .filter(|p| jobs || !matches!(p.kind, Some(ComponentKind::Job | ComponentKind::Cron)))
            .filter(|p| !observe::ended(&p.phase))
            .map(|p| p.component.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether the component's last pod, ended since `since`, stopped within its grace period
    /// ([`Ended::in_time`]). `None` when that is not known (it went unasked, or the watcher
    /// missed its going).
    fn went_in_time(&self, key: &StageKey, component: &str, since: DateTime<Utc>) -> Option<bool> {
        let pods = lock(&self.pods);
        let ended = pods.ended.get(&(key.clone(), component.to_owned()))?;
        (ended.at >= since).then_some(())?;
        ended.in_time()
    }
}

/// A component's state as its newest pod shows it.
fn component_status(c: &ComponentSpec, pod: Option<&PodView>, running: bool) -> ComponentStatus {
    let now = Utc::now();
    let port = (c.kind == ComponentKind::Service).then(|| c.port.unwrap_or(render::DEFAULT_PORT));
    let mut status = ComponentStatus::new(&c.name, c.kind, port, ComponentState::Stopped);
    let Some(pod) = pod else {
        status.state = match (running, c.kind) {
            (true, ComponentKind::Cron) => ComponentState::Scheduled,
            (true, _) => ComponentState::Starting,
            (false, ComponentKind::Cron) => ComponentState::Stopped,
            (false, _) => ComponentState::Stopped,
        };
        return status;
    };
    status.restarts = pod.restarts;
    status.exit_code = pod.exit_code;
    status.started_at = pod.running_since;
    status.state = if pod.deleting.is_some() && observe::ended(&pod.phase) {
        // Asked to stop, and stopped: the pod is about to go (and, while the stage runs, one
        // to replace it about to come).
        if running {
            ComponentState::Starting
        } else {
            ComponentState::Stopped
        }
    } else if let Some(kill_at) = pod.deleting {
        // Whole seconds, rounded up: "killed in 0 s" only once the grace period is over (and
        // never more than the pod's own grace period, whatever the clocks say).
        let left_ms = (kill_at - now).num_milliseconds().max(0) as u64;
        status.kill_in_secs = Some(left_ms.div_ceil(1000).min(pod.deletion_grace.unwrap_or(u64::MAX)));
        ComponentState::Stopping
    } else {
        match pod.phase.as_str() {
            "Succeeded" => {
                status.exit_code = Some(0);
                ComponentState::Completed
            }
            "Failed" => ComponentState::Crashed,
            _ if pod.crashing => ComponentState::Crashed,
            _ if pod.running_since.is_some() => ComponentState::Running,
            _ => ComponentState::Starting,
        }
    };
    if status.state == ComponentState::Running {
        status.exit_code = None;
        status.uptime_secs = pod.running_since.map(|s| (now - s).num_seconds().max(0) as u64);
        if c.kind == ComponentKind::Service && c.health.is_some() {
            status.health = if pod.ready { Health::Healthy } else { Health::Unhealthy };
        }
    }
    status
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    async fn start(&self, spec: StageSpec, grace: Duration) -> Result<(), RuntimeError> {
        // What was asked to stop is gone first: a restore or resume right after a delete or a
        // suspend scales the same ReplicaSet up again, which would not wait for the pods still
        // terminating (two instances on one volume); nor does a Recreate of a new release
        // wait for pods another server's stop is ending.
        self.inner.until_stopped(&spec.key, grace + STOP_MARGIN).await;
        let token = self.inner.mint(&spec.key, spec.release)?;
        lock(&self.inner.forgotten).remove(&self.inner.namespace(&spec.key));
        let grace_secs = u32::try_from(grace.as_secs()).unwrap_or(u32::MAX);
        let install = self.inner.cluster.install.as_deref();
        let stage = Stage { spec: &spec, suspended: false, grace_secs, fetch_token: &token, install };
        let client = &self.inner.client;
        let applied = async {
            for object in render::objects(&stage, &self.inner.cluster) {
                requests::apply(client, &object).await?;
            }
            let ns = self.inner.namespace(&spec.key);
            requests::prune(client, &ns, spec.release).await
        };
        self.inner.within(applied).await.map_err(RuntimeError::Cluster)?;
        let applied = Applied { spec, running: true, scaled_down: Default::default() };
        lock(&self.inner.stages).insert(applied.spec.key.clone(), applied);
        Ok(())
    }

    async fn stop(&self, key: &StageKey, grace: Duration, mode: StopMode) -> StopReport {
        self.ask_stop(key, grace, mode).await.await
    }

    async fn ask_stop(&self, key: &StageKey, grace: Duration, mode: StopMode) -> StopWait {
        let client = &self.inner.client;
        let ns = self.inner.namespace(key);
        let was_running =
            lock(&self.inner.stages).get_mut(key).map(|applied| std::mem::replace(&mut applied.running, false));
        let halt = mode == StopMode::Halt;
        let before = self.inner.present(key, halt);
        let stopping = Stopping::new(&self.inner, key);
        // Each pod's grace period runs from the moment the API server took its Deployment's (or
        // Job's) change; a pod gone before the watcher saw it asked is timed from here.
        let started = tokio::time::Instant::now();
        let began = Utc::now();
        let mut scaled = Vec::new();
        let asked = async {
            for name in requests::names(client, "Deployment", &ns, "").await? {
                requests::merge(client, "Deployment", &ns, &name, &json!({"spec": {"replicas": 0}})).await?;
                scaled.push(name);
            }
            for name in requests::names(client, "CronJob", &ns, "").await? {
                requests::merge(client, "CronJob", &ns, &name, &json!({"spec": {"suspend": true}})).await?;
            }
            if halt {
                // Suspended, not deleted: its pods stop, and the record that it ran for this
                // release stays (a restore does not run it again).
                for name in requests::names(client, "Job", &ns, "").await? {
                    requests::merge(client, "Job", &ns, &name, &json!({"spec": {"suspend": true}})).await?;
                }
            }
            Ok::<(), String>(())
        };
        if let Err(e) = self.inner.within(asked).await {
            // Nothing to wait for: the services ask again. What runs still runs (its status,
            // its build-fetch token renewed).
            // What was scaled to 0 before the refusal shows as stopped meanwhile.
            if let (Some(running), Some(applied)) = (was_running, lock(&self.inner.stages).get_mut(key)) {
                applied.running = running;
                let release = applied.spec.release;
                let stopped: Vec<String> = (applied.spec.components.iter())
                    .filter(|c| scaled.contains(&render::component_object(c, release)))
                    .map(|c| c.name.clone())
                    .collect();
                applied.scaled_down.extend(stopped);
            }
            return StopWait::done(StopReport { refused: Some(e), ..StopReport::default() });
        }
        let asked_at = tokio::time::Instant::now();
        let (inner, key) = (self.inner.clone(), key.clone());
        StopWait::new(async move {
            let _stopping = stopping;
            // Each component stopped in time, or outlived its pods' grace period (the kubelet
            // killed them): gone by the `deletionTimestamp` the API server gave its pods, or
            // after it — timed from this stop's start when that is not known.
            let mut report = StopReport::default();
            let mut waiting = before;
            while !waiting.is_empty() {
                let present = inner.present(&key, halt);
                let in_time =
                    |c: &String| inner.went_in_time(&key, c, began).unwrap_or_else(|| started.elapsed() <= grace);
                let (gone, left): (Vec<String>, Vec<String>) = waiting.into_iter().partition(|c| !present.contains(c));
                let (terminated, killed): (Vec<String>, Vec<String>) = gone.into_iter().partition(in_time);
                report.terminated.extend(terminated);
                report.killed.extend(killed);
                waiting = left;
                if asked_at.elapsed() > grace + STOP_MARGIN {
                    tracing::warn!(project = key.project, stage = key.stage, components = ?waiting, "pods still there after the grace period");
                    report.left.extend(waiting);
                    break;
                }
                tokio::time::sleep(STOP_POLL).await;
            }
            report
        })
    }

    async fn forget(&self, key: &StageKey) -> Result<(), RuntimeError> {
        let ns = self.inner.namespace(key);
        requests::delete(&self.inner.client, "Namespace", None, &ns).await.map_err(RuntimeError::Cluster)?;
        lock(&self.inner.forgotten).insert(ns);
        lock(&self.inner.stages).remove(key);
        let mut pods = lock(&self.inner.pods);
        pods.logs.retain(|(k, _), _| k != key);
        pods.ended.retain(|(k, _), _| k != key);
        pods.by_uid.retain(|_, p| &p.key != key);
        Ok(())
    }

    fn status(&self, key: &StageKey) -> Vec<ComponentStatus> {
        let applied = lock(&self.inner.stages).get(key).cloned();
        let pods = lock(&self.inner.pods);
        // A pod of a newer release than this server applied: another server deployed it.
        let applied = applied.filter(|a| pods.of(key).all(|p| p.release <= a.spec.release));
        // The newest pod of each component (one that is stopping only when no other is there).
        let mut newest: BTreeMap<&str, &PodView> = BTreeMap::new();
        for pod in pods.of(key) {
            let better = match newest.get(pod.component.as_str()) {
                None => true,
                Some(old) => {
                    (pod.deleting.is_none(), pod.release, pod.created)
                        > (old.deleting.is_none(), old.release, old.created)
                }
            };
            if better {
                newest.insert(&pod.component, pod);
            }
        }
        match applied {
            Some(applied) => applied
                .spec
                .components
                .iter()
                .map(|c| {
                    let running = applied.running && !applied.scaled_down.contains(&c.name);
                    component_status(c, newest.get(c.name.as_str()).copied(), running)
                })
                .filter(|s| applied.running || s.state != ComponentState::Stopped)
                .collect(),
            // Not applied by this server (yet): what its pods show.
            None => newest
                .values()
                .map(|pod| {
                    let c = ComponentSpec {
                        name: pod.component.clone(),
                        kind: pod.kind.unwrap_or(ComponentKind::Worker),
                        command: String::new(),
                        image: None,
                        args: Vec::new(),
                        port: None,
                        schedule: None,
                        health: None,
                        storage: Vec::new(),
                        env: BTreeMap::new(),
                    };
                    component_status(&c, Some(pod), true)
                })
                .collect(),
        }
    }

    fn logs(&self, key: &StageKey, component: &str) -> Vec<LogLine> {
        let pods = lock(&self.inner.pods);
        pods.logs.get(&(key.clone(), component.to_owned())).map(|b| b.lines()).unwrap_or_default()
    }

    fn logs_after(&self, key: &StageKey, component: &str, after: u64) -> Option<Vec<LogLine>> {
        let runs = self.status(key).iter().any(|c| c.name == component);
        let pods = lock(&self.inner.pods);
        let book = pods.logs.get(&(key.clone(), component.to_owned()));
        runs.then(|| book.map(|b| b.after(after)).unwrap_or_default())
    }

    fn shown_after(&self, key: &StageKey, component: &str, after: u64) -> Option<(Vec<LogLine>, bool)> {
        let runs = self.status(key).iter().any(|c| c.name == component);
        let pods = lock(&self.inner.pods);
        let book = pods.logs.get(&(key.clone(), component.to_owned()));
        runs.then(|| book.map(|b| b.shown_after(after)).unwrap_or((Vec::new(), true)))
    }

    fn numbers_began_again(&self, _newest: u64, _after: u64) -> bool {
        false
    }

    fn last_line(&self, key: &StageKey, component: &str) -> Option<u64> {
        let runs = self.status(key).iter().any(|c| c.name == component);
        let pods = lock(&self.inner.pods);
        runs.then(|| pods.logs.get(&(key.clone(), component.to_owned())).map_or(0, observe::LogBook::last_line))
    }

    fn observe(&self, sink: EventSink) {
        *lock(&self.inner.sink) = Some(sink);
    }

    fn grant_builds(&self, minter: BuildMinter) {
        *lock(&self.inner.minter) = Some(minter);
    }

    fn upstream(&self, key: &StageKey, component: &ComponentStatus) -> Option<String> {
        (component.kind == ComponentKind::Service).then(|| {
            let name = render::dns_name(&[&component.name], render::MAX_NAME);
            format!("{name}.{}.svc:80", self.inner.namespace(key))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn isolation(&self) -> Option<Isolation> {
        Some(Isolation {
            sandbox: "kubernetes".into(),
            sandbox_detail: "Each component runs in a pod of its stage's own namespace: as nobody, without privilege \
                 escalation, capabilities or a service account token, on a read-only root file system with the \
                 runtime's default seccomp profile."
                .into(),
            limits: "kubernetes".into(),
            limits_detail: "Each component's memory limit and CPU request come from its stage type; a priority class \
                 per stage type schedules PROD first."
                .into(),
            network: "kubernetes".into(),
            network_detail: "A network policy per stage: only the stage's own pods and the control plane reach its \
                 pods."
                .into(),
        })
    }
}
