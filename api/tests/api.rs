//! The REST API against a live server, on SQLite and on PostgreSQL: every route, every error
//! code, and every response checked against the served OpenAPI document.
//!
//! One test per family of routes and database (`sqlite::stages`, `postgres::config`, …), each on
//! a fresh store, so one failure does not hide the others; `every_documented_operation_is_exercised`
//! runs all families once more and fails if the document has an operation none of them calls.

use chrono::{DateTime, Duration, Utc};
use pergola_core::testing::{sqlite_env, Env};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Mutex;

struct Api {
    base: String,
    http: reqwest::Client,
    doc: Value,
    seen: Mutex<BTreeSet<(String, String)>>,
}

struct Reply {
    status: u16,
    body: Value,
    location: Option<String>,
}

impl Api {
    async fn start(env: &Env) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app: axum::Router = pergola_api::router(env.services.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::new();
        let doc: Value = http.get(format!("{base}/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        Api { base, http, doc, seen: Mutex::new(BTreeSet::new()) }
    }

    /// Calls `template` with its `{…}` placeholders filled from `args` in order, checks the
    /// response against the document and records the operation as exercised.
    async fn call(&self, method: &str, template: &str, args: &[&str], query: &str, body: Option<Value>) -> Reply {
        let mut path = template.to_owned();
        for arg in args {
            let start = path.find('{').expect("a placeholder per argument");
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, arg);
        }
        let url = format!("{}{path}{query}", self.base);
        let mut req = self.http.request(method.parse().unwrap(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = res.json().await.unwrap();
        let expected_type = if status < 400 { "application/json" } else { "application/problem+json" };
        assert_eq!(content_type, expected_type, "{method} {path} -> {status}");
        self.check_schema(method, template, status, &content_type, &body);
        self.seen.lock().unwrap().insert((method.to_lowercase(), template.to_owned()));
        Reply { status, body, location }
    }

    async fn raw_post(&self, path: &str, body: &'static str) -> Reply {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        Reply { status, body: res.json().await.unwrap(), location: None }
    }

    /// A request the router refuses before any handler runs (a path or query value of the wrong
    /// type): a documented 400 with a plain-text message.
    async fn refused_url(&self, method: &str, template: &str, args: &[&str], query: &str) {
        let mut path = template.to_owned();
        for arg in args {
            let start = path.find('{').expect("a placeholder per argument");
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, arg);
        }
        let res =
            self.http.request(method.parse().unwrap(), format!("{}{path}{query}", self.base)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{method} {path}{query}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(
            op["responses"]["400"]["content"]["text/plain"].is_object(),
            "{method} {template} does not document it"
        );
    }

    fn check_schema(&self, method: &str, template: &str, status: u16, content_type: &str, body: &Value) {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let schema = &op["responses"][status.to_string()]["content"][content_type]["schema"];
        assert!(schema.is_object(), "{method} {template} does not document {status} {content_type}");
        // The response schema, with the document's components beside it so `$ref`s resolve.
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).unwrap();
        if let Err(e) = validator.validate(body) {
            panic!("{method} {template} {status}: response does not match the document: {e}\n{body:#}");
        }
    }

    fn documented_operations(&self) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                ops.insert((method.clone(), path.clone()));
            }
        }
        ops
    }
}

fn problem<'a>(reply: &'a Reply, status: u16, code: &str) -> &'a Value {
    assert_eq!(reply.status, status, "{:#}", reply.body);
    assert_eq!(reply.body["type"], format!("urn:pergola:problem:{code}"), "{:#}", reply.body);
    assert_eq!(reply.body["status"], status);
    assert!(!reply.body["detail"].as_str().unwrap().is_empty());
    &reply.body
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

const PROJECTS: &str = "/api/v1/projects";
const PROJECT: &str = "/api/v1/projects/{project}";
const STAGES: &str = "/api/v1/projects/{project}/stages";
const STAGE: &str = "/api/v1/projects/{project}/stages/{stage}";
const STAGE_ID: &str = "/api/v1/projects/{project}/stage-ids/{id}";
const SUSPEND: &str = "/api/v1/projects/{project}/stages/{stage}/suspend";
const RESUME: &str = "/api/v1/projects/{project}/stages/{stage}/resume";
const RESTORE: &str = "/api/v1/projects/{project}/stages/{stage}/restore";
const RETENTION: &str = "/api/v1/settings/retention";
const BUILDS: &str = "/api/v1/projects/{project}/builds";
const RELEASES: &str = "/api/v1/projects/{project}/stages/{stage}/releases";
const REDEPLOY: &str = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/redeploy";
const COMPONENTS: &str = "/api/v1/projects/{project}/stages/{stage}/components";
const LOGS: &str = "/api/v1/projects/{project}/stages/{stage}/components/{component}/logs";
const EVENTS: &str = "/api/v1/projects/{project}/stages/{stage}/events";
const CONFIG: &str = "/api/v1/projects/{project}/stages/{stage}/config";
const CONFIG_KEY: &str = "/api/v1/projects/{project}/stages/{stage}/config/{key}";

/// The project the families work in (`my-new-project`), with `stages` given as (name, type,
/// Stage ID) created through the API.
async fn project_with(api: &Api, stages: &[(&str, &str, &str)]) -> &'static str {
    let p = "my-new-project";
    let r = api.call("POST", PROJECTS, &[], "", Some(json!({"name": "My New Project"}))).await;
    assert_eq!((r.status, r.body["id"].as_str()), (201, Some(p)), "{:#}", r.body);
    for (name, stage_type, id) in stages {
        let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": name, "type": stage_type, "id": id}))).await;
        assert_eq!(r.status, 201, "{:#}", r.body);
    }
    p
}

const STAGE1: (&str, &str, &str) = ("my-new-stage", "prod", "stage1");
const UAT: (&str, &str, &str) = ("User Acceptance", "qa", "uat");
const MANIFEST: &str =
    "version = \"2.0\"\n[[component]]\nname = \"web\"\nkind = \"service\"\ncommand = \"./web\"\nport = 8080\n";

async fn projects(api: &Api, _env: &Env) {
    let r = api.call("POST", PROJECTS, &[], "", Some(json!({"name": "My New Project"}))).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["id"], "my-new-project");
    assert_eq!(r.location.as_deref(), Some("/api/v1/projects/my-new-project"));
    let r = api.call("POST", PROJECTS, &[], "", Some(json!({"name": "my new project"}))).await;
    let p = problem(&r, 409, "project-id-taken");
    assert_eq!((p["field"].as_str(), p["suggestion"].as_str()), (Some("project_id"), Some("my-new-project-2")));
    let r = api.call("POST", PROJECTS, &[], "", Some(json!({"name": "  "}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "name");
    let r = api.call("POST", PROJECTS, &[], "", Some(json!({"title": "no name"}))).await;
    problem(&r, 400, "malformed-request");
    let r = api.raw_post(PROJECTS, "{not json").await;
    problem(&r, 400, "malformed-request");
    let r = api.call("GET", PROJECTS, &[], "", None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "refusals created nothing");
    let r = api.call("GET", PROJECT, &["my-new-project"], "", None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("My New Project")));
    problem(&api.call("GET", PROJECT, &["nope"], "", None).await, 404, "not-found");
}

/// Create, list, check IDs, get, update, and the events those updates leave.
async fn stages(api: &Api, _env: &Env) {
    let p = project_with(api, &[]).await;
    let r =
        api.call("POST", STAGES, &[p], "", Some(json!({"name": "my-new-stage", "type": "prod", "id": "stage1"}))).await;
    assert_eq!((r.status, r.body["id"].as_str(), r.body["status"].as_str()), (201, Some("stage1"), Some("running")));
    assert_eq!(r.location.as_deref(), Some("/api/v1/projects/my-new-project/stages/stage1"));
    let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": "uat", "type": "PROD"}))).await;
    assert_eq!((r.body["id"].as_str(), r.body["stage_type"].as_str()), (Some("uat"), Some("prod")));
    let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": "UAT", "type": "qa"}))).await;
    let body = problem(&r, 409, "stage-id-taken");
    assert_eq!((body["field"].as_str(), body["suggestion"].as_str()), (Some("stage_id"), Some("uat-2")));
    let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": "x", "type": "staging"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "stage_type");
    let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": "x", "type": "dev", "id": "Bad ID"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "stage_id");
    let r = api.call("POST", STAGES, &[p], "", Some(json!({"name": 42, "type": "dev"}))).await;
    problem(&r, 400, "malformed-request");
    problem(
        &api.call("POST", STAGES, &["nope"], "", Some(json!({"name": "x", "type": "dev"}))).await,
        404,
        "not-found",
    );
    let r = api.call("GET", STAGES, &[p], "", None).await;
    let ids: Vec<_> = r.body.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["stage1", "uat"]);
    problem(&api.call("GET", STAGES, &["nope"], "", None).await, 404, "not-found");
    api.refused_url("GET", STAGES, &[p], "?archived=maybe").await;

    let r = api.call("GET", STAGE_ID, &[p, "uat"], "", None).await;
    assert_eq!((r.body["available"].as_bool(), r.body["suggestion"].as_str()), (Some(false), Some("uat-2")));
    let r = api.call("GET", STAGE_ID, &[p, "integration"], "", None).await;
    assert_eq!(r.body["available"], true);
    problem(&api.call("GET", STAGE_ID, &["nope", "x"], "", None).await, 404, "not-found");

    let r = api.call("GET", STAGE, &[p, "stage1"], "", None).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("my-new-stage")));
    problem(&api.call("GET", STAGE, &[p, "nope"], "", None).await, 404, "not-found");
    let r = api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"name": "User Acceptance"}))).await;
    assert_eq!(
        (r.body["name"].as_str(), r.body["stage_type"].as_str(), r.body["id"].as_str()),
        (Some("User Acceptance"), Some("prod"), Some("uat"))
    );
    let r = api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"type": "qa"}))).await;
    assert_eq!((r.body["name"].as_str(), r.body["stage_type"].as_str()), (Some("User Acceptance"), Some("qa")));
    assert_eq!(
        problem(&api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"name": ""}))).await, 422, "validation")
            ["field"],
        "name"
    );
    problem(&api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"type": 7}))).await, 400, "malformed-request");
    problem(&api.call("PATCH", STAGE, &[p, "nope"], "", Some(json!({"name": "x"}))).await, 404, "not-found");
    assert_eq!(api.call("GET", STAGE, &[p, "uat"], "", None).await.body["grace_secs"], 60);
    let r = api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"grace_secs": 5}))).await;
    assert_eq!(
        (r.status, r.body["grace_secs"].as_i64(), r.body["name"].as_str()),
        (200, Some(5), Some("User Acceptance"))
    );
    let r = api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"grace_secs": 0, "name": "Changed"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "grace_secs");
    problem(
        &api.call("PATCH", STAGE, &[p, "uat"], "", Some(json!({"grace_secs": "soon"}))).await,
        400,
        "malformed-request",
    );
    assert_eq!(
        api.call("GET", STAGE, &[p, "uat"], "", None).await.body["name"],
        "User Acceptance",
        "a refusal changes nothing"
    );
    let r = api.call("GET", EVENTS, &[p, "uat"], "", None).await;
    let kinds: Vec<_> = r.body.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["updated", "updated", "updated", "created"], "newest first");
    assert_eq!(r.body[0]["message"], "Grace period set to 5 s.");
    problem(&api.call("GET", EVENTS, &[p, "nope"], "", None).await, 404, "not-found");
}

async fn config(api: &Api, _env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    let r = api.call("PUT", CONFIG_KEY, &[p, "stage1", "LOG_LEVEL"], "", Some(json!({"value": "debug"}))).await;
    assert_eq!((r.status, r.body["value"].as_str()), (200, Some("debug")));
    let r = api
        .call("PUT", CONFIG_KEY, &[p, "stage1", "API_TOKEN"], "", Some(json!({"value": "s3cr3t", "secret": true})))
        .await;
    assert!(r.body["value"].is_null(), "a secret is not sent back");
    let r = api.call("GET", CONFIG, &[p, "stage1"], "", None).await;
    assert_eq!(
        r.body,
        json!([
            {"key": "API_TOKEN", "value": null, "secret": true, "updated_at": r.body[0]["updated_at"]},
            {"key": "LOG_LEVEL", "value": "debug", "secret": false, "updated_at": r.body[1]["updated_at"]},
        ])
    );
    assert_eq!(
        problem(
            &api.call("PUT", CONFIG_KEY, &[p, "stage1", "PORT"], "", Some(json!({"value": "1"}))).await,
            422,
            "validation"
        )["field"],
        "key"
    );
    problem(
        &api.call("PUT", CONFIG_KEY, &[p, "stage1", "A"], "", Some(json!({"secret": true}))).await,
        400,
        "malformed-request",
    );
    problem(&api.call("PUT", CONFIG_KEY, &[p, "nope", "A"], "", Some(json!({"value": "1"}))).await, 404, "not-found");
    problem(&api.call("GET", CONFIG, &[p, "nope"], "", None).await, 404, "not-found");
    let r = api.call("DELETE", CONFIG_KEY, &[p, "stage1", "LOG_LEVEL"], "", None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    problem(&api.call("DELETE", CONFIG_KEY, &[p, "stage1", "LOG_LEVEL"], "", None).await, 404, "not-found");
}

/// Builds and releases (this server has no runtime: releases are recorded, nothing runs).
async fn builds_and_releases(api: &Api, _env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    let workdir = std::env::temp_dir().display().to_string();
    let manifest = MANIFEST;
    let r = api.call("POST", BUILDS, &[p], "", Some(json!({"manifest": manifest, "workdir": workdir}))).await;
    assert_eq!((r.status, r.body["number"].as_i64(), r.body["version"].as_str()), (201, Some(1), Some("2.0")));
    let r = api
        .call("POST", BUILDS, &[p], "", Some(json!({"manifest": "[[component]]\nname = 1", "workdir": workdir})))
        .await;
    let body = problem(&r, 422, "validation");
    assert_eq!(body["field"], "manifest");
    assert!(body["detail"].as_str().unwrap().starts_with("Invalid manifest, line 2: "), "{body}");
    problem(&api.call("POST", BUILDS, &[p], "", Some(json!({"manifest": manifest}))).await, 400, "malformed-request");
    problem(
        &api.call("POST", BUILDS, &["nope"], "", Some(json!({"manifest": manifest, "workdir": workdir}))).await,
        404,
        "not-found",
    );
    assert_eq!(api.call("GET", BUILDS, &[p], "", None).await.body.as_array().unwrap().len(), 1);
    problem(&api.call("GET", BUILDS, &["nope"], "", None).await, 404, "not-found");
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 1}))).await;
    assert_eq!((r.status, r.body["number"].as_i64(), r.body["build_number"].as_i64()), (201, Some(1), Some(1)));
    problem(&api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 7}))).await, 404, "not-found");
    problem(
        &api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": "one"}))).await,
        400,
        "malformed-request",
    );
    let r = api.call("POST", REDEPLOY, &[p, "stage1", "1"], "", None).await;
    assert_eq!((r.status, r.body["number"].as_i64()), (201, Some(2)));
    problem(&api.call("POST", REDEPLOY, &[p, "stage1", "9"], "", None).await, 404, "not-found");
    api.refused_url("POST", REDEPLOY, &[p, "stage1", "one"], "").await;
    let r = api.call("GET", RELEASES, &[p, "stage1"], "", None).await;
    assert_eq!(r.body.as_array().unwrap().iter().map(|r| r["number"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 1]);
    problem(&api.call("GET", RELEASES, &[p, "nope"], "", None).await, 404, "not-found");
}

/// What runs (this server has no runtime: a deployed release has no running components).
async fn components_and_logs(api: &Api, _env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    let workdir = std::env::temp_dir().display().to_string();
    let r = api.call("POST", BUILDS, &[p], "", Some(json!({"manifest": MANIFEST, "workdir": workdir}))).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 1}))).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    assert_eq!(api.call("GET", COMPONENTS, &[p, "stage1"], "", None).await.body, json!([]));
    problem(&api.call("GET", COMPONENTS, &[p, "nope"], "", None).await, 404, "not-found");
    assert_eq!(api.call("GET", LOGS, &[p, "stage1", "web"], "", None).await.body, json!([]));
    problem(&api.call("GET", LOGS, &[p, "nope", "web"], "", None).await, 404, "not-found");
}

/// Suspend, resume; delete = archive (QA: 7 days), restore, restore after the due date.
async fn lifecycle(api: &Api, env: &Env) {
    let p = project_with(api, &[STAGE1, UAT]).await;
    assert_eq!(api.call("POST", SUSPEND, &[p, "uat"], "", None).await.body["status"], "suspended");
    problem(&api.call("POST", SUSPEND, &[p, "uat"], "", None).await, 409, "invalid-state");
    problem(&api.call("POST", SUSPEND, &[p, "nope"], "", None).await, 404, "not-found");
    assert_eq!(api.call("POST", RESUME, &[p, "uat"], "", None).await.body["status"], "running");
    problem(&api.call("POST", RESUME, &[p, "uat"], "", None).await, 409, "invalid-state");
    problem(&api.call("POST", RESUME, &[p, "nope"], "", None).await, 404, "not-found");
    api.call("POST", SUSPEND, &[p, "uat"], "", None).await;

    // Delete = archive (QA: 7 days), restore, restore after the due date.
    let r = api.call("DELETE", STAGE, &[p, "uat"], "", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(time(&r.body["purge_due_at"]) - time(&r.body["archived_at"]), Duration::days(7));
    problem(&api.call("DELETE", STAGE, &[p, "uat"], "", None).await, 404, "not-found");
    let r = api.call("GET", STAGES, &[p], "?archived=true", None).await;
    assert_eq!(r.body[0]["id"], "uat");
    assert!(r.body[0]["purge_due_at"].is_string());
    assert_eq!(api.call("GET", STAGES, &[p], "", None).await.body.as_array().unwrap().len(), 1);
    let r = api.call("POST", RESTORE, &[p, "uat"], "", None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("suspended")));
    problem(&api.call("POST", RESTORE, &[p, "uat"], "", None).await, 409, "invalid-state");
    problem(&api.call("POST", RESTORE, &[p, "nope"], "", None).await, 404, "not-found");
    api.call("DELETE", STAGE, &[p, "uat"], "", None).await;
    env.clock.advance(Duration::days(7));
    let r = api.call("POST", RESTORE, &[p, "uat"], "", None).await;
    assert!(problem(&r, 409, "restore-expired")["detail"].as_str().unwrap().contains("can no longer be restored"));
}

async fn settings(api: &Api, _env: &Env) {
    let r = api.call("GET", RETENTION, &[], "", None).await;
    assert_eq!(r.body, json!({"dev_days": 1, "qa_days": 7, "prod_days": 30}));
    let r = api.call("PUT", RETENTION, &[], "", Some(json!({"dev_days": 2, "qa_days": 14, "prod_days": 60}))).await;
    assert_eq!(r.body, json!({"dev_days": 2, "qa_days": 14, "prod_days": 60}));
    let r = api.call("PUT", RETENTION, &[], "", Some(json!({"dev_days": 0, "qa_days": 14, "prod_days": 60}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "retention_dev");
    problem(&api.call("PUT", RETENTION, &[], "", Some(json!({"dev_days": "two"}))).await, 400, "malformed-request");
    assert_eq!(api.call("GET", RETENTION, &[], "", None).await.body["dev_days"], 2, "refusal changed nothing");
}

async fn unknown_routes(api: &Api, _env: &Env) {
    // Unknown API routes answer with a problem too.
    let res = api.http.get(format!("{}/api/v1/nothing-here", api.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// Per family a test on SQLite and one on PostgreSQL, each on a fresh store and server; and one
/// test that runs every family (on SQLite) and checks that together they call every documented
/// operation.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $family() {
                    let env = pergola_core::testing::sqlite_env().await;
                    super::$family(&super::Api::start(&env).await, &env).await;
                    env.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $family() {
                    let env = pergola_core::testing::postgres_env().await;
                    super::$family(&super::Api::start(&env).await, &env).await;
                    env.cleanup().await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_documented_operation_is_exercised() {
            let mut seen = BTreeSet::new();
            let mut documented = BTreeSet::new();
            $(
                let env = sqlite_env().await;
                let api = Api::start(&env).await;
                $family(&api, &env).await;
                seen.extend(api.seen.lock().unwrap().iter().cloned());
                documented.extend(api.documented_operations());
                env.cleanup().await;
            )*
            assert!(!documented.is_empty());
            let missing: Vec<_> = documented.difference(&seen).collect();
            assert!(missing.is_empty(), "operations no test family calls: {missing:?}");
        }
    };
}

families!(projects, stages, config, builds_and_releases, components_and_logs, lifecycle, settings, unknown_routes);

/// The document describes exactly the API's routes (the router is built from the same list).
#[test]
fn the_openapi_document_covers_every_route() {
    let doc = serde_json::to_value(pergola_api::openapi()).unwrap();
    let mut ops: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops.sort();
    let mut expected = vec![
        format!("GET {PROJECTS}"),
        format!("POST {PROJECTS}"),
        format!("GET {PROJECT}"),
        format!("GET {STAGES}"),
        format!("POST {STAGES}"),
        format!("GET {STAGE}"),
        format!("PATCH {STAGE}"),
        format!("DELETE {STAGE}"),
        format!("GET {STAGE_ID}"),
        format!("POST {SUSPEND}"),
        format!("POST {RESUME}"),
        format!("POST {RESTORE}"),
        format!("GET {RETENTION}"),
        format!("PUT {RETENTION}"),
        format!("GET {CONFIG}"),
        format!("PUT {CONFIG_KEY}"),
        format!("DELETE {CONFIG_KEY}"),
        format!("GET {BUILDS}"),
        format!("POST {BUILDS}"),
        format!("GET {RELEASES}"),
        format!("POST {RELEASES}"),
        format!("POST {REDEPLOY}"),
        format!("GET {COMPONENTS}"),
        format!("GET {LOGS}"),
        format!("GET {EVENTS}"),
    ];
    expected.sort();
    assert_eq!(ops, expected);
    assert_eq!(doc["info"]["title"], "Pergola Stages API");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// The document declares the rules the server enforces, and they are the domain's rules.
#[test]
fn the_document_declares_the_servers_rules() {
    use pergola_domain::{validate_id, IdKind, RetentionPolicy, MAX_GRACE_SECS, RESERVED_IDS};
    let doc = serde_json::to_value(pergola_api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let matches = |schema: &Value, value: &str| jsonschema::validator_for(schema).unwrap().is_valid(&json!(value));
    let long = format!("a{}", "b".repeat(62));
    let ids = ["a", "stage1", "my-new-stage", "a-b-c", "", "Bad ID", "1abc", "-a", "a-", "a--b", "a_b", "ü", &long];
    let too_long = format!("{long}c");
    for (kind, schema) in [(IdKind::Project, &schemas["NewProject"]), (IdKind::Stage, &schemas["NewStage"])] {
        let id_schema = &schema["properties"]["id"];
        for id in ids.iter().copied().chain([too_long.as_str()]) {
            assert_eq!(matches(id_schema, id), validate_id(kind, id).is_ok(), "{kind:?} {id:?}: {id_schema}");
        }
        assert!(RESERVED_IDS.iter().all(|id| matches(id_schema, id)), "reserved IDs are only described");
    }
    for (path, param) in
        [("/api/v1/projects/{project}", "project"), ("/api/v1/projects/{project}/stages/{stage}", "stage")]
    {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let schema = &params.iter().find(|p| p["name"] == param).unwrap()["schema"];
        assert_eq!(schema["pattern"], schemas["NewStage"]["properties"]["id"]["pattern"], "{path}");
        assert_eq!(schema["maxLength"], 63, "{path}");
    }
    let key_params = doc["paths"]["/api/v1/projects/{project}/stages/{stage}/config/{key}"]["put"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let key_schema = &key_params.iter().find(|p| p["name"] == "key").unwrap()["schema"];
    let (longest_key, too_long_key) = ("K".repeat(128), "K".repeat(129));
    let keys = ["LOG_LEVEL", "_X1", "A", "log_level", "1ABC", "", "A-B", "PORT", "PERGOLA_STAGE", "LD_PRELOAD", "PATH"];
    for key in keys.iter().copied().chain([longest_key.as_str(), too_long_key.as_str()]) {
        let allowed = pergola_domain::validate_config(key, "x").is_ok();
        // Names Pergola sets, and names that change what runs, are only described.
        let reserved = pergola_domain::manifest::RESERVED_ENV.contains(&key)
            || key.starts_with("PERGOLA_")
            || pergola_domain::manifest::is_forbidden_env(key);
        assert_eq!(matches(key_schema, key), allowed || reserved, "{key:?}");
    }
    assert_eq!(key_schema["maxLength"], 128);
    // Display names: what the schema admits is what the server accepts, in a JSON Schema validator.
    let long_name = "é".repeat(100);
    let names =
        ["QA", "  QA  ", "日本 🤔", "<b>x</b>", "", "   ", "a\u{0}b", "line\nbreak", "evil\u{202E}txt", "\u{85}x"];
    for body in ["NewProject", "NewStage", "StagePatch"] {
        let name_schema = &schemas[body]["properties"]["name"];
        for name in names.iter().copied().chain([long_name.as_str(), &format!("{long_name}é")]) {
            let accepted = pergola_domain::validate_name("Stage", name).is_ok();
            assert_eq!(matches(name_schema, name), accepted, "{body} {name:?}: {name_schema}");
        }
    }
    let value_schema = &schemas["ConfigInput"]["properties"]["value"];
    assert!(matches(value_schema, "debug") && !matches(value_schema, "a\u{0}b"));
    assert_eq!(schemas["NewStage"]["properties"]["type"]["$ref"], "#/components/schemas/StageType");
    let grace = &schemas["StagePatch"]["properties"]["grace_secs"];
    assert_eq!((grace["minimum"].as_u64(), grace["maximum"].as_u64()), (Some(1), Some(u64::from(MAX_GRACE_SECS))));
    for field in ["dev_days", "qa_days", "prod_days"] {
        let days = &schemas["RetentionInput"]["properties"][field];
        assert_eq!(
            (days["minimum"].as_u64(), days["maximum"].as_u64()),
            (Some(1), Some(u64::from(RetentionPolicy::MAX_DAYS))),
            "{field}"
        );
    }
}
