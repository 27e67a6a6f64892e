//! Live streams: what changed in a project or on a stage ([`Watch`]), and a component's output
//! as it is printed ([`LogFollow`]). Both check the caller's permission when they open, again
//! every [`RECHECK`] and at once whenever access changes anywhere (a sign-out, a revoked
//! token, a disabled user, a member removed), with the caller's credential, administrator
//! role and project roles read afresh; they end when the server stops and after [`MAX_LIFE`]
//! (a client opens a new stream, signing in again). One user holds at most
//! [`STREAMS_PER_USER`] streams, a server half the connections it accepts.

use super::{Acting, Services};
pub use crate::live::STREAMS_PER_USER;
use crate::live::{Heard, StreamsFull, Subscription};
use crate::StageKey;
use pergola_domain::access::Action;
use pergola_domain::logs::LogQuery;
use pergola_domain::runtime::LogLine;
use pergola_domain::{Error, ErrorKind};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often an open stream checks that its caller may still read what it shows.
pub const RECHECK: Duration = Duration::from_secs(10);
/// How long one stream lasts at most; the dashboard and the CLI then open a new one.
pub const MAX_LIFE: Duration = Duration::from_secs(15 * 60);
/// How often new output lines are looked for.
const LOG_TICK: Duration = Duration::from_millis(250);
/// Changes closer together than this reach a page as one note.
const GATHER: Duration = Duration::from_millis(100);
/// A followed component silent for this long gets an empty batch (the route sends an empty
/// line: a client gone away is noticed).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// A stream tells of new metrics at most this often: with several servers, each samples and
/// says so every 10 s (each note makes the page read its charts again), and one server's
/// samples, every 10 s, all pass.
pub const METRICS_AT_MOST_EVERY: Duration = Duration::from_secs(9);
/// A followed component gone for this long (its stage suspended, deleted, redeployed
/// without it) ends the stream.
const GONE_FOR: Duration = Duration::from_secs(5);

/// What a [`Watch`] tells its page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The stream is open: read what is shown now (also after a reconnection).
    Ready,
    /// Something shown changed (or may have: a missed change): read it again.
    Changed,
    /// New output lines on the stage.
    Output,
    /// New metrics (every 10 s while something runs).
    Metrics,
}

/// The changes of one project, or of one stage of it, as they happen.
pub struct Watch {
    acting: Acting,
    project: String,
    stage: Option<String>,
    changes: Subscription,
    opened: Instant,
    checked: Instant,
    /// Access changed: check the caller before anything else.
    recheck: bool,
    ready: bool,
    /// The stage's components and the last output line seen of each.
    lines: HashMap<String, u64>,
    /// When to look for new output next: a page is told of new lines at most every
    /// [`LOG_TICK`], however fast they are printed.
    output_tick: tokio::time::Interval,
    /// When the last note of new metrics was given, and whether new ones wait for their turn.
    metrics_told: Option<Instant>,
    metrics_due: bool,
}

impl Acting {
    /// Opens the live stream of a project (every stage of it) or, with `stage`, of one stage
    /// (its status, components, events and output).
    pub async fn watch(&self, project_id: &str, stage_id: Option<&str>) -> Result<Watch, Error> {
        match stage_id {
            Some(stage_id) => drop(self.allow_stage(Action::ReadStage, project_id, stage_id).await?),
            None => drop(self.get_project(project_id).await?),
        }
        let now = Instant::now();
        let mut watch = Watch {
            acting: self.clone(),
            project: project_id.to_owned(),
            stage: stage_id.map(str::to_owned),
            changes: self.subscribe()?,
            opened: now,
            checked: now,
            recheck: false,
            ready: false,
            lines: HashMap::new(),
            output_tick: {
                let mut tick = tokio::time::interval_at(now + LOG_TICK, LOG_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            },
            metrics_told: None,
            metrics_due: false,
        };
        watch.new_output();
        Ok(watch)
    }

    /// The last output lines of a component of a live stage that `query` asks for.
    pub async fn logs_matching(
        &self,
        project_id: &str,
        stage_id: &str,
        component: &str,
        query: &LogQuery,
    ) -> Result<Vec<LogLine>, Error> {
        Ok(self.read_logs(project_id, stage_id, component, query).await?.0)
    }

    /// The lines `query` asks for, and the number of the last line kept after `query.after`
    /// (whether or not the query's `since` and `tail` left it out).
    async fn read_logs(
        &self,
        project_id: &str,
        stage_id: &str,
        component: &str,
        query: &LogQuery,
    ) -> Result<(Vec<LogLine>, Option<u64>), Error> {
        self.get_stage(project_id, stage_id).await?;
        let key = StageKey::new(project_id, stage_id);
        let lines = self.runtime.logs_after(&key, component, query.after).unwrap_or_default();
        let last = lines.last().map(|l| l.seq);
        Ok((query.select(lines), last))
    }

    /// Follows a component's output: the lines `query` asks for, then each new line as it is
    /// printed (also by the component's next run or release).
    pub async fn follow_logs(
        &self,
        project_id: &str,
        stage_id: &str,
        component: &str,
        query: &LogQuery,
    ) -> Result<(Vec<LogLine>, LogFollow), Error> {
        let (first, last) = self.read_logs(project_id, stage_id, component, query).await?;
        let key = StageKey::new(project_id, stage_id);
        // Lines printed before the query's own are not sent later either.
        let after = last.unwrap_or(query.after);
        let now = Instant::now();
        let follow = LogFollow {
            acting: self.clone(),
            key,
            component: component.to_owned(),
            after,
            opened: now,
            checked: now,
            gone_since: None,
            closed: self.subscribe()?,
        };
        Ok((first, follow))
    }

    /// A subscription to the changes, counted among the caller's open streams and the server's.
    fn subscribe(&self) -> Result<Subscription, Error> {
        let message = match self.changes.subscribe_as(&self.caller().user_id) {
            Ok(subscription) => return Ok(subscription),
            Err(StreamsFull::User) => format!(
                "You have {STREAMS_PER_USER} live streams open, the most one user may have: close a tab or a \
                 `pergola logs --follow` and try again."
            ),
            Err(StreamsFull::Server) => {
                "The server has as many live streams open as it holds: try again in a few seconds.".to_owned()
            }
        };
        Err(Error { retry_after: Some(RECHECK.as_secs()), ..Error::new(ErrorKind::TooManyRequests, message) })
    }

    /// Whether the caller — still signed in by the same session or token, with their
    /// administrator role and project roles read afresh — may still read the stage (or
    /// project).
    /// A failure to read (the database away) is not a refusal: the stream goes on and asks
    /// again at its next check, rather than every page reconnecting at once.
    async fn still_allowed(&self, project_id: &str, stage_id: Option<&str>) -> bool {
        let caller = match self.services().refreshed(self.caller()).await {
            Ok(Some(caller)) => caller,
            Ok(None) => return false,
            Err(_) => return true,
        };
        let fresh = self.services().acting(caller);
        let allowed = match stage_id {
            Some(stage_id) => fresh.allow_stage(Action::ReadStage, project_id, stage_id).await.map(drop),
            None => fresh.get_project(project_id).await.map(drop),
        };
        match allowed {
            Ok(()) => true,
            Err(e) => e.kind == ErrorKind::Internal,
        }
    }
}

impl Watch {
    /// The next note for the page; `None`: the stream ends (the server stops, the caller may
    /// no longer read it, the stream is old — a client opens a new one).
    pub async fn next(&mut self) -> Option<Note> {
        if !self.ready {
            self.ready = true;
            return Some(Note::Ready);
        }
        loop {
            if self.opened.elapsed() >= MAX_LIFE || self.changes.is_closed() {
                return None;
            }
            if self.recheck || self.checked.elapsed() >= RECHECK {
                if !self.acting.still_allowed(&self.project, self.stage.as_deref()).await {
                    return None;
                }
                self.checked = Instant::now();
                self.recheck = false;
            }
            tokio::select! {
                heard = self.changes.next() => match heard {
                    // A burst (a sample of every running stage, a suspend's steps) is one note:
                    // a change of state if any of it was one, else new metrics.
                    Heard::Change(change) if self.concerns(&change) => {
                        if !change.metrics | self.gather().await {
                            // The page reads everything again, its charts too.
                            self.metrics_due = false;
                            return Some(Note::Changed);
                        }
                        self.metrics_due = true;
                        if self.metrics_told.is_none_or(|t| t.elapsed() >= METRICS_AT_MOST_EVERY) {
                            return Some(self.tell_metrics());
                        }
                    }
                    Heard::Change(_) => {}
                    Heard::Access => self.recheck = true,
                    Heard::Missed => {
                        self.recheck = true;
                        self.metrics_due = false;
                        return Some(Note::Changed);
                    }
                    Heard::Closed => return None,
                },
                _ = self.output_tick.tick(), if self.stage.is_some() => {
                    if self.new_output() {
                        return Some(Note::Output);
                    }
                }
                // New metrics waited for their turn.
                _ = tokio::time::sleep_until(self.metrics_told.map_or(self.opened, |t| t + METRICS_AT_MOST_EVERY)),
                    if self.metrics_due => return Some(self.tell_metrics()),
                // Time for the next check, or the end of the stream's life.
                _ = tokio::time::sleep_until((self.checked + RECHECK).min(self.opened + MAX_LIFE)) => {}
            }
        }
    }

    fn tell_metrics(&mut self) -> Note {
        self.metrics_due = false;
        self.metrics_told = Some(Instant::now());
        Note::Metrics
    }

    fn concerns(&self, change: &crate::live::Change) -> bool {
        change.reaches(&self.project, self.stage.as_deref())
    }

    /// Lets the changes that come right after one arrive, so that a burst is one note; true
    /// when one of them was a change of state this stream shows (or some were missed).
    async fn gather(&mut self) -> bool {
        let until = Instant::now() + GATHER;
        let mut changed = false;
        while let Ok(heard) = tokio::time::timeout_at(until, self.changes.next()).await {
            match heard {
                Heard::Closed => break,
                Heard::Missed => {
                    changed = true;
                    self.recheck = true;
                }
                Heard::Access => self.recheck = true,
                Heard::Change(c) => changed |= !c.metrics && self.concerns(&c),
            }
        }
        changed
    }

    /// Whether a component of the watched stage printed since last asked.
    fn new_output(&mut self) -> bool {
        let Some(stage) = &self.stage else { return false };
        let key = StageKey::new(&self.project, stage);
        let runtime = &self.acting.runtime;
        let mut printed = false;
        let mut seen = HashMap::new();
        for c in runtime.status(&key) {
            let after = self.lines.get(&c.name).copied().unwrap_or(0);
            let last = runtime.last_line(&key, &c.name).unwrap_or(after);
            // Numbers that went back began again: new lines too.
            printed |= last != after && self.lines.contains_key(&c.name);
            seen.insert(c.name, last);
        }
        self.lines = seen;
        printed
    }
}

/// A component's output, line by line as it is printed (see [`Acting::follow_logs`]).
pub struct LogFollow {
    acting: Acting,
    key: StageKey,
    component: String,
    after: u64,
    opened: Instant,
    checked: Instant,
    gone_since: Option<Instant>,
    /// Tells when the server stops and when access changes.
    closed: Subscription,
}

impl LogFollow {
    /// The next lines printed — none after [`HEARTBEAT`] of silence; `None`: the stream ends
    /// (the component has been gone for a few seconds, the caller may no longer read it, the
    /// server stops, the stream is old).
    pub async fn next(&mut self) -> Option<Vec<LogLine>> {
        let silent_since = Instant::now();
        loop {
            if silent_since.elapsed() >= HEARTBEAT {
                return Some(Vec::new());
            }
            if self.opened.elapsed() >= MAX_LIFE || self.closed.is_closed() {
                return None;
            }
            if self.closed.access_changed() || self.checked.elapsed() >= RECHECK {
                if !self.acting.still_allowed(&self.key.project, Some(&self.key.stage)).await {
                    return None;
                }
                self.checked = Instant::now();
            }
            // The numbers began again (a restarted server, a clock set back): every line kept
            // now is new to the follower.
            let runtime = &self.acting.runtime;
            if runtime
                .last_line(&self.key, &self.component)
                .is_some_and(|newest| runtime.numbers_began_again(newest, self.after))
            {
                self.after = 0;
            }
            match self.acting.runtime.logs_after(&self.key, &self.component, self.after) {
                Some(lines) if !lines.is_empty() => {
                    self.gone_since = None;
                    self.after = lines.last().map_or(self.after, |l| l.seq);
                    return Some(lines);
                }
                Some(_) => self.gone_since = None,
                None => {
                    let since = *self.gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= GONE_FOR {
                        return None;
                    }
                }
            }
            tokio::time::sleep(LOG_TICK).await;
        }
    }

    /// The number of the last line sent (a client that reconnects asks for the lines after it).
    pub fn last_line(&self) -> u64 {
        self.after
    }
}

impl Services {
    /// Ends every live stream (the server is stopping).
    pub fn close_live_streams(&self) {
        self.changes.close();
    }
}
