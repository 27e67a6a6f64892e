//! `pergola` against a tiny HTTP server started in the test that answers what it is told to —
//! what a hostile or misconfigured server may answer: what the CLI sends (the paths built from
//! the command line), and what it does with a redirect or a problem's detail holding terminal
//! escapes. The live-server tests are in `cli.rs`.

mod support;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use support::read_head;

/// How the test server answers one request.
struct Answer {
    status: &'static str,
    /// Further header lines, each ending with `\r\n`.
    headers: String,
    body: String,
}

fn problem(status: &'static str, detail_json: &str) -> Answer {
    let body = format!(r#"{{"status":{},"detail":"{detail_json}"}}"#, &status[..3]);
    Answer { status, headers: String::new(), body }
}

fn redirect(status: &'static str, location: &str) -> Answer {
    Answer { status, headers: format!("Location: {location}\r\n"), body: String::new() }
}

/// A server on a fresh port answering each connection with the next of `answers` (a 404 once
/// they are used up), until a connection says `STOP` (see [`stop`]): its URL, its address, and
/// the request lines it was sent.
fn serve(answers: Vec<Answer>) -> (String, SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        let mut lines = Vec::new();
        loop {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (line, headers) = read_head(&mut reader);
            if line == "STOP" {
                return lines;
            }
            let length = headers.get("content-length").map_or(0, |n| n.parse::<usize>().unwrap());
            reader.read_exact(&mut vec![0u8; length]).unwrap();
            let not_found = || problem("404 Not Found", "nothing here");
            respond(stream, &answers.next().unwrap_or_else(not_found));
            lines.push(line);
        }
    });
    (format!("http://{addr}"), addr, handle)
}

/// Ends the server at `addr`: the request lines it was sent.
fn stop(addr: SocketAddr, server: JoinHandle<Vec<String>>) -> Vec<String> {
    TcpStream::connect(addr).unwrap().write_all(b"STOP\r\n\r\n").unwrap();
    server.join().unwrap()
}

fn respond(mut stream: TcpStream, answer: &Answer) {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        answer.status,
        answer.body.len(),
        answer.headers
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(answer.body.as_bytes()).unwrap();
}

/// `pergola ARGS` pointed at `url` with a token and no stored sign-in, `stdin` as its input.
fn pergola(url: &str, home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pergola"))
        .env("PERGOLA_URL", url)
        .env("PERGOLA_TOKEN", "pgt_test")
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A URL nobody listens at: a command that sent anything would say it cannot reach it.
fn nobody() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[test]
fn a_redirect_is_not_followed_and_says_which_server_to_use() {
    let home = tempfile::tempdir().unwrap();
    let (target, target_addr, target_server) = serve(vec![]);
    let answers = vec![
        redirect("308 Permanent Redirect", &format!("{target}/api/v1/login")),
        redirect("307 Temporary Redirect", "https://pergola.example.com/api/v1/projects"),
        redirect("301 Moved Permanently", "/elsewhere/api/v1/user"),
    ];
    let (url, addr, server) = serve(answers);

    let out = pergola(&url, home.path(), &["login", "--username", "alice", "--password-stdin"], "alices-password\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: the server at {url} answered with a redirect to {target}/api/v1/login, which is not followed: \
             if that is your Pergola server, use --server {target}\n"
        )
    );
    assert!(!home.path().join("pergola").exists(), "nothing stored");
    let out = pergola(&url, home.path(), &["list", "project"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).ends_with(", use --server https://pergola.example.com\n"), "{}", stderr(&out));
    let out = pergola(&url, home.path(), &["whoami"], "");
    let said = stderr(&out);
    assert!(said.contains(&format!("a redirect to {url}/elsewhere/api/v1/user,")), "{said}");
    assert!(said.ends_with(&format!("use --server {url}/elsewhere\n")), "{said}");

    assert_eq!(
        stop(addr, server),
        ["POST /api/v1/login HTTP/1.1", "GET /api/v1/projects HTTP/1.1", "GET /api/v1/user HTTP/1.1"]
    );
    let followed = stop(target_addr, target_server);
    assert!(followed.is_empty(), "the password never went to the redirect's target: {followed:?}");
}

#[test]
fn names_from_the_command_line_stay_in_their_path_segment() {
    let home = tempfile::tempdir().unwrap();
    let answers = vec![
        problem("422 Unprocessable Entity", "Invalid key"),
        problem("404 Not Found", "There is no member 'x/../../stages/prod'."),
        problem("404 Not Found", "Project 'p' has no stage 'a b'."),
    ];
    let (url, addr, server) = serve(answers);
    let out = pergola(&url, home.path(), &["config", "set", "A#B=1", "-s", "s", "-p", "p"], "");
    assert_eq!(stderr(&out), "error: Invalid key\n");
    let out = pergola(&url, home.path(), &["delete", "member", "x/../../stages/prod", "-p", "shop"], "");
    assert_eq!(stderr(&out), "error: There is no member 'x/../../stages/prod'.\n");
    let out = pergola(&url, home.path(), &["get", "stage", "a b", "-p", "p"], "");
    assert_eq!(stderr(&out), "error: Project 'p' has no stage 'a b'.\n");
    assert_eq!(
        stop(addr, server),
        [
            "PUT /api/v1/projects/p/stages/s/config/A%23B HTTP/1.1",
            "DELETE /api/v1/projects/shop/members/x%2F..%2F..%2Fstages%2Fprod HTTP/1.1",
            "GET /api/v1/projects/p/stages/a%20b HTTP/1.1",
        ]
    );

    // `.` and `..` would be resolved by the URL parser however they are written: refused,
    // nothing sent.
    for args in [
        &["delete", "member", "..", "-p", "shop"][..],
        &["delete", "stage", ".", "-p", "shop"],
        &["config", "unset", "KEY", "-s", "..", "-p", "shop"],
    ] {
        let out = pergola(&nobody(), home.path(), args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let said = stderr(&out);
        assert!(said.starts_with("error: '.") && said.ends_with("' is not a valid name or ID.\n"), "{args:?}: {said}");
    }
}

#[test]
fn a_problem_s_detail_is_printed_escaped() {
    let home = tempfile::tempdir().unwrap();
    let (url, addr, server) = serve(vec![problem("422 Unprocessable Entity", r"\u001b]52;c;AAAA\u0007")]);
    let out = pergola(&url, home.path(), &["config", "set", "KEY=1", "-s", "s", "-p", "p"], "");
    stop(addr, server);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07), "{:?}", stderr(&out));
    assert_eq!(stderr(&out), "error: \\u{1b}]52;c;AAAA\\u{7}\n");
}

#[test]
fn a_server_url_needs_its_scheme_and_plain_http_to_another_machine_is_warned_of() {
    let home = tempfile::tempdir().unwrap();
    for server in ["localhost:3000", "127.0.0.1:3000", "pergola.example.com"] {
        let out = pergola(&nobody(), home.path(), &["list", "project", "--server", server], "");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            format!(
                "error: the server '{server}' is not an http:// or https:// URL: give it as --server \
                 https://HOST[:PORT] (or PERGOLA_URL).\n"
            )
        );
    }
    // Said before anything is sent (the member's name is refused next, without a request).
    let remote = ["delete", "member", "..", "-p", "p", "--server", "http://pergola.example.com"];
    let out = pergola(&nobody(), home.path(), &remote, "");
    assert_eq!(
        stderr(&out),
        "warning: http://pergola.example.com is plain http: your password and API token travel to it unencrypted; \
         use https:// unless the network is trusted.\nerror: '..' is not a valid name or ID.\n"
    );
    let here = ["delete", "member", "..", "-p", "p", "--server", "http://localhost:3000"];
    let out = pergola(&nobody(), home.path(), &here, "");
    assert_eq!(stderr(&out), "error: '..' is not a valid name or ID.\n", "this machine: no warning");
}

/// A server on a fresh port that answers one request with a 200 whose body is `size` bytes of
/// `byte` sent in chunks with no length (or a length saying so, `with_length`), and no newline:
/// an answer, or one line of a followed log, far larger than any the CLI reads.
fn serve_endless(size: usize, with_length: bool) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_head(&mut reader);
        let mut stream = stream;
        let length = if with_length { format!("Content-Length: {size}\r\n") } else { String::new() };
        let framing = if with_length { "" } else { "Transfer-Encoding: chunked\r\n" };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}{framing}\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b'7'; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let piece: &[u8] = &chunk[..chunk.len().min(size - sent)];
            let framed = if with_length {
                piece.to_vec()
            } else {
                [format!("{:x}\r\n", piece.len()).into_bytes(), piece.to_vec(), b"\r\n".to_vec()].concat()
            };
            if stream.write_all(&framed).is_err() {
                return; // the CLI stopped reading: what it should do
            }
            sent += piece.len();
        }
        if !with_length {
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    });
    (format!("http://{addr}"), handle)
}

/// A hostile server (or something that is not a Pergola server) cannot make the CLI read an
/// answer of any size into memory: past 32 MiB — one answer, announced or not — or 1 MiB on one
/// line of a followed log, the command stops and says so. (Read whole, these 100 MiB would be
/// taken as a JSON number and refused only then.)
#[test]
fn an_endless_answer_is_refused_not_read_into_memory() {
    let home = tempfile::tempdir().unwrap();
    let commands: [(&[&str], bool, &str); 3] = [
        (&["list", "project"], false, "an answer of more than 32 MiB"),
        (&["list", "project"], true, "an answer of more than 32 MiB"),
        (&["logs", "web", "-s", "dev", "-p", "shop", "-f"], false, "a line of more than 1 MiB"),
    ];
    for (args, with_length, said) in commands {
        let (url, server) = serve_endless(100 * 1024 * 1024, with_length);
        let out = pergola(&url, home.path(), args, "");
        server.join().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
    }
}

/// `config get` prints a value as data: its own bytes into a pipe (`$(pergola config get KEY)`,
/// a file), but escaped on a terminal, where a control character in it would act (here one that
/// moves the cursor up over what was printed). The terminal is a pseudo-terminal of `script`.
#[test]
fn a_value_is_printed_raw_into_a_pipe_and_escaped_on_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let entries = || {
        Answer {
        status: "200 OK",
        headers: String::new(),
        body: r#"[{"key":"BANNER","value":"line one\nup\u001b[3Ahere","secret":false,"updated_at":"2026-12-01T00:00:00Z"}]"#
            .into(),
    }
    };
    let args = ["config", "get", "BANNER", "-s", "dev", "-p", "shop"];
    let (url, addr, server) = serve(vec![entries()]);
    let piped = pergola(&url, home.path(), &args, "");
    stop(addr, server);
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert_eq!(piped.stdout, b"line one\nup\x1b[3Ahere\n", "the value's own bytes");

    let (url, addr, server) = serve(vec![entries()]);
    let command = format!("{} {}", env!("CARGO_BIN_EXE_pergola"), args.join(" "));
    let terminal = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("PERGOLA_URL", &url)
        .env("PERGOLA_TOKEN", "pgt_test")
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    stop(addr, server);
    assert_eq!(terminal.status.code(), Some(0), "{}", stderr(&terminal));
    let shown = String::from_utf8_lossy(&terminal.stdout);
    assert!(!terminal.stdout.contains(&0x1b), "{shown:?}");
    assert!(shown.contains("line one\r\nup\\u{1b}[3Ahere"), "{shown:?}");
}
