//! What a stage's process still running, or another local user, can try against the files the
//! runtime handles on the host: a duplicate's copy of a stage's storage (symlinks to the
//! server's files, a directory swapped for one in the middle of the copy, a job still writing)
//! and the sandbox check's scratch directory (a symlink planted where it would be made).
//! Real processes, no sandbox needed: these are the runtime's own file operations.

mod common;

use common::sh;

use pergola_domain::ComponentKind;
use pergola_runtime::{ComponentState, LocalRuntime, Runtime, Sandbox, StageKey, StageSpec, StopMode};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What stands for the server's secret key and database.
const SECRET: &str = "SECRET-KEY-CONTENT-5e1d";

struct Rig {
    runtime: LocalRuntime,
    dir: PathBuf,
    /// Stands for the server's data directory: what no copy may ever read.
    server: PathBuf,
}

impl Rig {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("pergola-host-files-{name}-{}-{nanos}", std::process::id()));
        let server = dir.join("server");
        std::fs::create_dir_all(server.join("db")).unwrap();
        std::fs::write(server.join("secret.key"), SECRET).unwrap();
        std::fs::write(server.join("db/pergola.db"), SECRET).unwrap();
        // The copies are the runtime's own file operations: the sandbox plays no part.
        let runtime = LocalRuntime::new(dir.join("data")).with_sandbox(Sandbox::Off);
        Rig { runtime, dir, server }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// All the storage of stage `stage` of project `shop`.
    fn storage(&self, stage: &str) -> PathBuf {
        self.data().join("storage/shop").join(stage)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The regular files under `dir` (symlinks not followed) that hold [`SECRET`].
fn secrets_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            found.extend(secrets_in(&path));
        } else if meta.is_file() && std::fs::read_to_string(&path).is_ok_and(|s| s.contains(SECRET)) {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_duplicates_storage_holds_symlinks_never_what_they_point_to() {
    let rig = Rig::new("links");
    let source = StageKey::new("shop", "qa");
    let data = rig.runtime.storage_dir(&source, "data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/own.txt"), "own").unwrap();
    // A symlink to a file outside, one to a directory outside, and a whole volume that is one.
    std::os::unix::fs::symlink(rig.server.join("secret.key"), data.join("key")).unwrap();
    std::os::unix::fs::symlink(rig.server.join("db"), data.join("db")).unwrap();
    std::os::unix::fs::symlink(&rig.server, rig.runtime.storage_dir(&source, "linked")).unwrap();
    let copy = StageKey::new("shop", "qa-copy");
    rig.runtime.copy_storage(&source, &copy).await.unwrap();
    let copied = rig.runtime.storage_dir(&copy, "data");
    assert_eq!(std::fs::read_to_string(copied.join("sub/own.txt")).unwrap(), "own");
    assert_eq!(std::fs::read_link(copied.join("key")).unwrap(), rig.server.join("secret.key"));
    assert_eq!(std::fs::read_link(copied.join("db")).unwrap(), rig.server.join("db"));
    assert_eq!(std::fs::read_link(rig.runtime.storage_dir(&copy, "linked")).unwrap(), rig.server);
    assert_eq!(secrets_in(&rig.storage("qa-copy")), Vec::<PathBuf>::new(), "the copy holds links, not the files");

    // The stage's storage directory itself a symlink to the server's directory: refused, and
    // nothing of it is copied.
    std::os::unix::fs::symlink(&rig.server, rig.storage("swapped")).unwrap();
    let e = rig
        .runtime
        .copy_storage(&StageKey::new("shop", "swapped"), &StageKey::new("shop", "swapped-copy"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("a symlink is not followed"), "{e}");
    assert!(std::fs::symlink_metadata(rig.storage("swapped-copy")).is_err(), "no half copy is left");
    assert_eq!(std::fs::read_to_string(rig.server.join("secret.key")).unwrap(), SECRET);
}

/// Bytes a file takes on disk (its blocks), not its length.
fn on_disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().blocks() * 512
}

/// A stage's component can make a file of any length that takes no disk (a sparse file), and
/// give one file thousands of names: a copy that wrote every hole out or every name in full
/// would fill the disk the server's database is on. The copy takes what the source takes.
#[tokio::test]
async fn a_duplicate_takes_no_more_disk_than_its_source() {
    let rig = Rig::new("sparse");
    let source = StageKey::new("shop", "qa");
    let data = rig.runtime.storage_dir(&source, "data");
    std::fs::create_dir_all(data.join("names")).unwrap();
    // 1 TiB long, two small islands of data in it.
    let huge: u64 = 1 << 40;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(data.join("sparse")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(huge / 2)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(huge).unwrap();
    }
    // One 1 MiB file with 200 names.
    std::fs::write(data.join("names/0"), vec![7u8; 1 << 20]).unwrap();
    for n in 1..200 {
        std::fs::hard_link(data.join("names/0"), data.join(format!("names/{n}"))).unwrap();
    }
    let copy = StageKey::new("shop", "qa-copy");
    rig.runtime.copy_storage(&source, &copy).await.unwrap();
    let copied = rig.runtime.storage_dir(&copy, "data");
    // The same content: its length, its islands where they were, zeros between.
    let sparse = copied.join("sparse");
    assert_eq!(std::fs::metadata(&sparse).unwrap().len(), huge);
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&sparse).unwrap();
        let mut head = [0u8; 8];
        f.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"head\0\0\0\0");
        f.seek(SeekFrom::Start(huge / 2)).unwrap();
        let mut middle = [0u8; 6];
        f.read_exact(&mut middle).unwrap();
        assert_eq!(&middle, b"middle");
    }
    assert!(on_disk(&sparse) <= on_disk(&data.join("sparse")) + (1 << 20), "holes stay holes: {}", on_disk(&sparse));
    // Every name is there, with the content, and they are one file.
    use std::os::unix::fs::MetadataExt;
    let first = std::fs::metadata(copied.join("names/0")).unwrap();
    assert_eq!(first.nlink(), 200);
    for n in 0..200 {
        let meta = std::fs::metadata(copied.join(format!("names/{n}"))).unwrap();
        assert_eq!((meta.ino(), meta.len()), (first.ino(), 1 << 20), "names/{n}");
    }
    assert_eq!(std::fs::read(copied.join("names/199")).unwrap(), vec![7u8; 1 << 20]);
}

/// `renameat2(a, b, RENAME_EXCHANGE)`: swaps two names atomically.
fn exchange(a: &CString, b: &CString) -> libc::c_long {
    // SAFETY: renameat2 with two valid C strings; it touches no other memory.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    }
}

/// A job of a suspended stage, still running, swaps a directory of its storage with a symlink
/// to the server's directory, atomically, again and again, while the stage is duplicated: a
/// copy that checked the directory and then opened a path through it would read the server's
/// files. No copy ever holds them (a copy that sees the swap fails instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_during_the_copy_is_never_followed() {
    let rig = Rig::new("swap");
    let source = StageKey::new("shop", "qa");
    let data = rig.runtime.storage_dir(&source, "data");
    // The same names inside as outside: a path followed through the symlink reads the secret.
    std::fs::create_dir_all(data.join("swap/db")).unwrap();
    std::fs::write(data.join("swap/secret.key"), "harmless").unwrap();
    std::fs::write(data.join("swap/db/pergola.db"), "harmless").unwrap();
    std::os::unix::fs::symlink(&rig.server, data.join("alt")).unwrap();
    let (a, b) = (
        CString::new(data.join("swap").as_os_str().as_bytes()).unwrap(),
        CString::new(data.join("alt").as_os_str().as_bytes()).unwrap(),
    );
    // The race is the test: a machine without RENAME_EXCHANGE fails it rather than passing
    // without ever trying.
    assert_eq!(exchange(&a, &b), 0, "RENAME_EXCHANGE does not work here: {}", std::io::Error::last_os_error());
    assert_eq!(exchange(&a, &b), 0);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if exchange(&a, &b) == 0 {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let mut copied = 0;
    for n in 0..300 {
        let copy = format!("copy-{n}");
        if rig.runtime.copy_storage(&source, &StageKey::new("shop", &copy)).await.is_ok() {
            copied += 1;
        }
        let leaked = secrets_in(&rig.storage(&copy));
        assert!(leaked.is_empty(), "copy {n} holds the server's files: {leaked:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "nothing was swapped");
    assert!(copied > 0, "no copy went through while the swaps went on ({swaps} swaps)");
    assert_eq!(std::fs::read_to_string(rig.server.join("secret.key")).unwrap(), SECRET);
}

/// A job of the suspended stage still runs (it may still write to its storage): a duplicate's
/// copy is refused, saying what runs, and goes through once the job has ended.
#[tokio::test]
async fn a_duplicate_is_refused_while_a_job_of_the_source_still_runs() {
    let rig = Rig::new("busy");
    let build = rig.dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    let key = StageKey::new("shop", "qa");
    let mut job = sh("migrate", ComponentKind::Job, "echo started; sleep 2; echo done > \"$PERGOLA_STORAGE_OUT/done\"");
    job.storage = vec!["out".into()];
    let spec = StageSpec {
        key: key.clone(),
        release: 1,
        components: vec![job],
        config: BTreeMap::new(),
        workdir: build,
        limits: Default::default(),
        stage_type: pergola_domain::StageType::Dev,
    };
    rig.runtime.start(spec, Duration::from_secs(5)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rig.runtime.logs(&key, "migrate").iter().any(|l| l.line == "started") {
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let copy = StageKey::new("shop", "qa-copy");
    // Running, then suspended: a job runs on after a suspend.
    let e = rig.runtime.copy_storage(&key, &copy).await.unwrap_err();
    assert!(e.to_string().contains("still run") && e.to_string().contains("migrate"), "{e}");
    rig.runtime.stop(&key, Duration::from_secs(1), StopMode::Suspend).await;
    let e = rig.runtime.copy_storage(&key, &copy).await.unwrap_err();
    assert!(e.to_string().contains("still run") && e.to_string().contains("migrate"), "{e}");
    assert!(std::fs::symlink_metadata(rig.storage("qa-copy")).is_err(), "nothing was copied");
    // Once it has ended, the copy goes through, with what it wrote.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = rig.runtime.status(&key).iter().any(|c| c.name == "migrate" && c.state == ComponentState::Completed);
        if done && rig.runtime.copy_storage(&key, &copy).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the copy was still refused: {:?}", rig.runtime.status(&key));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(rig.runtime.storage_dir(&copy, "out").join("done")).unwrap(), "done\n");
    rig.runtime.shutdown(Duration::from_secs(1)).await;
}

/// The sandbox check made its scratch directory at a predictable name in the shared `/tmp`
/// (`pergola-sandbox-check-<pid>-<n>`): a local user who planted a symlink there had the
/// server write (and bind into a sandbox) wherever it pointed. It now takes a new directory
/// under a name nobody can guess, the runtime's under its own data directory, and leaves what
/// others made alone.
#[test]
fn the_sandbox_check_never_uses_a_scratch_directory_someone_else_made() {
    let rig = Rig::new("scratch");
    let victim = rig.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let planted: Vec<PathBuf> = (0..64)
        .map(|n| std::env::temp_dir().join(format!("pergola-sandbox-check-{}-{n}", std::process::id())))
        .collect();
    for path in &planted {
        let _ = std::fs::remove_file(path);
        std::os::unix::fs::symlink(&victim, path).unwrap();
    }
    // `true` plays bwrap: the check makes its scratch directory whether bwrap is here or not.
    let fake = Sandbox::Bubblewrap("true".into());
    let checked = fake.clone().check();
    let runtime = LocalRuntime::new(rig.data()).with_sandbox(fake.clone());
    let can_start = runtime.can_start_stages();
    let still_planted =
        planted.iter().filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())).count();
    for path in &planted {
        let _ = std::fs::remove_file(path);
    }
    assert_eq!(checked, Ok(fake));
    assert!(can_start, "{}", runtime.sandbox_status());
    assert_eq!(still_planted, planted.len(), "what another user made is left alone");
    let written: Vec<_> = std::fs::read_dir(&victim).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(written.is_empty(), "written through a planted symlink: {written:?}");
    // The runtime's check was made in its own directory, and deleted.
    let left: Vec<_> = std::fs::read_dir(rig.data().join("sandbox"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pergola-sandbox-check"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
