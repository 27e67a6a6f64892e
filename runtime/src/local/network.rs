//! The network guard. Components of the local runtime share the machine's network namespace (the
//! share-link proxy and the health probes reach services on `127.0.0.1:PORT`); with Landlock
//! (Linux 6.7 or newer) each component's processes are held to:
//!
//! - **listening** on their own `PORT` only (a service; a worker, job or cron run on none), and
//!   on ephemeral ports the system picks — not on the port of a stage that is suspended, nor on
//!   anything else;
//! - **connecting** over TCP to their own stage's services and to the ports of
//!   `PERGOLA_OUTBOUND_PORTS` (53, 80 and 443 by default) only: not to another stage's services,
//!   the server's own port, or the machine's databases and caches on theirs;
//! - (Linux 6.12 or newer) **signals and abstract Unix sockets** within the component: it
//!   cannot signal the server or another component, nor reach an abstract socket made outside.
//!
//! Landlock checks TCP only: sockets of other stream protocols that fall back to TCP (MPTCP,
//! SMC; SCTP too), TCP Fast Open's connection made by a send (`MSG_FASTOPEN`) and io_uring
//! (whose operations no filter sees) would go around it, so a seccomp filter refuses those
//! (`EPROTONOSUPPORT`, `EOPNOTSUPP`, `ENOSYS`: programs then use plain TCP and system calls),
//! and, on x86-64, the x32 system calls. It also kills a 32-bit (i386) process at its first
//! system call.
//!
//! The rules are made before the component's process is forked ([`NetworkGuard::rules`]: a
//! ruleset file descriptor and the filters, kept while the component may start) and put on the
//! child between fork and exec ([`Rules::restrict`]: a few system calls); bwrap and everything
//! the component starts inherit them, and nothing in the sandbox can lift them. UDP is not
//! covered (Landlock does not restrict it yet).

use landlock::{
    AccessNet, BitFlags, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError,
    Scope,
};
use pergola_core::config::OutboundPorts;
use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// What the kernel lets the guard do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkGuard {
    /// TCP listening and connecting restricted (Landlock ABI 4).
    tcp: bool,
    /// Signals and abstract Unix sockets scoped (Landlock ABI 6).
    scopes: bool,
}

/// A component's rules, ready to be put on its processes (cheap to clone: they are shared).
#[derive(Clone, Debug)]
pub(super) struct Rules {
    landlock: Arc<OwnedFd>,
    seccomp: Arc<Vec<BpfProgram>>,
}

impl NetworkGuard {
    /// What this kernel supports (tried by making a ruleset of each kind).
    pub fn detect() -> Self {
        let tcp = tcp_ruleset().and_then(|r| r.create()).is_ok();
        let scopes = tcp && tcp_ruleset().and_then(with_scopes).and_then(|r| r.create()).is_ok();
        NetworkGuard { tcp, scopes }
    }

    /// No guard at all (the kernel has no Landlock, or a test wants none).
    pub fn none() -> Self {
        NetworkGuard { tcp: false, scopes: false }
    }

    /// Whether listening and connecting are restricted here.
    pub fn restricts_tcp(&self) -> bool {
        self.tcp
    }

    /// `landlock` or `shared`, and a sentence saying what a component may do on the network.
    pub fn describe(&self, outbound: &OutboundPorts) -> (&'static str, String) {
        if !self.tcp {
            return (
                "shared",
                "Components share the machine's network without limits (this kernel has no Landlock network \
                 rules, Linux 6.7 or newer): any of them can listen on a free port and connect to whatever listens \
                 on the machine, 127.0.0.1 included — other stages' services and the machine's databases too."
                    .into(),
            );
        }
        let connect = match outbound {
            OutboundPorts::All => "connect to any port".to_owned(),
            OutboundPorts::Only(ports) if ports.is_empty() => {
                "connect only to its own stage's services (PERGOLA_OUTBOUND_PORTS=none)".to_owned()
            }
            ports => {
                format!("connect to its own stage's services and to {} (PERGOLA_OUTBOUND_PORTS)", ports.describe())
            }
        };
        let scopes = if self.scopes {
            " It cannot signal the server or another component, nor reach an abstract Unix socket made outside it."
        } else {
            " (Signals and abstract Unix sockets are not scoped: that needs Linux 6.12 or newer.)"
        };
        (
            "landlock",
            format!(
                "Each component listens only on its own PORT (and on ports the system picks) and may {connect} over \
                 TCP.{scopes} UDP is not restricted."
            ),
        )
    }

    /// The rules of a component listening on `own` (a service's PORT) in a stage whose services
    /// listen on `stage` (its own included), with `outbound` allowed; `None` where the kernel
    /// cannot enforce any.
    pub(super) fn rules(&self, outbound: &OutboundPorts, own: Option<u16>, stage: &[u16]) -> io::Result<Option<Rules>> {
        if !self.tcp {
            return Ok(None);
        }
        let made = (|| -> Result<Option<OwnedFd>, RulesetError> {
            let access = match outbound {
                OutboundPorts::All => BitFlags::from(AccessNet::BindTcp),
                OutboundPorts::Only(_) => AccessNet::BindTcp | AccessNet::ConnectTcp,
            };
            let ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement).handle_access(access)?;
            let ruleset = if self.scopes { with_scopes(ruleset)? } else { ruleset };
            let mut created = ruleset.create()?;
            // Port 0: a port the system picks (an explicit bind before connecting, say).
            for port in own.into_iter().chain([0]) {
                created = created.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
            }
            if let OutboundPorts::Only(ports) = outbound {
                let mut connect: Vec<u16> = ports.iter().chain(stage).copied().collect();
                connect.sort_unstable();
                connect.dedup();
                for port in connect {
                    created = created.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
                }
            }
            Ok(created.into())
        })();
        let seccomp = seccomp_filters().map_err(|e| io::Error::other(format!("the seccomp filter: {e}")))?;
        match made {
            Ok(Some(fd)) => Ok(Some(Rules { landlock: Arc::new(fd), seccomp: Arc::new(seccomp) })),
            Ok(None) => Err(io::Error::other("the network rules could not be made (Landlock refused the ruleset)")),
            Err(e) => Err(io::Error::other(format!("the network rules could not be made: {e}"))),
        }
    }
}

/// `IPPROTO_SMC` and `AF_SMC` (Linux 6.11), which the libc crate does not name.
const IPPROTO_SMC: u64 = 256;
const AF_SMC: u64 = 43;

/// The seccomp filters of [`Rules`]: the sockets that fall back to TCP without Landlock seeing
/// them, TCP Fast Open's sends, io_uring, and (x86-64) the x32 system calls.
fn seccomp_filters() -> Result<Vec<BpfProgram>, BackendError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let arg = |index: u8, op: SeccompCmpOp, value: u64| {
        SeccompRule::new(vec![SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)?])
    };
    let filter = |rules: Vec<(i64, Vec<SeccompRule>)>, errno: i32| -> Result<BpfProgram, BackendError> {
        let filter = SeccompFilter::new(
            rules.into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )?;
        filter.try_into()
    };
    let sockets = vec![(
        libc::SYS_socket,
        vec![
            arg(2, SeccompCmpOp::Eq, libc::IPPROTO_MPTCP as u64)?,
            arg(2, SeccompCmpOp::Eq, IPPROTO_SMC)?,
            arg(2, SeccompCmpOp::Eq, libc::IPPROTO_SCTP as u64)?,
            arg(0, SeccompCmpOp::Eq, AF_SMC)?,
        ],
    )];
    let fast_open = libc::MSG_FASTOPEN as u64;
    let sends = vec![
        (libc::SYS_sendto, vec![arg(3, SeccompCmpOp::MaskedEq(fast_open), fast_open)?]),
        (libc::SYS_sendmsg, vec![arg(2, SeccompCmpOp::MaskedEq(fast_open), fast_open)?]),
        (libc::SYS_sendmmsg, vec![arg(3, SeccompCmpOp::MaskedEq(fast_open), fast_open)?]),
    ];
    let io_uring = vec![(libc::SYS_io_uring_setup, vec![])];
    let mut filters = vec![
        filter(sockets, libc::EPROTONOSUPPORT)?,
        filter(sends, libc::EOPNOTSUPP)?,
        filter(io_uring, libc::ENOSYS)?,
    ];
    if arch == TargetArch::x86_64 {
        filters.push(no_x32());
    }
    Ok(filters)
}

/// A filter refusing (`ENOSYS`) every x32 system call: their numbers (with bit 30 set) are not
/// the ones the other filters look at.
fn no_x32() -> BpfProgram {
    const X32_BIT: u32 = 0x4000_0000;
    let statement = |code: u16, k: u32| sock_filter { code, jt: 0, jf: 0, k };
    let (ld, jge, ret) = (
        (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
        (libc::BPF_RET | libc::BPF_K) as u16,
    );
    vec![
        // seccomp_data.nr, at offset 0.
        statement(ld, 0),
        sock_filter { code: jge, jt: 0, jf: 1, k: X32_BIT },
        statement(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        statement(ret, libc::SECCOMP_RET_ALLOW),
    ]
}

/// A ruleset handling TCP listening and connecting, required (not downgraded on an older kernel).
fn tcp_ruleset() -> Result<Ruleset, RulesetError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
}

/// `ruleset`, also scoping signals and abstract Unix sockets (required).
fn with_scopes(ruleset: Ruleset) -> Result<Ruleset, RulesetError> {
    ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal)
}

impl Rules {
    /// Puts the rules on the calling process (the forked child, before exec): no new
    /// privileges (which Landlock and seccomp require; bwrap sets it too), the ruleset, then
    /// the filters.
    ///
    /// Only system calls, on a descriptor and programs made before the fork: async-signal-safe.
    pub(super) fn restrict(&self) -> io::Result<()> {
        // SAFETY: prctl and landlock_restrict_self are system calls taking plain integers (the
        // ruleset's descriptor, open until the exec closes it); they touch no memory.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, self.landlock.as_raw_fd(), 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for program in self.seccomp.iter() {
            // prctl and seccomp on the program's memory, which the kernel copies; the error is
            // made from errno without allocating.
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Seccomp(e) | seccompiler::Error::Prctl(e) => e,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_says_what_a_component_may_do_here() {
        let none = NetworkGuard::none();
        assert_eq!(none.describe(&OutboundPorts::default()).0, "shared");
        assert!(none.describe(&OutboundPorts::default()).1.contains("127.0.0.1 included"));
        assert!(none.rules(&OutboundPorts::default(), Some(8080), &[8080]).unwrap().is_none());
        let full = NetworkGuard { tcp: true, scopes: true };
        let (mode, text) = full.describe(&OutboundPorts::default());
        assert_eq!(mode, "landlock");
        assert!(
            text.contains("ports 53, 80 and 443 (PERGOLA_OUTBOUND_PORTS)") && text.contains("cannot signal"),
            "{text}"
        );
        assert!(full.describe(&OutboundPorts::All).1.contains("connect to any port"));
        let older = NetworkGuard { tcp: true, scopes: false };
        assert!(older.describe(&OutboundPorts::default()).1.contains("Linux 6.12"));
    }

    #[test]
    fn the_seccomp_filters_are_made_for_this_machine() {
        let filters = seccomp_filters().unwrap();
        assert!(filters.len() >= 3 && filters.iter().all(|f| !f.is_empty()));
    }

    #[test]
    fn rules_are_made_where_the_kernel_has_landlock() {
        let guard = NetworkGuard::detect();
        let rules = guard.rules(&OutboundPorts::default(), Some(8080), &[8080, 8081]).unwrap();
        assert_eq!(rules.is_some(), guard.restricts_tcp());
        let rules = guard.rules(&OutboundPorts::All, None, &[]).unwrap();
        assert_eq!(rules.is_some(), guard.restricts_tcp());
    }
}
