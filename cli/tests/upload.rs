//! `pergola create build --dir` against a tiny HTTP server started in the test: what the upload
//! sends (an archive streamed as `application/gzip`, chunked), that it streams while packing,
//! and its progress line on a terminal. The live-server tests are in `cli.rs`.

mod support;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use support::read_head;

/// A request as the test server read it: its head, and the archive's files read back.
struct Request {
    line: String,
    headers: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<u8>>,
    /// The client's peak memory (VmHWM, KiB) once the whole body was read.
    client_peak_kib: Option<u64>,
}

/// How the test server answers.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn build_json(number: i64) -> String {
    serde_json::json!({
        "project_id": "shop", "number": number, "version": "1.0",
        "manifest": "version = \"1.0\"\n", "workdir": "", "created_at": "2026-11-30T01:00:00Z",
        "digest": format!("sha256:{}", "0f".repeat(32)), "size": 1536, "unpacked_size": 4096,
        "uploaded_by": "alice"
    })
    .to_string()
}

fn created(number: i64) -> Answer {
    Answer { status: "201 Created", content_type: "application/json", body: build_json(number) }
}

/// Serves one request on a fresh port: reads the head, reads the chunked body through gzip and
/// tar as it arrives (calling `on_first_chunk` when the first body bytes are in), then answers.
/// `client_pid` (if given) is the process whose peak memory is read before answering.
fn serve_one(
    answer: Answer,
    on_first_chunk: impl FnOnce() + Send + 'static,
    client_pid: Option<std::sync::mpsc::Receiver<u32>>,
) -> (String, JoinHandle<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, reader, line, headers) = accept_upload(&listener);
        assert_eq!(headers.get("transfer-encoding").map(String::as_str), Some("chunked"), "{headers:?}");
        let mut body = Chunked { inner: reader, left: 0, done: false, on_first: Some(Box::new(on_first_chunk)) };
        let files = read_archive(&mut body);
        std::io::copy(&mut body, &mut std::io::sink()).unwrap(); // the gzip trailer, the last chunk
        let client_peak_kib = client_pid.map(|rx| peak_kib(rx.recv().unwrap()));
        respond(stream, &answer);
        Request { line, headers, files, client_peak_kib }
    });
    (url, handle)
}

/// Accepts connections until the upload comes, answering the CLI's question about the project
/// first; the upload's connection, its reader and its head.
fn accept_upload(listener: &TcpListener) -> (TcpStream, BufReader<TcpStream>, String, BTreeMap<String, String>) {
    loop {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let (line, headers) = read_head(&mut reader);
        if line == "GET /api/v1/projects/shop HTTP/1.1" {
            let project = r#"{"id":"shop","name":"shop","created_at":"2026-11-30T01:00:00Z"}"#;
            respond(stream, &Answer { status: "200 OK", content_type: "application/json", body: project.into() });
            continue;
        }
        return (stream, reader, line, headers);
    }
}

fn respond(mut stream: TcpStream, answer: &Answer) {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(answer.body.as_bytes()).unwrap();
}

fn read_archive(body: impl Read) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(body));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    files
}

/// A chunked request body, read as it arrives.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
    on_first: Option<Box<dyn FnOnce() + Send>>,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            self.inner.read_line(&mut size)?;
            self.left = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            if self.left == 0 {
                let mut trailer = String::new();
                while self.inner.read_line(&mut trailer)? > 2 {
                    trailer.clear();
                }
                self.done = true;
                return Ok(0);
            }
            if let Some(first) = self.on_first.take() {
                first();
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `pergola` pointed at `url` with a token and no stored sign-in.
fn pergola(url: &str, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pergola"));
    cmd.env("PERGOLA_URL", url)
        .env("PERGOLA_TOKEN", "pgt_test")
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Bytes gzip cannot shrink (xorshift), so the archive is as large as the tree.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

const MANIFEST: &str = "version = \"1.0\"\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\n";

#[test]
fn the_upload_streams_while_packing_and_json_output_is_the_build_without_progress() {
    let home = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path().to_path_buf();
    write(&root, "pergola.toml", MANIFEST.as_bytes());
    const FILES: usize = 48;
    const FILE_SIZE: usize = 1 << 20;
    for i in 0..FILES {
        write(&root, &format!("data/{i:02}.bin"), &noise(FILE_SIZE, i as u64 + 1));
    }
    // Packed last (sorted). Rewritten, with the same length, when the server sees the first
    // bytes: the archive holds the new text only if packing was still going on then.
    write(&root, "zz-last.txt", b"before");
    let last = root.join("zz-last.txt");
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (url, server) = serve_one(created(7), move || std::fs::write(&last, b"after!").unwrap(), Some(pid_rx));

    let child =
        pergola(&url, home.path(), &["create", "build", "--dir", root.to_str().unwrap(), "-p", "shop", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    pid_tx.send(child.id()).unwrap();
    let output = child.wait_with_output().unwrap();
    let request = server.join().unwrap();

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(request.line, "POST /api/v1/projects/shop/builds HTTP/1.1");
    assert_eq!(request.headers["content-type"], "application/gzip");
    assert_eq!(request.headers["authorization"], "Bearer pgt_test");
    assert!(!request.headers.contains_key("content-length"), "streamed: no length known beforehand");
    assert_eq!(request.files["pergola.toml"], MANIFEST.as_bytes());
    assert_eq!(request.files.keys().filter(|k| k.ends_with(".bin")).count(), FILES);
    assert_eq!(request.files["data/47.bin"], noise(FILE_SIZE, 48));
    assert_eq!(
        request.files["zz-last.txt"], b"after!",
        "the server saw the first bytes before the client had packed the last file"
    );
    let archive_mib = (FILES * FILE_SIZE) >> 20;
    let peak_mib = request.client_peak_kib.unwrap() >> 10;
    assert!(
        peak_mib < archive_mib as u64 / 2,
        "the client's peak memory {peak_mib} MiB for a {archive_mib} MiB archive"
    );

    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&build_json(7)).unwrap();
    assert_eq!(printed, sent, "-o json prints the build as the server answered");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "no progress, no warnings");
}

#[test]
fn the_server_s_refusal_is_one_line_and_a_missing_manifest_sends_nothing() {
    let home = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    write(tree.path(), "pergola.toml", MANIFEST.as_bytes());
    write(tree.path(), "web", b"#!/bin/sh\n");
    let problem = Answer {
        status: "422 Unprocessable Entity",
        content_type: "application/problem+json",
        body: r#"{"type":"urn:pergola:problem:validation","title":"Invalid input","status":422,"detail":"The archive holds a link out of the build: web"}"#.into(),
    };
    let (url, server) = serve_one(problem, || {}, None);
    let out = pergola(&url, home.path(), &["create", "build", "--dir", tree.path().to_str().unwrap(), "-p", "shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: The archive holds a link out of the build: web\n");
    assert!(out.stdout.is_empty());
    assert_eq!(server.join().unwrap().files.keys().collect::<Vec<_>>(), ["pergola.toml", "web"]);

    // No such project (or no sign-in): asked before packing, refused in one line, nothing sent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (line, _) = read_head(&mut BufReader::new(stream.try_clone().unwrap()));
        let body = r#"{"type":"urn:pergola:problem:not-found","status":404,"detail":"There is no project 'shop'."}"#;
        respond(
            stream,
            &Answer { status: "404 Not Found", content_type: "application/problem+json", body: body.into() },
        );
        line
    });
    let out = pergola(&url, home.path(), &["create", "build", "--dir", tree.path().to_str().unwrap(), "-p", "shop"])
        .output()
        .unwrap();
    assert_eq!(server.join().unwrap(), "GET /api/v1/projects/shop HTTP/1.1", "one request only");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: There is no project 'shop'.\n");

    // No manifest: refused before anything is sent (nobody listens at this port).
    std::fs::remove_file(tree.path().join("pergola.toml")).unwrap();
    let nobody = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let out = pergola(&url, home.path(), &["create", "build", "--dir", tree.path().to_str().unwrap(), "-p", "shop"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with("has no pergola.toml: add the manifest there, or name it with --manifest FILE\n"),
        "{stderr}"
    );
}

/// Runs `pergola ARGS` on a pseudo-terminal (util-linux `script`): what the terminal showed.
fn on_a_terminal(url: &str, home: &Path, args: &[&str]) -> Output {
    let command = std::iter::once(env!("CARGO_BIN_EXE_pergola"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env("PERGOLA_URL", url)
        .env("PERGOLA_TOKEN", "pgt_test")
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("COLUMNS", "120")
        .stdin(Stdio::null());
    script.output().unwrap()
}

#[test]
fn a_terminal_shows_progress_unless_json_is_asked_for() {
    let home = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    write(tree.path(), "pergola.toml", MANIFEST.as_bytes());
    write(tree.path(), "data.bin", &noise(4 << 20, 3));
    let dir = tree.path().to_str().unwrap();

    let (url, server) = serve_one(created(7), || {}, None);
    let out = on_a_terminal(&url, home.path(), &["create", "build", "--dir", dir, "-p", "shop"]);
    server.join().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Uploading ") && shown.contains(" sent (") && shown.contains(" B/s),"), "{shown:?}");
    assert!(shown.contains("% of 4.00 MiB packed"), "{shown:?}");
    assert!(shown.contains("Build 7 uploaded (1.0): 1.50 KiB, 4.00 KiB unpacked, sha256:0f0f0f0f0f0f."), "{shown:?}");

    let (url, server) = serve_one(created(8), || {}, None);
    let out = on_a_terminal(&url, home.path(), &["create", "build", "--dir", dir, "-p", "shop", "-o", "json"]);
    server.join().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("Uploading") && !shown.contains('\x1b'), "no progress with -o json: {shown:?}");
    let printed: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(printed["number"], 8);
}

/// The server refuses after the first MiB (as a size limit checked while streaming does).
/// When it then reads the rest (or lingers), the CLI shows its reason; when it closes the
/// connection at once, the answer is lost in the reset, and the CLI says the upload was cut off.
#[test]
fn a_refusal_while_uploading_is_the_server_s_reason_when_it_reads_on() {
    let home = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    write(tree.path(), "pergola.toml", MANIFEST.as_bytes());
    write(tree.path(), "data.bin", &noise(16 << 20, 5));
    for drain in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, mut reader, _, _) = accept_upload(&listener);
            reader.read_exact(&mut vec![0u8; 1 << 20]).unwrap();
            let body =
                r#"{"type":"urn:pergola:problem:too-large","status":413,"detail":"The archive is larger than 1 MiB."}"#;
            let answer =
                Answer { status: "413 Content Too Large", content_type: "application/problem+json", body: body.into() };
            respond(stream.try_clone().unwrap(), &answer);
            if drain {
                std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
            }
        });
        let out =
            pergola(&url, home.path(), &["create", "build", "--dir", tree.path().to_str().unwrap(), "-p", "shop"])
                .output()
                .unwrap();
        server.join().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if drain {
            assert_eq!(stderr, "error: The archive is larger than 1 MiB.\n");
        } else {
            let want = format!("error: the server at {url} closed the connection before the upload was complete (");
            assert!(stderr.starts_with(&want), "{stderr}");
        }
    }
}
