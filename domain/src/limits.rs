//! Resource limits per stage type — the seed: "Based on the Stage type Pergola might apply
//! different rules when it comes to prioritizing platform resources and ensuring availability".
//!
//! Every component process of a stage (with everything it starts) gets the limits of its
//! stage's type: PROD first, DEV last. Administrators adjust them on the admin page; a change
//! applies to components started from then on.

use crate::{Error, StageType};
use serde::{Deserialize, Serialize};

/// The limits of one component (a service, worker, job or cron run, with every process it
/// starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceLimits {
    /// Memory, in MiB.
    pub memory_mib: u32,
    /// Processes (and threads) at once.
    pub processes: u32,
    /// Open files (and sockets) per process.
    pub open_files: u32,
    /// CPU priority as a nice value: 0 (the server's own) to 19 (only what is left).
    pub cpu_nice: u8,
    /// How much rather the kernel ends this component when the machine runs out of memory:
    /// 0 (as any process) to 1000 (first).
    pub oom_score_adj: u16,
}

/// One of the limits, for forms, messages and the admin page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Memory,
    Processes,
    OpenFiles,
    CpuNice,
    OomScoreAdj,
}

impl Limit {
    pub const ALL: [Limit; 5] = [Limit::Memory, Limit::Processes, Limit::OpenFiles, Limit::CpuNice, Limit::OomScoreAdj];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Memory => "memory_mib",
            Limit::Processes => "processes",
            Limit::OpenFiles => "open_files",
            Limit::CpuNice => "cpu_nice",
            Limit::OomScoreAdj => "oom_score_adj",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Limit::Memory => "Memory (MiB)",
            Limit::Processes => "Processes",
            Limit::OpenFiles => "Open files",
            Limit::CpuNice => "CPU nice (0–19)",
            Limit::OomScoreAdj => "Out-of-memory preference (0–1000)",
        }
    }

    /// The values an administrator may set.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Limit::Memory => (MIN_MEMORY_MIB, MAX_MEMORY_MIB),
            Limit::Processes => (MIN_PROCESSES, MAX_PROCESSES),
            Limit::OpenFiles => (MIN_OPEN_FILES, MAX_OPEN_FILES),
            Limit::CpuNice => (0, 19),
            Limit::OomScoreAdj => (0, 1000),
        }
    }

    /// The form field of this limit for stage type `t` (`limits_dev_memory_mib`, …).
    pub fn field(self, t: StageType) -> String {
        format!("limits_{}_{}", t.as_str(), self.as_str())
    }
}

/// The smallest memory limit: less and no interpreter starts.
pub const MIN_MEMORY_MIB: u32 = 16;
/// 1 TiB.
pub const MAX_MEMORY_MIB: u32 = 1 << 20;
/// The sandbox itself takes two processes.
pub const MIN_PROCESSES: u32 = 8;
pub const MAX_PROCESSES: u32 = 1 << 20;
/// Less and a dynamic loader, a runtime and three standard streams do not fit.
pub const MIN_OPEN_FILES: u32 = 32;
/// Linux's default `nr_open`.
pub const MAX_OPEN_FILES: u32 = 1 << 20;

impl Default for ResourceLimits {
    /// PROD's defaults.
    fn default() -> Self {
        LimitsPolicy::default().prod
    }
}

impl ResourceLimits {
    pub fn get(&self, limit: Limit) -> u32 {
        match limit {
            Limit::Memory => self.memory_mib,
            Limit::Processes => self.processes,
            Limit::OpenFiles => self.open_files,
            Limit::CpuNice => u32::from(self.cpu_nice),
            Limit::OomScoreAdj => u32::from(self.oom_score_adj),
        }
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mib) * 1024 * 1024
    }

    fn set(&mut self, limit: Limit, value: u32) {
        match limit {
            Limit::Memory => self.memory_mib = value,
            Limit::Processes => self.processes = value,
            Limit::OpenFiles => self.open_files = value,
            Limit::CpuNice => self.cpu_nice = value as u8,
            Limit::OomScoreAdj => self.oom_score_adj = value as u16,
        }
    }
}

/// The limits of each stage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsPolicy {
    pub dev: ResourceLimits,
    pub qa: ResourceLimits,
    pub prod: ResourceLimits,
}

impl Default for LimitsPolicy {
    /// PROD first: the most memory, processes and files, the server's own CPU priority and
    /// no out-of-memory preference; QA next; DEV last — lowest CPU priority, and the first a
    /// machine out of memory ends.
    fn default() -> Self {
        Self {
            dev: ResourceLimits {
                memory_mib: 1024,
                processes: 256,
                open_files: 1024,
                cpu_nice: 10,
                oom_score_adj: 800,
            },
            qa: ResourceLimits { memory_mib: 1024, processes: 256, open_files: 2048, cpu_nice: 5, oom_score_adj: 500 },
            prod: ResourceLimits { memory_mib: 2048, processes: 512, open_files: 4096, cpu_nice: 0, oom_score_adj: 0 },
        }
    }
}

impl LimitsPolicy {
    pub fn of(&self, t: StageType) -> ResourceLimits {
        match t {
            StageType::Dev => self.dev,
            StageType::Qa => self.qa,
            StageType::Prod => self.prod,
        }
    }

    pub fn of_mut(&mut self, t: StageType) -> &mut ResourceLimits {
        match t {
            StageType::Dev => &mut self.dev,
            StageType::Qa => &mut self.qa,
            StageType::Prod => &mut self.prod,
        }
    }

    /// Parses an administrator's input (`value(t, limit)` is the text typed for limit `limit`
    /// of type `t`), or explains the first wrong value (its field: [`Limit::field`]).
    pub fn parse(value: impl Fn(StageType, Limit) -> String) -> Result<Self, Error> {
        let mut policy = Self::default();
        for t in StageType::ALL {
            for limit in Limit::ALL {
                let parsed = parse_limit(t, limit, &value(t, limit))?;
                policy.of_mut(t).set(limit, parsed);
            }
        }
        Ok(policy)
    }

    /// Checks a policy built elsewhere (API, store) against the same bounds.
    pub fn validate(&self) -> Result<(), Error> {
        Self::parse(|t, limit| self.of(t).get(limit).to_string()).map(|_| ())
    }

    /// One line per type, for the audit trail.
    pub fn describe(&self) -> String {
        StageType::ALL
            .map(|t| {
                let l = self.of(t);
                format!(
                    "{} {} MiB, {} processes, {} open files, nice {}, OOM preference {}",
                    t.label(),
                    l.memory_mib,
                    l.processes,
                    l.open_files,
                    l.cpu_nice,
                    l.oom_score_adj
                )
            })
            .join("; ")
    }
}

fn parse_limit(t: StageType, limit: Limit, input: &str) -> Result<u32, Error> {
    let (min, max) = limit.bounds();
    match input.trim().parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(Error::validation(
            &limit.field(t),
            format!("{} for {} must be a whole number from {min} to {max}.", limit.label(), t.label()),
        )),
    }
}

/// How this server isolates components and enforces limits, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Isolation {
    /// `bubblewrap`, `kubernetes` (each component in a pod of its stage's namespace), `off`
    /// (PERGOLA_SANDBOX=off: components run as the server's user) or `unavailable` (no stage
    /// can start).
    pub sandbox: String,
    /// The sandbox in a sentence.
    pub sandbox_detail: String,
    /// `cgroup v2`, `cgroup v1`, `rlimits` — what enforces memory and process limits.
    pub limits: String,
    /// How each limit is enforced, in a sentence.
    pub limits_detail: String,
    /// `landlock` (what a component may listen on and connect to is restricted), `shared` (the
    /// machine's network, unrestricted) or `kubernetes` (a network policy per stage).
    pub network: String,
    /// What a component may do on the network, in a sentence.
    pub network_detail: String,
}

impl Isolation {
    /// Whether components run without the sandbox (the dashboard then shows a banner).
    pub fn unsandboxed(&self) -> bool {
        self.sandbox == "off" || self.sandbox == "unavailable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn defaults_put_prod_first_and_dev_last() {
        let p = LimitsPolicy::default();
        assert!(p.prod.memory_mib > p.dev.memory_mib);
        assert!(p.prod.cpu_nice < p.qa.cpu_nice && p.qa.cpu_nice < p.dev.cpu_nice);
        assert!(p.prod.oom_score_adj < p.qa.oom_score_adj && p.qa.oom_score_adj < p.dev.oom_score_adj);
        p.validate().unwrap();
    }

    #[test]
    fn parse_reads_every_field_and_names_the_wrong_one() {
        let p = LimitsPolicy::parse(|t, l| match (t, l) {
            (StageType::Dev, Limit::Memory) => " 64 ".into(),
            (t, l) => LimitsPolicy::default().of(t).get(l).to_string(),
        })
        .unwrap();
        assert_eq!(p.dev.memory_mib, 64);
        assert_eq!(p.prod, LimitsPolicy::default().prod);
        for bad in ["", "-1", "20", "19.5", "x", "99999999999"] {
            let e = LimitsPolicy::parse(|t, l| match (t, l) {
                (StageType::Qa, Limit::CpuNice) => bad.into(),
                (t, l) => LimitsPolicy::default().of(t).get(l).to_string(),
            })
            .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad:?}");
            assert_eq!(e.field.as_deref(), Some("limits_qa_cpu_nice"), "{bad:?}");
            assert_eq!(e.message, "CPU nice (0–19) for QA must be a whole number from 0 to 19.");
        }
    }

    #[test]
    fn validate_refuses_what_parse_refuses() {
        let mut p = LimitsPolicy::default();
        p.prod.processes = 2;
        assert_eq!(p.validate().unwrap_err().field.as_deref(), Some("limits_prod_processes"));
        let mut p = LimitsPolicy::default();
        p.dev.oom_score_adj = 1001;
        assert_eq!(p.validate().unwrap_err().field.as_deref(), Some("limits_dev_oom_score_adj"));
    }
}
