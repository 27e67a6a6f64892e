//! The `pergola` binary against a live server (the REST API on a fresh SQLite store).

use assert_cmd::Command;
use pergola_core::testing::ADMIN_PASSWORD;
use std::path::Path;
use std::sync::OnceLock;

/// The test server and the administrator's API token.
struct Server {
    url: String,
    admin_token: String,
}

/// One server for the whole file, on its own runtime thread; tests use distinct projects and users.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let env = pergola_core::testing::sqlite_env().await;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                // The system clock, as in production: stages list in creation order. Builds by a
                // server path stay on for the administrator until `pergola create build` uploads.
                let services =
                    env.services.with_clock(std::sync::Arc::new(pergola_core::SystemClock)).with_path_builds(true);
                let token = env.as_admin(&services).create_token("cli-tests", None, None).await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                tx.send(Server { url, admin_token: token.token }).unwrap();
                let app: axum::Router =
                    pergola_api::router(services, pergola_api::auth::SessionCookie { secure: false });
                axum::serve(listener, app).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

fn url() -> &'static str {
    &server().url
}

/// An empty configuration directory: nobody signed in.
fn no_sign_in() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-no-sign-in");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// `pergola` as the administrator (`PERGOLA_TOKEN`), with no stored sign-in.
fn pergola(args: &[&str]) -> Command {
    let mut cmd = anonymous(args);
    cmd.env("PERGOLA_TOKEN", &server().admin_token);
    cmd
}

/// `pergola` with neither a token nor a stored sign-in.
fn anonymous(args: &[&str]) -> Command {
    signed_in(no_sign_in(), args)
}

/// `pergola` with the sign-in stored under `home` (its XDG_CONFIG_HOME and HOME) and no
/// `PERGOLA_TOKEN`.
fn signed_in(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("pergola").unwrap();
    cmd.env("PERGOLA_URL", url()).env("XDG_CONFIG_HOME", home).env("HOME", home).env_remove("PERGOLA_TOKEN").args(args);
    cmd
}

/// `pergola create token ARGS…` with the administrator's password on stdin: its output.
fn new_token(args: &[&str]) -> String {
    let args = [&["create", "token", "--password-stdin"][..], args].concat();
    let out = pergola(&args).write_stdin(format!("{ADMIN_PASSWORD}\n")).assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = pergola(args).assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_seeds_commands_work_as_written() {
    pergola(&["create", "project", "my-new-project"])
        .assert()
        .success()
        .stdout("Project 'my-new-project' created with ID 'my-new-project'.\n");
    pergola(&["create", "stage", "my-new-stage", "--type", "dev", "-p", "my-new-project"])
        .assert()
        .success()
        .stdout("Stage 'my-new-stage' created in project 'my-new-project' (dev, running).\n");
    let want = "\
┌───────────────────────────────┐
| stage        | type | status  |
| ───────────────────────────── |
| my-new-stage | dev  | running |
└───────────────────────────────┘
";
    pergola(&["list", "stage", "-p", "my-new-project"]).assert().success().stdout(want);
}

#[test]
fn list_stage_shows_name_and_id_when_they_differ_as_in_the_seed() {
    pergola(&["create", "project", "Seed Example", "--id", "seed-example"]).assert().success();
    let p = ["-p", "seed-example"];
    pergola(&[&["create", "stage", "my-new-stage", "--type", "prod", "--id", "stage1"][..], &p].concat())
        .assert()
        .success();
    pergola(&[&["create", "stage", "uat", "--type", "PROD"][..], &p].concat()).assert().success();
    pergola(&[&["create", "stage", "integration-tests", "-t", "qa", "--id", "test"][..], &p].concat())
        .assert()
        .success()
        .stdout("Stage 'integration-tests' (test) created in project 'seed-example' (qa, running).\n");
    pergola(&[&["suspend", "stage", "test"][..], &p].concat())
        .assert()
        .success()
        .stdout("Stage 'integration-tests' (test) suspended.\n");
    let want = "\
┌─────────────────────────────────────────────┐
| stage                    | type | status    |
| ─────────────────────────────────────────── |
| my-new-stage (stage1)    | prod | running   |
| uat                      | prod | running   |
| integration-tests (test) | qa   | suspended |
└─────────────────────────────────────────────┘
";
    pergola(&["list", "stage", "-p", "seed-example"]).assert().success().stdout(want);
    pergola(&["list", "stages", "-p", "seed-example"]).assert().success().stdout(want);
}

#[test]
fn json_output_parses_back() {
    pergola(&["create", "project", "json-project"]).assert().success();
    let created: serde_json::Value = serde_json::from_str(&stdout_of(&[
        "create",
        "stage",
        "Market EU",
        "--type",
        "prod",
        "-p",
        "json-project",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!((created["id"].as_str(), created["stage_type"].as_str()), (Some("market-eu"), Some("prod")));
    let list: Vec<pergola_domain::Stage> =
        serde_json::from_str(&stdout_of(&["list", "stage", "-p", "json-project", "-o", "json"])).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Market EU");
    let projects: Vec<pergola_domain::Project> =
        serde_json::from_str(&stdout_of(&["list", "project", "-o", "json"])).unwrap();
    assert!(projects.iter().any(|p| p.id == "json-project"));
    let got: pergola_domain::Stage =
        serde_json::from_str(&stdout_of(&["get", "stage", "market-eu", "-p", "json-project", "-o", "json"])).unwrap();
    assert_eq!(got.id, "market-eu");
}

#[test]
fn lifecycle_delete_archive_and_restore() {
    pergola(&["create", "project", "lifecycle"]).assert().success();
    let p = ["-p", "lifecycle"];
    pergola(&[&["create", "stage", "qa", "--type", "qa"][..], &p].concat()).assert().success();
    pergola(&[&["suspend", "stage", "qa"][..], &p].concat()).assert().success();
    pergola(&[&["resume", "stage", "qa"][..], &p].concat())
        .assert()
        .success()
        .stdout("Stage 'qa' resumed (running).\n");
    let out = stdout_of(&[&["delete", "stage", "qa"][..], &p].concat());
    assert!(out.starts_with("Stage 'qa' deleted: archived until "), "{out}");
    assert!(out.ends_with("Restore it with: pergola restore stage qa -p lifecycle\n"), "{out}");
    let archived = stdout_of(&["list", "stage", "--archived", "-p", "lifecycle"]);
    assert!(archived.contains("| stage | type | archived ") && archived.contains("deleted for good on"), "{archived}");
    assert!(archived.contains("| qa    | qa   | "), "{archived}");
    assert_eq!(stdout_of(&["list", "stage", "-p", "lifecycle"]).lines().count(), 4, "header only");
    pergola(&[&["restore", "stage", "qa"][..], &p].concat())
        .assert()
        .success()
        .stdout("Stage 'qa' restored (running).\n");
    let got = stdout_of(&[&["get", "stage", "qa"][..], &p].concat());
    assert!(
        got.contains("status:   running") && got.contains("type:     qa") && got.contains("grace:    60 s"),
        "{got}"
    );
}

#[test]
fn update_stage_and_its_events() {
    pergola(&["create", "project", "updates"]).assert().success();
    let p = ["-p", "updates"];
    pergola(&[&["create", "stage", "web", "--type", "dev"][..], &p].concat()).assert().success();
    pergola(&[&["update", "stage", "web", "--grace", "15", "--type", "qa"][..], &p].concat())
        .assert()
        .success()
        .stdout("Stage 'web' updated (qa, grace period 15 s).\n");
    pergola(&[&["update", "stage", "web", "--grace", "0"][..], &p].concat())
        .assert()
        .code(1)
        .stderr("error: The grace period must be a whole number of seconds from 1 to 3600.\n");
    pergola(&[&["update", "stage", "web"][..], &p].concat())
        .assert()
        .code(1)
        .stderr("error: nothing to change: give --name, --type, --grace or --visibility\n");
    pergola(&[&["suspend", "stage", "web"][..], &p].concat()).assert().success().stdout("Stage 'web' suspended.\n");
    let events = stdout_of(&[&["list", "event", "-s", "web"][..], &p].concat());
    let kinds: Vec<&str> = events.lines().skip(3).filter_map(|l| l.split('|').nth(3)).map(str::trim).collect();
    assert_eq!(kinds, ["suspended", "suspending", "updated", "created"], "{events}");
    assert!(events.contains("| admin (token cli-tests) | updated "), "{events}");
    assert!(events.contains("Type set to QA, grace period set to 15 s."), "{events}");
    pergola(&["list", "event", "-s", "nope", "-p", "updates"])
        .assert()
        .code(1)
        .stderr("error: Project 'updates' has no stage 'nope'.\n");
}

#[test]
fn failures_print_one_line_and_exit_1() {
    pergola(&["create", "project", "errors"]).assert().success();
    pergola(&["create", "stage", "uat", "--type", "qa", "-p", "errors"]).assert().success();
    pergola(&["create", "stage", "uat", "--type", "qa", "-p", "errors"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("error: Stage ID 'uat' is already taken. Try 'uat-2'.\n");
    pergola(&["create", "stage", "x", "--type", "dev", "--id", "Bad ID", "-p", "errors"])
        .assert()
        .code(1)
        .stderr("error: Stage ID may only contain lowercase letters a-z, digits 0-9 and hyphens (found 'B').\n");
    pergola(&["list", "stage", "-p", "no-such-project"])
        .assert()
        .code(1)
        .stderr("error: There is no project 'no-such-project'.\n");
    pergola(&["resume", "stage", "uat", "-p", "errors"])
        .assert()
        .code(1)
        .stderr("error: Stage 'uat' is already running.\n");
    let unreachable =
        anonymous(&["list", "project", "--server", "http://127.0.0.1:9"]).assert().code(1).get_output().stderr.clone();
    let message = String::from_utf8(unreachable).unwrap();
    assert!(message.starts_with("error: cannot reach the Pergola server at http://127.0.0.1:9"), "{message}");
    assert_eq!(message.lines().count(), 1);
}

#[test]
fn usage_errors_exit_2() {
    pergola(&["create", "stage", "x", "--type", "dev"]).assert().code(2); // no -p
    pergola(&["create", "stage", "x", "--type", "staging", "-p", "p"]).assert().code(2);
    pergola(&["frobnicate"]).assert().code(2);
}

#[test]
fn help_has_examples_and_completions_are_generated() {
    let help = stdout_of(&["--help"]);
    assert!(help.contains("pergola create stage my-new-stage --type dev -p my-new-project"), "{help}");
    let bash = stdout_of(&["completion", "bash"]);
    assert!(bash.contains("_pergola()"), "{}", &bash[..200.min(bash.len())]);
}

#[test]
fn configuration_set_get_list_unset() {
    pergola(&["create", "project", "configured"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "configured"]).assert().success();
    let at = ["-s", "qa", "-p", "configured"];
    pergola(&[&["config", "set", "LOG_LEVEL=debug", "GREETING=hello world"][..], &at].concat())
        .assert()
        .success()
        .stdout("Set LOG_LEVEL, GREETING on stage 'qa'. It applies with the stage's next release.\n");
    pergola(&[&["config", "set", "API_TOKEN=s3cr3t=with=equals", "--secret"][..], &at].concat()).assert().success();
    pergola(&[&["config", "get", "GREETING"][..], &at].concat()).assert().success().stdout("hello world\n");
    pergola(&[&["config", "get", "API_TOKEN"][..], &at].concat())
        .assert()
        .code(1)
        .stderr("error: 'API_TOKEN' is a secret: its value is not shown after saving.\n");
    let list = stdout_of(&[&["config", "list"][..], &at].concat());
    assert!(list.contains("| API_TOKEN | •••••• (secret) |"), "{list}");
    assert!(list.contains("| GREETING  | hello world     |"), "{list}");
    assert!(!list.contains("s3cr3t"));
    pergola(&[&["config", "set", "PORT=1"][..], &at].concat())
        .assert()
        .code(1)
        .stderr("error: 'PORT' is set by Pergola and cannot be overridden.\n");
    pergola(&[&["config", "set", "NOEQUALS"][..], &at].concat()).assert().code(2);
    pergola(&[&["config", "unset", "GREETING"][..], &at].concat())
        .assert()
        .success()
        .stdout("Removed GREETING from stage 'qa'.\n");
    pergola(&[&["config", "unset", "GREETING"][..], &at].concat())
        .assert()
        .code(1)
        .stderr("error: Stage 'qa' has no setting 'GREETING'.\n");
    let json: Vec<pergola_domain::ConfigEntry> =
        serde_json::from_str(&stdout_of(&[&["config", "list", "-o", "json"][..], &at].concat())).unwrap();
    let keys: Vec<_> = json.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["API_TOKEN", "LOG_LEVEL"]);
}

#[test]
fn builds_deploy_and_releases() {
    pergola(&["create", "project", "deploying"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "deploying"]).assert().success();
    let dir = std::env::temp_dir();
    let manifest = dir.join(format!("pergola-cli-{}.toml", std::process::id()));
    std::fs::write(
        &manifest,
        "version = \"1.0\"\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\nport = 8080\n",
    )
    .unwrap();
    let args = [
        "create",
        "build",
        "--manifest",
        manifest.to_str().unwrap(),
        "--server-path",
        dir.to_str().unwrap(),
        "-p",
        "deploying",
    ];
    pergola(&args).assert().success().stdout("Build 1 registered (1.0).\n");
    std::fs::write(&manifest, "[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\nport = 0\n")
        .unwrap();
    pergola(&args)
        .assert()
        .code(1)
        .stderr("error: Invalid manifest, line 1: component 'web': port must be between 1 and 65535\n");
    let builds = stdout_of(&["list", "build", "-p", "deploying"]);
    assert!(builds.contains("| 1     | 1.0     | web        |"), "{builds}");
    pergola(&["deploy", "1", "-s", "qa", "-p", "deploying"])
        .assert()
        .success()
        .stdout("Release #1 (build 1) deployed to stage 'qa'.\n");
    pergola(&["deploy", "1", "-s", "qa", "-p", "deploying"])
        .assert()
        .success()
        .stdout("Release #2 (build 1) deployed to stage 'qa'.\n");
    pergola(&["deploy", "9", "-s", "qa", "-p", "deploying"])
        .assert()
        .code(1)
        .stderr("error: Project 'deploying' has no build 9.\n");
    let releases = stdout_of(&["list", "release", "-s", "qa", "-p", "deploying"]);
    let rows: Vec<_> = releases.lines().filter(|l| l.starts_with("| #")).collect();
    assert_eq!(rows.len(), 2, "{releases}");
    assert!(rows[0].starts_with("| #2      | 1     | 1.0     |"), "{releases}");
    // This test server has no runtime: nothing runs, and the table says so by being empty.
    assert_eq!(stdout_of(&["list", "component", "-s", "qa", "-p", "deploying"]).lines().count(), 4);
    // What the release is on Kubernetes, as YAML an operator can review or apply.
    pergola(&["config", "set", "PASSWORD=hunter22", "--secret", "-s", "qa", "-p", "deploying"]).assert().success();
    pergola(&["deploy", "1", "-s", "qa", "-p", "deploying"]).assert().success();
    let yaml = stdout_of(&["get", "stage", "qa", "-p", "deploying", "-o", "kubernetes"]);
    assert!(yaml.starts_with("---\napiVersion: \"scheduling.k8s.io/v1\"\n"), "{yaml}");
    assert!(yaml.contains("kind: \"Deployment\"") && yaml.contains("name: \"config-r3\""), "{yaml}");
    assert!(yaml.contains("PASSWORD: \"<redacted>\"") && !yaml.contains("hunter22"), "{yaml}");
    let missing = pergola(&["get", "stage", "nope", "-p", "deploying", "-o", "kubernetes"]).output().unwrap();
    let said = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1));
    assert!(said.starts_with("error: ") && said.contains("'nope'") && missing.stdout.is_empty(), "{said}");
    pergola(&["list", "stage", "-p", "deploying", "-o", "kubernetes"]).assert().code(1).stderr(
        "error: -o kubernetes prints a stage's Kubernetes objects: use it with `pergola get stage STAGE -p PROJECT`\n",
    );
    let _ = std::fs::remove_file(manifest);
}

/// What a user sees when the token is missing, revoked or expired.
fn unauthorized_line() -> String {
    format!("error: Not signed in, or your token was revoked or expired: run `pergola login --server {}`.\n", url())
}

fn stored_config(home: &Path) -> std::path::PathBuf {
    home.join("pergola").join("config.toml")
}

#[test]
fn without_a_token_every_command_says_how_to_sign_in() {
    anonymous(&["list", "project"]).assert().code(1).stdout("").stderr(unauthorized_line());
    anonymous(&["whoami"]).assert().code(1).stderr(unauthorized_line());
    let mut bad = anonymous(&["list", "project"]);
    bad.env("PERGOLA_TOKEN", "pgt_not-a-real-token").assert().code(1).stderr(unauthorized_line());
}

#[test]
fn login_with_a_password_keeps_a_private_sign_in_for_the_next_commands() {
    pergola(&["create", "user", "lena", "--password-stdin"])
        .write_stdin(format!("lenas-password-1\n{ADMIN_PASSWORD}\n"))
        .assert()
        .success()
        .stdout(
            "User 'lena' created. Give them a project with: pergola create member lena --role developer -p PROJECT\n",
        );
    let home = tempfile::tempdir().unwrap();
    signed_in(home.path(), &["login", "--server", url(), "--username", "lena", "--password-stdin"])
        .write_stdin("lenas-password-1\n")
        .assert()
        .success()
        .stdout(format!("Signed in to {} as lena.\n", url()));
    let config = stored_config(home.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", config.display());
        let dir_mode = std::fs::metadata(config.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("server = \"{}\"", url())) && text.contains("token = \"pgt_"), "{text}");
    // Without PERGOLA_URL either: the stored server is used.
    let mut whoami = signed_in(home.path(), &["whoami"]);
    let out = whoami.env_remove("PERGOLA_URL").assert().success().get_output().stdout.clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("user:   lena\nadmin:  no\ntoken:  cli-"), "{out}");
    assert!(out.ends_with(&format!("server: {}\n", url())), "{out}");
    signed_in(home.path(), &["list", "project"]).assert().success();
    let tokens = signed_in(home.path(), &["list", "token"]).assert().success().get_output().stdout.clone();
    let tokens = String::from_utf8(tokens).unwrap();
    assert!(tokens.contains("| token ") && tokens.contains("| last used ") && tokens.contains("| cli-"), "{tokens}");
}

#[test]
fn a_wrong_password_is_refused_and_nothing_is_stored() {
    pergola(&["create", "user", "walt", "--password-stdin"])
        .write_stdin(format!("walts-password-1\n{ADMIN_PASSWORD}\n"))
        .assert()
        .success();
    let home = tempfile::tempdir().unwrap();
    signed_in(home.path(), &["login", "--username", "walt", "--password-stdin"])
        .write_stdin("not-his-password\n")
        .assert()
        .code(1)
        .stdout("")
        .stderr("error: Wrong username or password.\n");
    assert!(!home.path().join("pergola").exists());
    signed_in(home.path(), &["login", "--password-stdin"])
        .write_stdin("walts-password-1\n")
        .assert()
        .code(1)
        .stderr("error: give --username when the password comes from stdin (or sign in with --token-stdin).\n");
}

#[test]
fn too_many_failed_sign_ins_show_when_to_try_again() {
    for _ in 0..5 {
        anonymous(&["login", "--username", "nobody-at-all", "--password-stdin"])
            .write_stdin("wrong-password-1\n")
            .assert()
            .code(1)
            .stderr("error: Wrong username or password.\n");
    }
    let out = anonymous(&["login", "--username", "nobody-at-all", "--password-stdin"])
        .write_stdin("wrong-password-1\n")
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let message = String::from_utf8(out).unwrap();
    assert!(message.starts_with("error: Too many attempts. Try again in "), "{message}");
    assert!(message.contains("(Retry-After: ") && message.ends_with(" s)\n"), "{message}");
}

#[test]
fn created_tokens_print_alone_work_and_stop_working_when_deleted() {
    // A token makes no token on its own: without the administrator's password, nothing is made.
    let refused = pergola(&["create", "token", "ci-pipeline", "--password-stdin"]).write_stdin("\n").assert().code(1);
    let refused = String::from_utf8(refused.get_output().stderr.clone()).unwrap();
    assert!(refused.contains("needs your own password too"), "{refused}");
    let refused = pergola(&["create", "token", "ci-pipeline"]).assert().code(1);
    let refused = String::from_utf8(refused.get_output().stderr.clone()).unwrap();
    assert_eq!(refused, "error: give --password-stdin to read your password from stdin.\n");
    assert!(!stdout_of(&["list", "token"]).contains("ci-pipeline"));
    let out = new_token(&["ci-pipeline", "--expires-in", "30"]);
    let token = out;
    assert!(token.starts_with("pgt_") && token.ends_with('\n') && token.lines().count() == 1, "{token}");
    let token = token.trim_end();
    let mut whoami = anonymous(&["whoami", "-o", "json"]);
    let me: serde_json::Value =
        serde_json::from_slice(&whoami.env("PERGOLA_TOKEN", token).assert().success().get_output().stdout).unwrap();
    assert_eq!((me["username"].as_str(), me["token"].as_str()), (Some("admin"), Some("ci-pipeline")));
    let tokens = stdout_of(&["list", "token"]);
    let row = tokens.lines().find(|l| l.starts_with("| ci-pipeline ")).unwrap_or_else(|| panic!("{tokens}"));
    assert!(row.contains(" UTC ") && !row.contains("never"), "expires in 30 days: {tokens}");
    assert!(!tokens.contains("pgt_"), "{tokens}");
    pergola(&["delete", "token", "ci-pipeline"])
        .assert()
        .success()
        .stdout("Token 'ci-pipeline' revoked: it no longer works.\n");
    anonymous(&["list", "project"]).env("PERGOLA_TOKEN", token).assert().code(1).stderr(unauthorized_line());
    pergola(&["delete", "token", "ci-pipeline"]).assert().code(1);
}

#[test]
fn login_with_a_token_and_logout_revokes_it() {
    let token = new_token(&["for-login"]).trim_end().to_owned();
    let home = tempfile::tempdir().unwrap();
    signed_in(home.path(), &["login", "--token-stdin"])
        .write_stdin(format!("{token}\n"))
        .assert()
        .success()
        .stdout(format!("Signed in to {} as admin.\n", url()));
    signed_in(home.path(), &["list", "project"]).assert().success();
    signed_in(home.path(), &["logout"])
        .assert()
        .success()
        .stdout(format!("Signed out of {}: the token is revoked.\n", url()));
    let text = std::fs::read_to_string(stored_config(home.path())).unwrap();
    assert!(!text.contains("pgt_"), "{text}");
    signed_in(home.path(), &["list", "project"]).assert().code(1).stderr(unauthorized_line());
    anonymous(&["list", "project"]).env("PERGOLA_TOKEN", &token).assert().code(1).stderr(unauthorized_line());
    // A revoked token cannot sign in either, and signing out twice is harmless.
    let refused = signed_in(home.path(), &["login", "--token-stdin"])
        .write_stdin(token.clone())
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let refused = String::from_utf8(refused).unwrap();
    assert!(refused.starts_with("error: The API token is not valid"), "{refused}");
    signed_in(home.path(), &["logout"])
        .assert()
        .success()
        .stdout(format!("Not signed in to {}: nothing to sign out of.\n", url()));
}

#[test]
fn logout_forgets_a_token_the_server_no_longer_accepts() {
    let token = new_token(&["revoked-elsewhere"]).trim_end().to_owned();
    let home = tempfile::tempdir().unwrap();
    signed_in(home.path(), &["login", "--token-stdin"]).write_stdin(token).assert().success();
    pergola(&["delete", "token", "revoked-elsewhere"]).assert().success();
    signed_in(home.path(), &["logout"])
        .assert()
        .success()
        .stdout(format!("Signed out of {} (the server no longer accepted the token).\n", url()));
    assert!(!std::fs::read_to_string(stored_config(home.path())).unwrap().contains("pgt_"));
}

#[test]
fn a_token_alone_makes_no_user_it_needs_its_owners_password_too() {
    // Only the new user's password: the server asks for the administrator's own.
    let asked = pergola(&["create", "user", "mallory", "--password-stdin"])
        .write_stdin("mallorys-password-1\n")
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let asked = String::from_utf8(asked).unwrap();
    assert!(asked.contains("needs your own password too (your_password)"), "{asked}");
    let wrong = pergola(&["create", "user", "mallory", "--password-stdin"])
        .write_stdin("mallorys-password-1\nnot-the-admins-password\n")
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let wrong = String::from_utf8(wrong).unwrap();
    assert!(wrong.contains("Your password is not right."), "{wrong}");
    let users = String::from_utf8(pergola(&["list", "user"]).assert().success().get_output().stdout.clone()).unwrap();
    assert!(!users.contains("mallory"), "nobody was created: {users}");
    pergola(&["create", "user", "mallory", "--password-stdin"])
        .write_stdin(format!("mallorys-password-1\n{ADMIN_PASSWORD}\n"))
        .assert()
        .success();
}

#[test]
fn members_roles_and_the_projects_activity() {
    pergola(&["create", "project", "team"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "team"]).assert().success();
    pergola(&["create", "user", "vic", "--password-stdin"])
        .write_stdin(format!("vics-password-1\n{ADMIN_PASSWORD}\n"))
        .assert()
        .success();
    // Through the CLI's token, adding a member (or raising a role) needs the caller's password.
    let asked = pergola(&["create", "member", "vic", "--role", "developer", "-p", "team"]).assert().code(1);
    let asked = String::from_utf8(asked.get_output().stderr.clone()).unwrap();
    assert!(asked.contains("needs your own password too (your_password)"), "{asked}");
    assert!(!stdout_of(&["list", "member", "-p", "team"]).contains("| vic "), "not added");
    pergola(&["create", "member", "vic", "--role", "developer", "-p", "team", "--password-stdin"])
        .write_stdin(format!("{ADMIN_PASSWORD}\n"))
        .assert()
        .success()
        .stdout("User 'vic' is now a developer in project 'team'.\n");
    pergola(&["create", "member", "vic", "--role", "owner", "-p", "team", "--password-stdin"])
        .write_stdin(format!("{ADMIN_PASSWORD}\n"))
        .assert()
        .success()
        .stdout("User 'vic' is now an owner in project 'team'.\n");
    // Lowering a role asks nothing.
    pergola(&["create", "member", "vic", "--role", "viewer", "-p", "team"])
        .assert()
        .success()
        .stdout("User 'vic' is now a viewer in project 'team'.\n");
    let users = stdout_of(&["list", "user"]);
    assert!(users.contains("| user ") && users.contains("| administrator |"), "{users}");
    assert!(
        users.lines().any(|l| l.starts_with("| vic ") && l.contains("| no ") && l.contains("| active ")),
        "{users}"
    );
    let members = stdout_of(&["list", "member", "-p", "team"]);
    assert!(members.lines().any(|l| l.starts_with("| vic ") && l.contains("| viewer |")), "{members}");

    let home = tempfile::tempdir().unwrap();
    signed_in(home.path(), &["login", "--username", "vic", "--password-stdin"])
        .write_stdin("vics-password-1\n")
        .assert()
        .success();
    let stages = String::from_utf8(
        signed_in(home.path(), &["list", "stage", "-p", "team"]).assert().success().get_output().stdout.clone(),
    )
    .unwrap();
    assert!(stages.contains("| qa    | qa   | running |"), "{stages}");
    signed_in(home.path(), &["create", "stage", "dev", "--type", "dev", "-p", "team"])
        .assert()
        .code(1)
        .stderr("error: Creating a DEV stage needs the developer role in project 'team'; you are a viewer.\n");
    signed_in(home.path(), &["list", "user"])
        .assert()
        .code(1)
        .stderr("error: Managing users needs an administrator; you are not one.\n");

    pergola(&["delete", "member", "vic", "-p", "team"])
        .assert()
        .success()
        .stdout("User 'vic' is no longer a member of project 'team'.\n");
    assert!(!stdout_of(&["list", "member", "-p", "team"]).contains("| vic "));
    let events = stdout_of(&["list", "event", "-p", "team"]);
    let header = events.lines().nth(1).unwrap();
    assert!(header.starts_with("| time ") && header.contains("| actor ") && header.contains("| message "), "{events}");
    for kind in ["member.removed", "member.added", "stage.created"] {
        assert!(
            events.lines().any(|l| l.contains("| admin (token cli-tests) |") && l.contains(&format!("| {kind} "))),
            "{kind}: {events}"
        );
    }
    let removed = events.lines().position(|l| l.contains("| member.removed ")).unwrap();
    let added = events.lines().position(|l| l.contains("| member.added ")).unwrap();
    assert!(removed < added, "newest first: {events}");
    // No longer a member: the project is not there for vic.
    signed_in(home.path(), &["list", "stage", "-p", "team"])
        .assert()
        .code(1)
        .stderr("error: There is no project 'team'.\n");
}

#[test]
fn guest_links_are_created_listed_and_revoked_and_visibility_is_set() {
    pergola(&["create", "project", "sharing"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "sharing"]).assert().success();
    pergola(&["update", "stage", "qa", "--visibility", "public", "-p", "sharing"])
        .assert()
        .success()
        .stdout("Stage 'qa' updated (qa, grace period 60 s, share links open to anyone with the link).\n");
    pergola(&["update", "stage", "qa", "--visibility", "Members", "-p", "sharing"])
        .assert()
        .success()
        .stdout("Stage 'qa' updated (qa, grace period 60 s, share links for members only).\n");
    pergola(&["update", "stage", "qa", "--visibility", "everyone", "-p", "sharing"]).assert().code(2);
    let dir = std::env::temp_dir();
    let manifest = dir.join(format!("pergola-cli-links-{}.toml", std::process::id()));
    std::fs::write(&manifest, "[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\n").unwrap();
    let (manifest_arg, dir_arg) = (manifest.to_str().unwrap(), dir.to_str().unwrap());
    pergola(&["create", "build", "--manifest", manifest_arg, "--server-path", dir_arg, "-p", "sharing"])
        .assert()
        .success();
    pergola(&["deploy", "1", "-s", "qa", "-p", "sharing"]).assert().success();

    for bad in ["0h", "366d", "2w", "soon"] {
        pergola(&["create", "link", "-s", "qa", "-p", "sharing", "--expires-in", bad]).assert().code(1).stdout("");
    }
    let url = stdout_of(&["create", "link", "-s", "qa", "-p", "sharing", "--expires-in", "48h"]);
    assert!(url.starts_with("http://web.qa.sharing.localhost:3000/.pergola/guest?token=pgg_"), "{url}");
    assert_eq!(url.lines().count(), 1, "the URL alone: {url}");
    let token = url.trim_end().rsplit('=').next().unwrap().to_owned();
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&[
        "create",
        "link",
        "-s",
        "qa",
        "-p",
        "sharing",
        "--expires-in",
        "7d",
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(json["token"].as_str().unwrap().starts_with("pgg_"), "{json}");
    let second = json["id"].as_str().unwrap().to_owned();

    let listed = stdout_of(&["list", "link", "-s", "qa", "-p", "sharing"]);
    assert_eq!(listed.lines().filter(|l| l.contains("| admin ")).count(), 2, "{listed}");
    assert!(!listed.contains(&token) && !listed.contains("pgg_"), "never the secret: {listed}");
    pergola(&["delete", "link", &second, "-s", "qa", "-p", "sharing"])
        .assert()
        .success()
        .stdout(format!("Guest link '{second}' revoked: it no longer works.\n"));
    let listed = stdout_of(&["list", "links", "-s", "qa", "-p", "sharing"]);
    let row = listed.lines().find(|l| l.starts_with(&format!("| {second} "))).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("revoked"), "{listed}");
    pergola(&["delete", "link", &second, "-s", "qa", "-p", "sharing"]).assert().code(1);
    let _ = std::fs::remove_file(manifest);
}

#[test]
fn promote_diff_and_duplicate_stages() {
    pergola(&["create", "project", "promoting"]).assert().success();
    for (id, t) in [("dev", "dev"), ("qa", "qa")] {
        pergola(&["create", "stage", id, "--type", t, "-p", "promoting"]).assert().success();
    }
    // The build's directory, uploaded (and then gone from the client).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("promote-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pergola.toml"),
        "version = \"2.0\"\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\nport = 8080\n",
    )
    .unwrap();
    pergola(&["create", "build", "--dir", dir.to_str().unwrap(), "-p", "promoting"]).assert().success();
    std::fs::remove_dir_all(&dir).unwrap();
    pergola(&["deploy", "1", "-s", "dev", "-p", "promoting"]).assert().success();
    pergola(&["config", "set", "LOG_LEVEL=debug", "-s", "dev", "-p", "promoting"]).assert().success();
    pergola(&["config", "set", "API_TOKEN=s3cret", "--secret", "-s", "qa", "-p", "promoting"]).assert().success();

    // The differences, secrets never shown.
    let diff = stdout_of(&["diff", "stage", "dev", "qa", "-p", "promoting"]);
    assert_eq!(
        diff,
        "dev -> qa\n  type           DEV -> QA\n  runs           release #1 (build 1, 2.0) -> no release\n  \
         components     + web (service)\n  configuration  API_TOKEN: (not set) -> (secret)\n                 \
         LOG_LEVEL: debug -> (not set)\n"
    );
    assert!(!diff.contains("s3cret"));
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["-o", "json", "diff", "stage", "dev", "qa", "-p", "promoting"])).unwrap();
    assert_eq!(json["build_differs"], true);

    // Without a terminal, a promotion needs --yes; nothing changed.
    pergola(&["promote", "dev", "--to", "qa", "-p", "promoting"])
        .assert()
        .code(1)
        .stderr("error: promoting 'dev' to 'qa' needs a confirmation: run it in a terminal, or pass --yes.\n");
    assert!(stdout_of(&["list", "release", "-s", "qa", "-p", "promoting"]).lines().all(|l| !l.starts_with("| #")));
    pergola(&["promote", "dev", "--to", "qa", "-p", "promoting", "--yes"])
        .assert()
        .success()
        .stdout("Build 1 of stage 'dev' promoted to stage 'qa' as its release #1.\n");
    pergola(&["promote", "qa", "--to", "qa", "-p", "promoting", "--yes"])
        .assert()
        .code(1)
        .stderr("error: A stage cannot be promoted to itself: choose another stage.\n");
    let events = stdout_of(&["list", "event", "-s", "qa", "-p", "promoting"]);
    assert!(events.contains("promoted from 'dev' (its release 1)"), "{events}");

    // A copy of QA, with its build and its secret (still masked).
    pergola(&["create", "stage", "QA copy", "--from", "qa", "--deploy", "-p", "promoting"])
        .assert()
        .success()
        .stdout("Stage 'qa-copy' created in project 'promoting' as a copy of 'qa' (qa, with its current build).\n");
    let diff = stdout_of(&["diff", "stage", "qa", "qa-copy", "-p", "promoting"]);
    assert_eq!(diff, "qa -> qa-copy\n  no difference: same build, components, configuration, type and grace period\n");
    pergola(&["create", "stage", "x", "-p", "promoting"]).assert().code(2);
    pergola(&["create", "stage", "QA data", "--from", "qa", "--with-storage", "-p", "promoting"])
        .assert()
        .code(1)
        .stderr("error: Suspend stage 'qa' first: its storage is copied while nothing writes to it.\n");
    pergola(&["suspend", "stage", "qa", "-p", "promoting"]).assert().success();
    pergola(&["create", "stage", "QA data", "--from", "qa", "--with-storage", "-p", "promoting"])
        .assert()
        .success()
        .stdout("Stage 'qa-data' created in project 'promoting' as a copy of 'qa' (qa, with its storage).\n");
}

/// An uploaded build (sent here with the API directly, as `pergola create build` will) is
/// listed and deployed by the CLI like any other.
#[test]
fn an_uploaded_build_is_listed_and_deployed() {
    pergola(&["create", "project", "uploading"]).assert().success();
    pergola(&["create", "stage", "qa", "--type", "qa", "-p", "uploading"]).assert().success();
    let manifest = "version = \"3.0\"\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\n";
    let archive =
        pergola_core::testing::archive(&[("pergola.toml", manifest.as_bytes(), 0o644), ("web", b"#!/bin/sh\n", 0o755)]);
    let res = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/projects/uploading/builds", url()))
        .bearer_auth(&server().admin_token)
        .header("content-type", "application/gzip")
        .body(archive)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let build: serde_json::Value = res.json().unwrap();
    assert!(build["digest"].as_str().unwrap().starts_with("sha256:"), "{build}");
    let builds = stdout_of(&["list", "build", "-p", "uploading"]);
    assert!(builds.contains("| 1     | 3.0     | web        |"), "{builds}");
    pergola(&["deploy", "1", "-s", "qa", "-p", "uploading"])
        .assert()
        .success()
        .stdout("Release #1 (build 1) deployed to stage 'qa'.\n");
}
