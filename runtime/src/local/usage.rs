//! What components use, read from `/proc`: the CPU time and resident memory of each
//! component's whole process tree (a sandboxed component's processes are the descendants of
//! its `bwrap`), in one pass over the machine's processes however many components run.

use std::collections::HashMap;

/// One process: its parent, CPU time (its own and its waited-for children's, in clock ticks)
/// and resident pages.
struct Proc {
    ppid: u32,
    ticks: u64,
    rss_pages: u64,
}

/// Every process of the machine, by PID, with its children.
pub(super) struct ProcTable {
    procs: HashMap<u32, Proc>,
    children: HashMap<u32, Vec<u32>>,
    tick_secs: f64,
    page_bytes: u64,
}

impl ProcTable {
    pub(super) fn read() -> Self {
        let mut procs = HashMap::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(p) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parse_stat(&s))
                {
                    procs.insert(pid, p);
                }
            }
        }
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, p) in &procs {
            children.entry(p.ppid).or_default().push(*pid);
        }
        // SAFETY: sysconf only reads configuration values.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        ProcTable {
            procs,
            children,
            tick_secs: if ticks > 0 { 1.0 / ticks as f64 } else { 0.01 },
            page_bytes: if page > 0 { page as u64 } else { 4096 },
        }
    }

    /// CPU seconds and resident bytes of `root` and all its descendants (`None`: no such
    /// process any more).
    pub(super) fn tree(&self, root: u32) -> Option<(f64, u64)> {
        self.procs.get(&root)?;
        let (mut ticks, mut pages) = (0u64, 0u64);
        let mut todo = vec![root];
        let mut seen = 0usize;
        while let Some(pid) = todo.pop() {
            seen += 1;
            if seen > self.procs.len() {
                break; // a cycle cannot happen in /proc, but a table read mid-change is no proof
            }
            if let Some(p) = self.procs.get(&pid) {
                ticks += p.ticks;
                pages += p.rss_pages;
            }
            if let Some(kids) = self.children.get(&pid) {
                todo.extend(kids.iter().copied().filter(|k| *k != pid));
            }
        }
        Some((ticks as f64 * self.tick_secs, pages * self.page_bytes))
    }
}

/// `/proc/<pid>/stat`: after "pid (comm)" (comm may hold spaces and ')'), field 4 is the
/// parent, 14–17 utime, stime, cutime, cstime, 24 the resident pages.
fn parse_stat(stat: &str) -> Option<Proc> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    let ticks = (14..=17).map(field).sum::<Option<i64>>()?.max(0) as u64;
    Some(Proc { ppid: field(4)?.max(0) as u32, ticks, rss_pages: field(24)?.max(0) as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_hostile_name_is_read_from_the_right() {
        let line = "4242 (evil) 1 2 3 (x) S 17 4242 4242 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 1 0 12345 1000000 321 18446744073709551615";
        let p = parse_stat(line).unwrap();
        assert_eq!((p.ppid, p.ticks, p.rss_pages), (17, 210, 321));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S").is_none());
    }

    #[test]
    fn a_tree_counts_a_process_and_its_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        let table = ProcTable::read();
        let (cpu, memory) = table.tree(child.id()).unwrap();
        let (_, alone) = ProcTable { children: HashMap::new(), ..ProcTable::read() }.tree(child.id()).unwrap();
        child.kill().unwrap();
        let _ = child.wait();
        assert!(cpu > 0.05, "the shell counted: {cpu}");
        assert!(memory > alone, "the two sleeps' memory is counted too: {memory} vs {alone}");
        assert!(table.tree(u32::MAX).is_none());
    }
}
