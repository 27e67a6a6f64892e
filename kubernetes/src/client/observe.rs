//! What the runtime knows of the cluster: every pod Pergola manages, as a watcher keeps it
//! (list, then watch, relisting after a lost watch), read into [`PodView`]s; the events a
//! change of a pod means for the stage's timeline (started, crashed, restarted, completed,
//! healthy, unhealthy); and each component's output, followed from its pods' logs.

use crate::render::{
    COMPONENT_LABEL, INSTALL_LABEL, KIND_LABEL, MANAGED_BY, PROJECT_LABEL, RELEASE_LABEL, STAGE_LABEL,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use pergola_core::StageKey;
use pergola_domain::runtime::LogLine;
use pergola_domain::{ComponentKind, EventKind};
use std::collections::{HashMap, VecDeque};

/// How many output lines are kept per component (as on one machine).
pub const LOG_LINES: usize = 500;
/// How long one output line may be (bytes); the rest of a longer line is dropped.
pub const MAX_LINE: usize = 16 * 1024;

/// What the runtime reads of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub key: StageKey,
    pub component: String,
    pub kind: Option<ComponentKind>,
    pub release: i64,
    pub phase: String,
    pub created: Option<DateTime<Utc>>,
    /// Once it was asked to stop (its containers got SIGTERM): when its grace period ends and
    /// the kubelet kills what still runs — the API server's `deletionTimestamp` is the request's
    /// time plus the grace period, not the request's time.
    pub deleting: Option<DateTime<Utc>>,
    /// Its grace period, once it was asked to stop (`deletionGracePeriodSeconds`).
    pub deletion_grace: Option<u64>,
    /// Whether its container, ended now, was killed with SIGKILL (exit code 137, not for want
    /// of memory); `None` while it has not ended, or when how is not known (a container that
    /// never ran is reported `ContainerStatusUnknown`, 137).
    pub sigkilled: Option<bool>,
    /// Why the cluster itself stopped it (its `DisruptionTarget` condition: preempted,
    /// evicted, its node drained …), if it did.
    pub disrupted: Option<String>,
    /// When its container started, while it runs.
    pub running_since: Option<DateTime<Utc>>,
    pub ready: bool,
    pub restarts: u32,
    /// The exit code of the container's last run (now or before its last restart).
    pub exit_code: Option<i32>,
    /// Waiting to be started again after a crash (`CrashLoopBackOff`, or an error).
    pub crashing: bool,
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// A pod Pergola manages, read; `None` for one without the stage's labels, of another installation
/// than `install` (`None`: the one installation), or outside its stage's namespace.
pub fn view(pod: &Pod, install: Option<&str>) -> Option<PodView> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref()?;
    if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1)
        || labels.get(INSTALL_LABEL).map(String::as_str) != install
    {
        return None;
    }
    let key = StageKey::new(labels.get(PROJECT_LABEL)?, labels.get(STAGE_LABEL)?);
    // Only a pod in its stage's own namespace speaks for the stage: labels can be written by
    // anyone who may make a pod somewhere.
    if meta.namespace.as_deref() != Some(crate::render::namespace_of(install, &key.project, &key.stage).as_str()) {
        return None;
    }
    let component = labels.get(COMPONENT_LABEL)?.clone();
    let kind = labels.get(KIND_LABEL).and_then(|k| {
        [ComponentKind::Service, ComponentKind::Worker, ComponentKind::Job, ComponentKind::Cron]
            .into_iter()
            .find(|c| c.as_str() == k)
    });
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == component).or(all.first()));
    let state = container.and_then(|c| c.state.as_ref());
    let running_since = state.and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.as_ref()).and_then(time);
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let last = container.and_then(|c| c.last_state.as_ref()).and_then(|s| s.terminated.as_ref());
    let waiting = state.and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone());
    Some(PodView {
        uid: meta.uid.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        key,
        component,
        kind,
        release: labels.get(RELEASE_LABEL).and_then(|r| r.parse().ok()).unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        created: meta.creation_timestamp.as_ref().and_then(time),
        deleting: meta.deletion_timestamp.as_ref().and_then(time),
        deletion_grace: meta.deletion_grace_period_seconds.and_then(|g| u64::try_from(g).ok()),
        sigkilled: terminated.and_then(|t| match t.reason.as_deref() {
            Some("ContainerStatusUnknown") => None,
            Some("OOMKilled") => Some(false),
            _ => Some(t.exit_code == 137),
        }),
        disrupted: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|all| all.iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True"))
            .map(|c| c.reason.clone().unwrap_or_else(|| "disrupted".into())),
        running_since,
        ready: container.is_some_and(|c| c.ready),
        restarts: container.map_or(0, |c| c.restart_count.max(0) as u32),
        exit_code: terminated.or(last).map(|t| t.exit_code),
        crashing: last.is_some()
            && running_since.is_none()
            && waiting.is_some_and(|r| r == "CrashLoopBackOff" || r.ends_with("Error")),
    })
}

/// What a change of a pod (`before` → `after`) means for the timeline, in order.
pub fn events(before: Option<&PodView>, after: &PodView) -> Vec<(EventKind, String)> {
    let mut out = Vec::new();
    let old_restarts = before.map_or(0, |b| b.restarts);
    let was_running = before.is_some_and(|b| b.running_since.is_some());
    let code = |c: Option<i32>| c.map_or_else(|| "an unknown code".to_owned(), |c| format!("code {c}"));
    if after.restarts > old_restarts {
        out.push((EventKind::Crashed, format!("exited with {}", code(after.exit_code))));
        if after.running_since.is_some() {
            out.push((EventKind::Restarted, format!("restarted ({} restarts)", after.restarts)));
        }
    } else if after.running_since.is_some() && !was_running {
        out.push((EventKind::Started, format!("started (release {}, pod {})", after.release, after.name)));
    }
    let old_phase = before.map_or("Pending", |b| b.phase.as_str());
    // A pod asked to stop ends Failed or Succeeded before it goes (the kubelet since
    // Kubernetes 1.27): that is the stop — which the stop's own event tells — not a crash;
    // unless the cluster stopped it itself (preempted, evicted), which the timeline says.
    if after.phase != old_phase && after.deleting.is_some() && ended(&after.phase) {
        if let Some(why) = &after.disrupted {
            out.push((EventKind::Killed, format!("stopped by the cluster ({why})")));
        }
    }
    if after.phase != old_phase && after.deleting.is_none() {
        match after.phase.as_str() {
            "Succeeded" => out.push((EventKind::Completed, "completed (exit code 0)".into())),
            "Failed" => out.push((EventKind::Crashed, format!("failed: exited with {}", code(after.exit_code)))),
            _ => {}
        }
    }
    if after.kind == Some(ComponentKind::Service) && after.deleting.is_none() && after.running_since.is_some() {
        let was_ready = before.is_some_and(|b| b.ready);
        if after.ready && !was_ready {
            out.push((EventKind::Healthy, "ready: its health check passes".into()));
        } else if !after.ready && was_ready {
            out.push((EventKind::Unhealthy, "not ready: its health check fails".into()));
        }
    }
    out
}

impl PodView {
    /// When its grace period ends, seen `before` as it was: the kubelet's last delete (grace
    /// 0) moves the deletion time back to itself, so the end is then the one seen before.
    pub fn grace_ends(&self, before: &PodView) -> Option<DateTime<Utc>> {
        if self.deletion_grace == Some(0) {
            before.deleting
        } else {
            self.deleting
        }
    }
}

/// Whether a pod's phase says its containers have ended for good.
pub fn ended(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

/// The kept output of one component, numbered by the times the kubelet gave its lines
/// ([`pergola_domain::runtime::line_number`]): every server reading the pod numbers them alike.
#[derive(Debug, Default)]
pub struct LogBook {
    lines: VecDeque<LogLine>,
    last: u64,
}

impl LogBook {
    pub fn push(&mut self, at: DateTime<Utc>, line: String) {
        self.last = pergola_domain::runtime::line_number(self.last, at);
        self.lines.push_back(LogLine { at, stream: "stdout".into(), line, seq: self.last });
        while self.lines.len() > LOG_LINES {
            self.lines.pop_front();
        }
    }

    /// What a page is sent of the lines after `after`, and whether that is all of them (only
    /// those are copied).
    pub fn shown_after(&self, after: u64) -> (Vec<LogLine>, bool) {
        pergola_domain::logs::shown_after(&self.lines, after)
    }

    /// The number of the newest line kept (0: none yet).
    pub fn last_line(&self) -> u64 {
        self.lines.back().map_or(0, |l| l.seq)
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.iter().cloned().collect()
    }

    /// The lines numbered after `after`, oldest first (only those are copied).
    pub fn after(&self, after: u64) -> Vec<LogLine> {
        let newer = self.lines.iter().rev().take_while(|l| l.seq > after).count();
        self.lines.iter().skip(self.lines.len() - newer).cloned().collect()
    }
}

/// Every pod the watcher knows, and the components' output.
#[derive(Debug, Default)]
pub struct Pods {
    pub by_uid: HashMap<String, PodView>,
    /// Pods seen since the watcher last (re)started listing.
    pub listed: Option<Vec<String>>,
    /// Pods whose output is being followed.
    pub following: std::collections::HashSet<String>,
    pub logs: HashMap<(StageKey, String), LogBook>,
    /// Each component's last pod to go: when the watcher saw it go, and when its grace period
    /// ended if it had been asked to stop (a stop's report: stopped in time, or killed).
    pub ended: HashMap<(StageKey, String), Ended>,
}

/// How a component's last pod asked to stop ended.
#[derive(Clone, Debug)]
pub struct Ended {
    pub uid: String,
    /// When the watcher saw it end (its container ended, or the pod went).
    pub at: DateTime<Utc>,
    /// When its grace period ended (its `deletionTimestamp`), if it was asked to stop and the
    /// watcher saw that.
    pub kill_at: Option<DateTime<Utc>>,
    /// Whether its container was killed with SIGKILL, if its end was seen.
    pub sigkilled: Option<bool>,
}

impl Ended {
    /// Whether it stopped within its grace period: by its container's exit (killed with
    /// SIGKILL or not), else by when it ended against its `deletionTimestamp` (the API
    /// server's clock, whole seconds: the watcher sees the end a little late, so this leans to
    /// "killed"); `None` when neither is known.
    pub fn in_time(&self) -> Option<bool> {
        match self.sigkilled {
            Some(killed) => Some(!killed),
            None => self.kill_at.map(|kill_at| self.at <= kill_at),
        }
    }
}

impl Pods {
    /// The pods of a stage.
    pub fn of<'a>(&'a self, key: &'a StageKey) -> impl Iterator<Item = &'a PodView> + 'a {
        self.by_uid.values().filter(move |p| &p.key == key)
    }
}

/// One line of a pod's log read with `timestamps=true`: its time and its text (without the
/// line break; invalid UTF-8 replaced).
pub fn parse_log_line(raw: &[u8]) -> (Option<DateTime<Utc>>, String) {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    match text.split_once(' ') {
        Some((stamp, rest)) => match DateTime::parse_from_rfc3339(stamp) {
            Ok(at) => (Some(at.with_timezone(&Utc)), rest.to_owned()),
            Err(_) => (None, text.into_owned()),
        },
        None => match DateTime::parse_from_rfc3339(&text) {
            Ok(at) => (Some(at.with_timezone(&Utc)), String::new()),
            Err(_) => (None, text.into_owned()),
        },
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes (the rest of a longer one is read and
/// dropped): `None` at the end of the stream. A component that never ends a line cannot make
/// the server hold more than that.
pub async fn read_line<R: futures_util::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    use futures_util::AsyncBufReadExt;
    let mut line = Vec::new();
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(line));
        }
        any = true;
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        reader.consume_unpin(take);
        if done {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_their_time_and_keep_garbage_as_text() {
        let (at, text) = parse_log_line(b"2026-11-30T10:00:00.123456789Z hello world\n");
        assert_eq!(at.unwrap().timestamp_subsec_millis(), 123);
        assert_eq!(text, "hello world");
        let (at, text) = parse_log_line(b"\xff\xfe not a time\r\n");
        assert!(at.is_none());
        assert_eq!(text, "\u{fffd}\u{fffd} not a time");
    }

    #[test]
    fn two_servers_number_a_pods_lines_alike() {
        // The kubelet's times, three lines in one microsecond among them.
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T10:00:00.000001Z").unwrap().with_timezone(&Utc);
        let times = [0, 5, 5, 5, 9, 20].map(|us| t0 + chrono::Duration::microseconds(us));
        let (mut first, mut later) = (LogBook::default(), LogBook::default());
        for (n, at) in times.iter().enumerate() {
            first.push(*at, format!("line {n}"));
            // The other server starts following after the first line.
            if n >= 1 {
                later.push(*at, format!("line {n}"));
            }
        }
        let numbers = |b: &LogBook| b.lines().iter().map(|l| (l.line.clone(), l.seq)).collect::<Vec<_>>();
        assert_eq!(numbers(&later)[..], numbers(&first)[1..]);
        assert!(first.lines().windows(2).all(|w| w[0].seq < w[1].seq));
        // A follower that read line 3 from the first server gets lines 4 and 5 from the other.
        let seen = first.lines()[3].seq;
        assert_eq!(later.after(seen).iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), ["line 4", "line 5"]);
        assert_eq!(later.last_line(), first.last_line());
        // What a page is sent after a line: the rest, and whether that is all of it.
        assert_eq!(first.shown_after(seen), (first.lines()[4..].to_vec(), true));
        assert_eq!(first.shown_after(first.last_line()), (Vec::new(), true));
        let mut long = LogBook::default();
        for n in 0..10 {
            long.push(t0 + chrono::Duration::seconds(n), "x".repeat(16 * 1024));
        }
        let (sent, all) = long.shown_after(0);
        assert_eq!((sent.len(), all), (4, false));
        assert_eq!(sent.last().map(|l| l.seq), Some(long.last_line()));
    }

    fn pod(phase: &str, deleting: bool, terminated: Option<(i32, &str)>) -> PodView {
        PodView {
            uid: "u1".into(),
            name: "web-1".into(),
            namespace: "ns".into(),
            key: StageKey::new("shop", "qa"),
            component: "web".into(),
            kind: Some(ComponentKind::Service),
            release: 1,
            phase: phase.into(),
            created: None,
            deleting: deleting.then(Utc::now),
            deletion_grace: deleting.then_some(30),
            sigkilled: terminated.map(|(code, _)| code == 137),
            disrupted: None,
            running_since: None,
            ready: false,
            restarts: 0,
            exit_code: terminated.map(|(code, _)| code),
            crashing: false,
        }
    }

    #[test]
    fn a_pod_that_ends_because_it_was_asked_to_stop_did_not_crash() {
        let running = PodView { running_since: Some(Utc::now()), ..pod("Running", false, None) };
        let crashed = events(Some(&running), &pod("Failed", false, Some((1, "Error"))));
        assert!(matches!(crashed.as_slice(), [(EventKind::Crashed, m)] if m.contains("code 1")), "{crashed:?}");
        let stopping = PodView { running_since: Some(Utc::now()), ..pod("Running", true, None) };
        for ended in [pod("Failed", true, Some((143, "Error"))), pod("Succeeded", true, Some((0, "Completed")))] {
            assert_eq!(events(Some(&stopping), &ended), vec![], "{ended:?}");
        }
        // Unless the cluster stopped it itself.
        let preempted =
            PodView { disrupted: Some("PreemptionByScheduler".into()), ..pod("Failed", true, Some((137, "Error"))) };
        let said = events(Some(&stopping), &preempted);
        assert!(matches!(said.as_slice(), [(EventKind::Killed, m)] if m.contains("PreemptionByScheduler")), "{said:?}");
    }

    #[test]
    fn a_stop_is_judged_by_the_containers_exit_else_by_the_end_of_its_grace_period() {
        let now = Utc::now();
        let ended = |sigkilled, kill_at| Ended { uid: "u".into(), at: now, kill_at, sigkilled };
        assert_eq!(ended(Some(true), Some(now + chrono::Duration::seconds(5))).in_time(), Some(false), "SIGKILL");
        assert_eq!(ended(Some(false), Some(now - chrono::Duration::seconds(5))).in_time(), Some(true), "its exit");
        assert_eq!(ended(None, Some(now + chrono::Duration::seconds(1))).in_time(), Some(true));
        assert_eq!(ended(None, Some(now - chrono::Duration::seconds(1))).in_time(), Some(false));
        assert_eq!(ended(None, None).in_time(), None);
        // As read from the pod: SIGKILL at the end of the grace period is 137 "Error"; out of
        // memory is not the kubelet's kill; a container that never ran (pulling its image,
        // its build still downloading) is reported 137 ContainerStatusUnknown: not known.
        let read = |code: i32, reason: &str, condition: Option<&str>| {
            let mut labels = serde_json::Map::new();
            for (k, v) in [MANAGED_BY, (PROJECT_LABEL, "shop"), (STAGE_LABEL, "qa"), (COMPONENT_LABEL, "web")] {
                labels.insert(k.into(), v.into());
            }
            let conditions: Vec<serde_json::Value> = condition
                .map(|r| serde_json::json!({"type": "DisruptionTarget", "status": "True", "reason": r}))
                .into_iter()
                .collect();
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-1", "uid": "u1", "labels": labels,
                    "namespace": crate::render::namespace_of(None, "shop", "qa"),
                    "deletionTimestamp": "2026-12-01T00:00:30Z", "deletionGracePeriodSeconds": 30},
                "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [{"name": "web",
                    "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                    "state": {"terminated": {"exitCode": code, "reason": reason}}}]},
            }))
            .unwrap();
            view(&pod, None).unwrap()
        };
        assert_eq!(read(137, "Error", None).sigkilled, Some(true));
        assert_eq!(read(143, "Error", None).sigkilled, Some(false));
        assert_eq!(read(137, "OOMKilled", None).sigkilled, Some(false));
        assert_eq!(read(137, "ContainerStatusUnknown", None).sigkilled, None);
        let evicted = read(137, "Error", Some("EvictionByEvictionAPI"));
        assert_eq!((evicted.disrupted.as_deref(), evicted.deletion_grace), (Some("EvictionByEvictionAPI"), Some(30)));
        assert_eq!(read(143, "Error", None).disrupted, None);
    }

    #[tokio::test]
    async fn a_line_without_end_is_cut_not_held_whole() {
        let mut data = vec![b'x'; 5 * MAX_LINE];
        data.extend_from_slice(b"\nnext\nlast");
        let mut reader = futures_util::io::Cursor::new(data);
        assert_eq!(read_line(&mut reader).await.unwrap().unwrap().len(), MAX_LINE);
        assert_eq!(read_line(&mut reader).await.unwrap().unwrap(), b"next\n");
        assert_eq!(read_line(&mut reader).await.unwrap().unwrap(), b"last");
        assert!(read_line(&mut reader).await.unwrap().is_none());
    }
}
