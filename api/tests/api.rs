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
use std::sync::{Arc, Mutex};

struct Api {
    base: String,
    /// The administrator's API token (for raw requests).
    token: String,
    /// Sends the administrator's API token with every request.
    http: reqwest::Client,
    doc: Value,
    seen: Arc<Mutex<BTreeSet<(String, String)>>>,
}

struct Reply {
    status: u16,
    body: Value,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
}

impl Api {
    async fn start(env: &Env) -> Api {
        Api::start_with(env, &env.services, "api-tests").await
    }

    /// A server over `services` (the same store as `env`'s, other settings), behind the guard
    /// as the real server is.
    async fn start_with(env: &Env, services: &pergola_core::Services, token_name: &str) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let guard = pergola_api::guard::Guard::new(addr, None).unwrap();
        let app: axum::Router =
            pergola_api::router(services.clone(), pergola_api::auth::SessionCookie { secure: false })
                .layer(axum::middleware::from_fn_with_state(guard, pergola_api::guard::guard));
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let doc: Value = reqwest::get(format!("{base}/api/v1/openapi.json")).await.unwrap().json().await.unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let token = env.admin.create_token(token_name, None, None).await.unwrap().token;
        Api { http: client(Some(&token)), base, doc, seen: Arc::default(), token }
    }

    /// The same server, called with `token` (`None`: no Authorization at all).
    fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            base: self.base.clone(),
            http: client(token),
            doc: self.doc.clone(),
            seen: self.seen.clone(),
            token: token.unwrap_or_default().to_owned(),
        }
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
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let headers = res.headers().clone();
        if status == 204 {
            let op = &self.doc["paths"][template][method.to_lowercase()];
            assert!(op["responses"]["204"].is_object(), "{method} {template} does not document 204");
            self.seen.lock().unwrap().insert((method.to_lowercase(), template.to_owned()));
            return Reply { status, body: Value::Null, location, headers };
        }
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        let expected_type = if status < 400 { "application/json" } else { "application/problem+json" };
        assert_eq!(content_type, expected_type, "{method} {path} -> {status}");
        self.check_schema(method, template, status, &content_type, &body);
        self.check_headers(method, template, status, &headers);
        self.seen.lock().unwrap().insert((method.to_lowercase(), template.to_owned()));
        Reply { status, body, location, headers }
    }

    /// POSTs `body` with `content_type` (none when empty) to `template`, checks the answer
    /// against the document and records the operation as exercised.
    async fn upload(&self, template: &str, args: &[&str], content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let mut path = template.to_owned();
        for arg in args {
            let start = path.find('{').expect("a placeholder per argument");
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, arg);
        }
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let headers = res.headers().clone();
        let response_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        let expected_type = if status < 400 { "application/json" } else { "application/problem+json" };
        assert_eq!(response_type, expected_type, "POST {path} -> {status}: {body:#}");
        self.check_schema("POST", template, status, &response_type, &body);
        self.seen.lock().unwrap().insert(("post".to_owned(), template.to_owned()));
        Reply { status, body, location, headers }
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
        let headers = res.headers().clone();
        Reply { status, body: res.json().await.unwrap(), location: None, headers }
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

    /// The paging headers an answer carries are ones its operation documents.
    fn check_headers(&self, method: &str, template: &str, status: u16, headers: &reqwest::header::HeaderMap) {
        let documented =
            &self.doc["paths"][template][method.to_lowercase()]["responses"][status.to_string()]["headers"];
        for name in ["link", "x-total-count"] {
            if headers.contains_key(name) {
                let listed = documented.as_object().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)));
                assert!(listed, "{method} {template} {status} sends {name} without documenting it");
            }
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

/// An HTTP client sending `Authorization: Bearer token` with every request.
fn client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    reqwest::Client::builder().default_headers(headers).build().unwrap()
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
const LIMITS: &str = "/api/v1/settings/limits";
const ISOLATION: &str = "/api/v1/settings/isolation";
const BUILDS: &str = "/api/v1/projects/{project}/builds";
const RELEASES: &str = "/api/v1/projects/{project}/stages/{stage}/releases";
const REDEPLOY: &str = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/redeploy";
const COMPONENTS: &str = "/api/v1/projects/{project}/stages/{stage}/components";
const LOGS: &str = "/api/v1/projects/{project}/stages/{stage}/components/{component}/logs";
const EVENTS: &str = "/api/v1/projects/{project}/stages/{stage}/events";
const CONFIG: &str = "/api/v1/projects/{project}/stages/{stage}/config";
const CONFIG_KEY: &str = "/api/v1/projects/{project}/stages/{stage}/config/{key}";
const LOGIN: &str = "/api/v1/login";
const LOGOUT: &str = "/api/v1/logout";
const WHOAMI: &str = "/api/v1/user";
const PASSWORD: &str = "/api/v1/user/password";
const TOKENS: &str = "/api/v1/tokens";
const TOKEN: &str = "/api/v1/tokens/{name}";
/// `body` with the administrator's own password, which a token needs to make a way in (a
/// user, a password, an invitation).
fn confirmed(mut body: Value) -> Value {
    body["your_password"] = pergola_core::testing::ADMIN_PASSWORD.into();
    body
}

const USERS: &str = "/api/v1/users";
const USER: &str = "/api/v1/users/{username}";
const MEMBERS: &str = "/api/v1/projects/{project}/members";
const MEMBER: &str = "/api/v1/projects/{project}/members/{username}";
const PROJECT_EVENTS: &str = "/api/v1/projects/{project}/events";
const INVITATIONS: &str = "/api/v1/invitations";
const LINKS: &str = "/api/v1/projects/{project}/stages/{stage}/links";
const COMPARE: &str = "/api/v1/projects/{project}/stages/{stage}/compare/{other}";
const PROMOTE: &str = "/api/v1/projects/{project}/stages/{stage}/promote";
const DUPLICATE: &str = "/api/v1/projects/{project}/stages/{stage}/duplicate";
const LINK: &str = "/api/v1/projects/{project}/stages/{stage}/links/{id}";
const PROJECT_CHANGES: &str = "/api/v1/projects/{project}/changes";
const STAGE_CHANGES: &str = "/api/v1/projects/{project}/stages/{stage}/changes";
const METRICS: &str = "/api/v1/projects/{project}/stages/{stage}/metrics";
const KUBERNETES: &str = "/api/v1/projects/{project}/stages/{stage}/kubernetes";
const BUILD_DOWNLOAD: &str = "/api/v1/projects/{project}/stages/{stage}/releases/{number}/build";

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
    // serde reads a struct from an array too; a body must be an object.
    let r = api.raw_post(PROJECTS, r#"["My New Project", null]"#).await;
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

async fn stage_listing(api: &Api, _env: &Env) {
    let p = project_with(
        api,
        &[
            ("Checkout", "dev", "checkout"),
            ("Checkout QA", "qa", "checkout-qa"),
            ("Billing", "qa", "billing"),
            ("Billing prod", "prod", "billing-prod"),
            ("Search", "dev", "search"),
        ],
    )
    .await;
    api.call("POST", SUSPEND, &[p, "billing"], "", None).await;
    let ids = |r: &Reply| -> Vec<String> {
        r.body.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    let total = |r: &Reply| r.headers.get("x-total-count").map(|v| v.to_str().unwrap().to_owned());
    let r = api.call("GET", STAGES, &[p], "?q=CHECK", None).await;
    assert_eq!((ids(&r), total(&r).as_deref()), (vec!["checkout".into(), "checkout-qa".into()], Some("2")));
    let r = api.call("GET", STAGES, &[p], "?type=qa,prod&sort=name", None).await;
    assert_eq!(ids(&r), ["billing", "billing-prod", "checkout-qa"]);
    let r = api.call("GET", STAGES, &[p], "?status=suspended", None).await;
    assert_eq!(ids(&r), ["billing"]);
    assert!(r.headers.get("link").is_none(), "without a limit, no further page");
    // Paging: follow the Link header to the end (by name: stages made within one millisecond
    // are in ID order when sorted by creation).
    let (mut seen, mut next, mut pages) = (Vec::new(), Some("?sort=name&limit=2".to_owned()), 0);
    while let Some(query) = next.take() {
        let r = api.call("GET", STAGES, &[p], &query, None).await;
        assert_eq!((r.status, total(&r).as_deref()), (200, Some("5")));
        seen.extend(ids(&r));
        pages += 1;
        next = r.headers.get("link").map(|v| {
            let v = v.to_str().unwrap();
            assert!(v.ends_with(r#">; rel="next""#), "{v}");
            let target = v.strip_prefix('<').unwrap().split('>').next().unwrap();
            let (path, query) = target.split_once('?').unwrap();
            assert_eq!(path, "/api/v1/projects/my-new-project/stages");
            assert!(query.starts_with("sort=name&limit=2&cursor="), "{query}");
            format!("?{query}")
        });
    }
    assert_eq!(
        (seen, pages),
        (
            vec!["billing".to_owned(), "billing-prod".into(), "checkout".into(), "checkout-qa".into(), "search".into()],
            3
        )
    );
    // The filters travel with the cursor.
    let r = api.call("GET", STAGES, &[p], "?q=b%20&limit=1&sort=name", None).await;
    let link = r.headers["link"].to_str().unwrap().to_owned();
    assert!(link.contains("q=b%20&sort=name&limit=1&cursor="), "{link}");
    // Bad parameters are problems that say which; nothing is listed.
    for (query, says) in [
        ("?type=staging", "Unknown stage type"),
        ("?status=gone", "Unknown stage status"),
        ("?sort=size", "Unknown sort"),
        ("?limit=0", "from 1 to 500"),
        ("?limit=many", "from 1 to 500"),
        ("?cursor=00ff", "not one this server handed out"),
        ("?archived=true&q=x", "apply to live stages"),
    ] {
        let r = api.call("GET", STAGES, &[p], query, None).await;
        let detail = problem(&r, 400, "malformed-request")["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(says), "{query}: {detail}");
    }
    // A cursor of one sort does not continue another.
    let r = api.call("GET", STAGES, &[p], "?limit=1", None).await;
    let link = r.headers["link"].to_str().unwrap().to_owned();
    let cursor = link.split("cursor=").nth(1).unwrap().split('>').next().unwrap().to_owned();
    let r = api.call("GET", STAGES, &[p], &format!("?limit=1&sort=name&cursor={cursor}"), None).await;
    problem(&r, 400, "malformed-request");
    // Archived stages are listed as before, and never in the live listing.
    api.call("DELETE", STAGE, &[p, "search"], "", None).await;
    let r = api.call("GET", STAGES, &[p], "?archived=true", None).await;
    assert_eq!(ids(&r), ["search"]);
    let r = api.call("GET", STAGES, &[p], "?q=search", None).await;
    assert_eq!((ids(&r).len(), total(&r).as_deref()), (0, Some("0")));
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

/// A build's archive: `pergola.toml` and `files` (path, contents, mode), tar + gzip.
fn archive(manifest: &str, files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut all = vec![("pergola.toml", manifest.as_bytes(), 0o644)];
    all.extend_from_slice(files);
    pergola_core::testing::archive(&all)
}

/// Builds and releases (this server has no runtime: releases are recorded, nothing runs).
async fn builds_and_releases(api: &Api, env: &Env) {
    use sha2::Digest;
    let p = project_with(api, &[STAGE1]).await;
    let bytes = archive(MANIFEST, &[("web", b"#!/bin/sh\nexec sleep 1000\n", 0o755)]);
    let r = api.upload(BUILDS, &[p], "application/gzip", bytes.clone()).await;
    assert_eq!((r.status, r.body["number"].as_i64(), r.body["version"].as_str()), (201, Some(1), Some("2.0")));
    let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.body["digest"], format!("sha256:{hex}"));
    assert_eq!((r.body["size"].as_u64(), r.body["uploaded_by"].as_str()), (Some(bytes.len() as u64), Some("admin")));
    assert_eq!(r.body["unpacked_size"].as_u64(), Some((MANIFEST.len() + 26) as u64));
    assert_eq!((r.body["manifest"].as_str(), r.body["expired"].as_bool()), (Some(MANIFEST), Some(false)));
    assert_eq!(r.location.as_deref(), Some("/api/v1/projects/my-new-project/builds/1"));
    // The same bytes again: build 2, the same artifact. zstd too.
    let r = api.upload(BUILDS, &[p], "application/gzip", bytes.clone()).await;
    assert_eq!((r.status, r.body["number"].as_i64()), (201, Some(2)));
    assert_eq!(r.body["digest"], format!("sha256:{hex}"));
    let tar = {
        let mut t = Vec::new();
        std::io::copy(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut t).unwrap();
        t
    };
    let r = api.upload(BUILDS, &[p], "application/zstd", zstd::encode_all(&tar[..], 3).unwrap()).await;
    assert_eq!((r.status, r.body["number"].as_i64()), (201, Some(3)));
    assert_ne!(r.body["digest"], format!("sha256:{hex}"));
    // Refusals, each with its reason, and none leaves a build.
    let hostile = |path: &str| {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut t = tar::Builder::new(Vec::new());
        t.append(&h, &b"x"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    };
    for (what, content_type, body, status, code, reason) in [
        ("traversal", "application/gzip", hostile("../x"), 422, "validation", "'../x' has a '..' component"),
        ("absolute", "application/gzip", hostile("/etc/cron.d/x"), 422, "validation", "is an absolute path"),
        ("truncated", "application/gzip", bytes[..bytes.len() / 2].to_vec(), 422, "validation", "truncated or corrupt"),
        (
            "no manifest",
            "application/gzip",
            pergola_core::testing::archive(&[("x", b"", 0o644)]),
            422,
            "validation",
            "no pergola.toml",
        ),
        (
            "bad manifest",
            "application/gzip",
            archive("[[component]]\nname = 1", &[]),
            422,
            "validation",
            "Invalid manifest, line 2: ",
        ),
        ("not zstd", "application/zstd", bytes.clone(), 422, "validation", "truncated or corrupt"),
        (
            "a zip",
            "application/zip",
            bytes.clone(),
            415,
            "unsupported-media-type",
            "application/gzip or application/zstd",
        ),
        ("no type", "", bytes.clone(), 415, "unsupported-media-type", "(the Content-Type was none)"),
        ("text", "text/plain", b"hello".to_vec(), 415, "unsupported-media-type", "'text/plain'"),
    ] {
        let r = api.upload(BUILDS, &[p], content_type, body).await;
        assert_eq!(r.status, status, "{what}: {:#}", r.body);
        let body = problem(&r, status, code);
        assert!(body["detail"].as_str().unwrap().contains(reason), "{what}: {body:#}");
    }
    // By a server path: only when the server allows it (and then only for administrators).
    let workdir = std::env::temp_dir().display().to_string();
    let r = api.call("POST", BUILDS, &[p], "", Some(json!({"manifest": MANIFEST, "workdir": workdir}))).await;
    let body = problem(&r, 422, "validation");
    assert_eq!(body["field"], "workdir");
    assert!(body["detail"].as_str().unwrap().contains("PERGOLA_PATH_BUILDS"), "{body:#}");
    problem(&api.call("POST", BUILDS, &[p], "", Some(json!({"manifest": MANIFEST}))).await, 400, "malformed-request");
    let by_path = Api::start_with(env, &env.services.with_path_builds(true), "by-path").await;
    let r = by_path.call("POST", BUILDS, &[p], "", Some(json!({"manifest": MANIFEST, "workdir": workdir}))).await;
    assert_eq!((r.status, r.body["number"].as_i64(), r.body["digest"].is_null()), (201, Some(4), true), "{:#}", r.body);
    let r = by_path
        .call("POST", BUILDS, &[p], "", Some(json!({"manifest": "[[component]]\nname = 1", "workdir": workdir})))
        .await;
    assert!(problem(&r, 422, "validation")["detail"].as_str().unwrap().starts_with("Invalid manifest, line 2: "));
    problem(&api.upload(BUILDS, &["nope"], "application/gzip", bytes.clone()).await, 404, "not-found");
    assert_eq!(api.call("GET", BUILDS, &[p], "", None).await.body.as_array().unwrap().len(), 4, "refusals made none");
    problem(&api.call("GET", BUILDS, &["nope"], "", None).await, 404, "not-found");
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 1}))).await;
    assert_eq!((r.status, r.body["number"].as_i64(), r.body["build_number"].as_i64()), (201, Some(1), Some(1)));
    problem(&api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 7}))).await, 422, "validation");
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

    // Promotion from stage1 (PROD, build 1) to a new QA stage, compared first.
    api.call("POST", STAGES, &[p], "", Some(json!({"name": "QA", "type": "qa"}))).await;
    let r = api.call("GET", KUBERNETES, &[p, "qa"], "", None).await;
    assert!(problem(&r, 409, "invalid-state")["detail"].as_str().unwrap().contains("has no release yet"));
    api.call("PUT", CONFIG_KEY, &[p, "qa", "TOKEN"], "", Some(json!({"value": "s3cret", "secret": true}))).await;
    let r = api.call("GET", COMPARE, &[p, "stage1", "qa"], "", None).await;
    assert_eq!((r.status, r.body["build_differs"].as_bool()), (200, Some(true)));
    assert_eq!(r.body["components_added"][0]["name"], "web");
    assert_eq!(
        r.body["config"][0],
        json!({"key": "TOKEN", "from": null, "to": {"key": "TOKEN", "value": null, "secret": true}})
    );
    problem(&api.call("GET", COMPARE, &[p, "stage1", "nope"], "", None).await, 404, "not-found");
    let r = api.call("GET", PROMOTE, &[p, "stage1"], "", None).await;
    assert_eq!(r.body.as_array().unwrap().iter().map(|o| o["to"]["id"].as_str().unwrap()).collect::<Vec<_>>(), ["qa"]);
    problem(&api.call("GET", PROMOTE, &[p, "nope"], "", None).await, 404, "not-found");
    let r = api.call("POST", PROMOTE, &[p, "stage1"], "", Some(json!({"to": "qa"}))).await;
    assert_eq!(
        (r.status, r.body["build_number"].as_i64(), r.body["promoted_from"].as_str()),
        (201, Some(1), Some("stage1"))
    );
    assert_eq!(
        problem(&api.call("POST", PROMOTE, &[p, "qa"], "", Some(json!({"to": "qa"}))).await, 422, "validation")
            ["field"],
        "to"
    );
    problem(&api.call("POST", PROMOTE, &[p, "qa"], "", Some(json!({"to": "nope"}))).await, 404, "not-found");
    problem(&api.call("POST", PROMOTE, &[p, "qa"], "", Some(json!({}))).await, 400, "malformed-request");
    // Duplicated, with its build.
    let r = api.call("POST", DUPLICATE, &[p, "qa"], "", Some(json!({"name": "QA copy", "deploy": true}))).await;
    assert_eq!((r.status, r.body["id"].as_str(), r.body["stage_type"].as_str()), (201, Some("qa-copy"), Some("qa")));
    let r = api.call("GET", RELEASES, &[p, "qa-copy"], "", None).await;
    assert_eq!(r.body[0]["build_number"], 1);
    let r = api.call("POST", DUPLICATE, &[p, "qa"], "", Some(json!({"name": "QA copy"}))).await;
    assert_eq!(problem(&r, 409, "stage-id-taken")["suggestion"], "qa-copy-2");
    // Signed out: refused, and nothing changed.
    let anonymous = api.with_token(None);
    let before = api.call("GET", RELEASES, &[p, "qa"], "", None).await.body;
    problem(
        &anonymous.call("POST", PROMOTE, &[p, "stage1"], "", Some(json!({"to": "qa"}))).await,
        401,
        "unauthenticated",
    );
    problem(&anonymous.call("GET", COMPARE, &[p, "stage1", "qa"], "", None).await, 401, "unauthenticated");
    let r = anonymous.call("POST", DUPLICATE, &[p, "qa"], "", Some(json!({"name": "Stolen"}))).await;
    problem(&r, 401, "unauthenticated");
    assert_eq!(api.call("GET", RELEASES, &[p, "qa"], "", None).await.body, before);
    problem(&api.call("GET", STAGE, &[p, "stolen"], "", None).await, 404, "not-found");
    problem(
        &api.call("POST", DUPLICATE, &[p, "qa"], "", Some(json!({"name": "x", "id": "Bad ID"}))).await,
        422,
        "validation",
    );
    let r = api.call("POST", DUPLICATE, &[p, "qa"], "", Some(json!({"name": "QA data", "with_storage": true}))).await;
    assert!(problem(&r, 409, "invalid-state")["detail"].as_str().unwrap().starts_with("Suspend stage 'qa' first"));
    // What the current release is on Kubernetes: YAML, secret values redacted, plain ones shown.
    api.call("PUT", CONFIG_KEY, &[p, "stage1", "API_KEY"], "", Some(json!({"value": "k-s3cret", "secret": true})))
        .await;
    api.call("PUT", CONFIG_KEY, &[p, "stage1", "LOG"], "", Some(json!({"value": "debug"}))).await;
    assert_eq!(api.call("POST", REDEPLOY, &[p, "stage1", "2"], "", None).await.status, 201);
    let kubernetes = |stage: &str| {
        let url = format!("{}/api/v1/projects/{p}/stages/{stage}/kubernetes", api.base);
        let request = api.http.get(url);
        async move {
            let r = request.send().await.unwrap();
            let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
            (r.status().as_u16(), content_type, r.text().await.unwrap())
        }
    };
    let (status, content_type, yaml) = kubernetes("stage1").await;
    assert_eq!((status, content_type.as_str()), (200, "application/yaml; charset=utf-8"));
    for expected in [
        "---\napiVersion: \"scheduling.k8s.io/v1\"\n",
        "kind: \"Namespace\"",
        "name: \"config-r3\"",
        "API_KEY: \"<redacted>\"",
        "LOG: \"debug\"",
        "kind: \"Deployment\"",
        "replicas: 1\n",
        "command:\n            - \"/app/web\"\n",
        "containerPort: 8080",
        "kind: \"Service\"",
        "priorityClassName: \"pergola-prod\"",
    ] {
        assert!(yaml.contains(expected), "{expected} in:\n{yaml}");
    }
    assert!(!yaml.contains("k-s3cret"), "a secret value was opened:\n{yaml}");
    assert_eq!(yaml.matches("\n---\n").count() + 1, yaml.matches("apiVersion").count());
    problem(&api.call("GET", KUBERNETES, &[p, "nope"], "", None).await, 404, "not-found");
    problem(&api.with_token(None).call("GET", KUBERNETES, &[p, "stage1"], "", None).await, 401, "unauthenticated");

    // Suspended: nothing runs on the cluster either.
    assert_eq!(api.call("POST", SUSPEND, &[p, "qa"], "", None).await.status, 200);
    let (status, _, yaml) = kubernetes("qa").await;
    assert_eq!(status, 200);
    assert!(yaml.contains("replicas: 0\n") && !yaml.contains("replicas: 1"), "{yaml}");
    assert!(yaml.contains("TOKEN: \"<redacted>\"") && !yaml.contains("s3cret"), "{yaml}");

    // A release's build, downloaded: by a member who may deploy, or with a build-fetch token for
    // exactly that release (what a pod gets), which opens nothing else.
    let download = |api: &Api, number: &str| {
        let url = format!("{}/api/v1/projects/{p}/stages/stage1/releases/{number}/build", api.base);
        let request = api.http.get(url);
        async move {
            let r = request.send().await.unwrap();
            let headers = r.headers().clone();
            (r.status().as_u16(), headers, r.bytes().await.unwrap().to_vec())
        }
    };
    let unpacked = |bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut files: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut content).unwrap();
                (e.path().unwrap().display().to_string(), content)
            })
            .collect();
        files.sort();
        files
    };
    let (status, headers, bytes) = download(api, "3").await;
    assert_eq!(
        (status, &headers["content-type"]),
        (200, &"application/gzip".parse::<reqwest::header::HeaderValue>().unwrap())
    );
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"{p}-stage1-release-3.tar.gz\""));
    let files = unpacked(&bytes);
    assert_eq!(
        files,
        [
            ("pergola.toml".to_owned(), MANIFEST.as_bytes().to_vec()),
            ("web".to_owned(), b"#!/bin/sh\nexec sleep 1000\n".to_vec())
        ]
    );
    let token = env.services.build_fetch_token(p, "stage1", 3, chrono::Duration::minutes(15)).unwrap();
    assert!(token.starts_with("pgf_"), "{token}");
    let pod = api.with_token(Some(&token));
    let (status, _, bytes) = download(&pod, "3").await;
    assert_eq!((status, unpacked(&bytes)), (200, files));
    problem(&pod.call("GET", BUILD_DOWNLOAD, &[p, "stage1", "2"], "", None).await, 403, "forbidden");
    problem(&pod.call("GET", STAGE, &[p, "stage1"], "", None).await, 401, "unauthenticated");
    problem(&pod.call("GET", RELEASES, &[p, "stage1"], "", None).await, 401, "unauthenticated");
    problem(&pod.call("POST", SUSPEND, &[p, "stage1"], "", None).await, 401, "unauthenticated");
    // Altered, moved to another stage or made up: refused.
    let last = token.chars().last().unwrap();
    let altered = format!("{}{}", &token[..token.len() - 1], if last == '0' { '1' } else { '0' });
    let moved = token.replacen("/stage1/", "/qa/", 1);
    for forged in [altered.as_str(), moved.as_str(), "pgf_x/y/00", "pgf_", "pgf_a/b/zz"] {
        let r = api.with_token(Some(forged)).call("GET", BUILD_DOWNLOAD, &[p, "stage1", "3"], "", None).await;
        problem(&r, 401, "unauthenticated");
    }
    let moved_grant = api.with_token(Some(&moved)).call("GET", BUILD_DOWNLOAD, &[p, "qa", "1"], "", None).await;
    problem(&moved_grant, 401, "unauthenticated");
    problem(&api.call("GET", BUILD_DOWNLOAD, &[p, "stage1", "99"], "", None).await, 404, "not-found");
    api.refused_url("GET", BUILD_DOWNLOAD, &[p, "stage1", "9223372036854775808"], "").await;
    problem(
        &api.with_token(None).call("GET", BUILD_DOWNLOAD, &[p, "stage1", "3"], "", None).await,
        401,
        "unauthenticated",
    );
    // Clients that do not read hold the server's packers only so many at a time: one more is
    // told to come back, and once they go, downloads go on.
    // Larger than what the channel, the connection and the sockets hold between them.
    let big = archive(MANIFEST, &[("web", &noise(24 << 20), 0o755)]);
    let build = api.upload(BUILDS, &[p], "application/gzip", big).await.body["number"].as_i64().unwrap();
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": build}))).await;
    let big_release = r.body["number"].as_i64().unwrap().to_string();
    let url = format!("{}/api/v1/projects/{p}/stages/stage1/releases/{big_release}/build", api.base);
    let mut stalled = Vec::new();
    for _ in 0..pergola_core::services::DOWNLOADS_AT_ONCE {
        let r = api.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        stalled.push(r);
    }
    let r = api.call("GET", BUILD_DOWNLOAD, &[p, "stage1", &big_release], "", None).await;
    assert!(problem(&r, 429, "too-many-requests")["detail"].as_str().unwrap().contains("the most at once"));
    assert!(r.headers.contains_key("retry-after"));
    drop(stalled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _, bytes) = download(api, &big_release).await;
        if status == 200 {
            let files = unpacked(&bytes);
            assert_eq!(files[1].1.len(), 24 << 20, "the whole file");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stalled downloads never gave their places back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A build registered by a server directory is not served.
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 4}))).await;
    assert_eq!(r.status, 201);
    let number = r.body["number"].as_i64().unwrap().to_string();
    let r = api.call("GET", BUILD_DOWNLOAD, &[p, "stage1", &number], "", None).await;
    assert!(problem(&r, 409, "invalid-state")["detail"].as_str().unwrap().contains("only uploaded builds"));
    // The token ends.
    env.clock.advance(chrono::Duration::minutes(15));
    problem(&pod.call("GET", BUILD_DOWNLOAD, &[p, "stage1", "3"], "", None).await, 401, "unauthenticated");
}

/// Incompressible bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// POSTs to `path` over a plain connection, as the administrator: the head (with
/// `Content-Length: announced`, or chunked without it), then `body` (chunked: never
/// terminated) from another task, whose write errors are ignored — the server may answer and
/// close before it has read everything. Returns the answer's status and JSON body.
async fn raw_post(api: &Api, path: &str, content_type: &str, announced: Option<usize>, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api.base.strip_prefix("http://").unwrap().to_owned();
    let token = api.token.clone();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let length = match announced {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: {content_type}\r\n{length}\r\n"
    );
    let body = body.to_vec();
    let chunked = announced.is_none();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 << 10) {
            if chunked {
                write.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                write.write_all(chunk).await?;
                write.write_all(b"\r\n").await?;
            } else {
                write.write_all(chunk).await?;
            }
        }
        // Never more, never the end: the connection stays open until the server answers.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(write)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let status_and_body = loop {
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(10), read.read(&mut buf)).await.unwrap().unwrap_or(0);
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().unwrap())
            });
            if length.is_some_and(|l| rest.len() >= l) {
                let body = serde_json::from_str(&rest[..length.unwrap()]).unwrap_or(Value::String(rest.to_owned()));
                break (status, body);
            }
        }
        assert!(n > 0, "the connection closed before a whole answer: {text}");
    };
    writer.abort();
    status_and_body
}

/// The upload's own size limit, through the guard: over it, 413 before reading (announced
/// length) or as soon as the stream passes it; under it, past the REST API's 2 MiB.
async fn uploads_and_their_limit(api: &Api, env: &Env) {
    use pergola_core::artifacts::{ArtifactLimits, Artifacts};
    let p = project_with(api, &[STAGE1]).await;
    // 3 MiB on the wire: more than the guard's 2 MiB for other bodies.
    let big = archive(MANIFEST, &[("blob", &noise(3 << 20), 0o644)]);
    assert!(big.len() > pergola_api::guard::BODY_LIMIT);
    let r = api.upload(BUILDS, &[p], "application/gzip", big.clone()).await;
    assert_eq!((r.status, r.body["size"].as_u64()), (201, Some(big.len() as u64)), "{:#}", r.body);
    // A JSON body on the same route keeps the 2 MiB limit (announced: refused by the guard).
    let (status, _) =
        raw_post(api, &format!("/api/v1/projects/{p}/builds"), "application/json", Some(3 << 20), &[]).await;
    assert_eq!(status, 413);
    // A server taking 1 MiB at most.
    let limits = ArtifactLimits { max_archive_bytes: 1 << 20, ..ArtifactLimits::default() };
    let small =
        Api::start_with(env, &env.services.with_artifacts(Artifacts::new(&env.artifacts, limits)), "small").await;
    let path = format!("/api/v1/projects/{p}/builds");
    // Announced over it: refused before anything is read.
    let (status, body) = raw_post(&small, &path, "application/gzip", Some(big.len()), &[]).await;
    let r = Reply { status, body, location: None, headers: Default::default() };
    small.check_schema("POST", BUILDS, 413, "application/problem+json", &r.body);
    let body = problem(&r, 413, "too-large");
    assert!(body["detail"].as_str().unwrap().contains("(1 MiB, PERGOLA_MAX_ARTIFACT_MB)"), "{body:#}");
    // A client that sends it all anyway gets the answer too (the server reads on for a while).
    let r = small.upload(BUILDS, &[p], "application/gzip", big.clone()).await;
    problem(&r, 413, "too-large");
    // Streamed without a length (chunked) and never ending: refused as soon as it passes the
    // limit — one byte past it is sent.
    let (status, body) = raw_post(&small, &path, "application/gzip", None, &big[..(1 << 20) + 1]).await;
    let r = Reply { status, body, location: None, headers: Default::default() };
    small.check_schema("POST", BUILDS, 413, "application/problem+json", &r.body);
    problem(&r, 413, "too-large");
    // Under the limit, the small server takes it.
    let r = small.upload(BUILDS, &[p], "application/zstd", zstd::encode_all(&b""[..], 1).unwrap()).await;
    problem(&r, 422, "validation");
    let r = small.upload(BUILDS, &[p], "application/gzip", archive(MANIFEST, &[])).await;
    assert_eq!((r.status, r.body["number"].as_i64()), (201, Some(2)));
    // Nothing of the refused ones is left.
    let tmp = env.artifacts.join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0, "temp files left in {}", tmp.display());
    assert_eq!(api.call("GET", BUILDS, &[p], "", None).await.body.as_array().unwrap().len(), 2);
}

/// What runs (this server has no runtime: a deployed release has no running components).
async fn components_and_logs(api: &Api, _env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    let r = api.upload(BUILDS, &[p], "application/gzip", archive(MANIFEST, &[])).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let r = api.call("POST", RELEASES, &[p, "stage1"], "", Some(json!({"build": 1}))).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    assert_eq!(api.call("GET", COMPONENTS, &[p, "stage1"], "", None).await.body, json!([]));
    problem(&api.call("GET", COMPONENTS, &[p, "nope"], "", None).await, 404, "not-found");
    assert_eq!(api.call("GET", LOGS, &[p, "stage1", "web"], "", None).await.body, json!([]));
    problem(&api.call("GET", LOGS, &[p, "nope", "web"], "", None).await, 404, "not-found");
}

/// An open server-sent events stream: its content type checked against the document, the
/// operation recorded as exercised.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Api {
    async fn open_stream(&self, template: &str, args: &[&str]) -> Events {
        let mut path = template.to_owned();
        for arg in args {
            let start = path.find('{').unwrap();
            let end = path[start..].find('}').unwrap() + start;
            path.replace_range(start..=end, arg);
        }
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let documented = &self.doc["paths"][template]["get"]["responses"]["200"]["content"]["text/event-stream"];
        assert!(documented.is_object(), "GET {template} does not document its event stream");
        self.seen.lock().unwrap().insert(("get".to_owned(), template.to_owned()));
        Events { response, buffer: String::new() }
    }
}

impl Events {
    /// The next event's name (keep-alive comments skipped), if one comes within `within`.
    async fn next(&mut self, within: std::time::Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(name) = block.lines().find_map(|l| l.strip_prefix("event: ").or(l.strip_prefix("event:"))) {
                    return Some(name.trim().to_owned());
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

/// The live streams: `ready` at once, a `change` within a second of a change made by anyone
/// (here: another client), nothing for another stage; outsiders and strangers get no stream.
async fn live_streams(api: &Api, env: &Env) {
    let second = std::time::Duration::from_secs(1);
    let p = project_with(api, &[STAGE1, ("QA", "qa", "qa-stage")]).await;
    let mut project = api.open_stream(PROJECT_CHANGES, &[p]).await;
    let mut stage = api.open_stream(STAGE_CHANGES, &[p, "stage1"]).await;
    let mut other = api.open_stream(STAGE_CHANGES, &[p, "qa-stage"]).await;
    for s in [&mut project, &mut stage, &mut other] {
        assert_eq!(s.next(second).await.as_deref(), Some("ready"));
    }
    assert_eq!(api.call("POST", SUSPEND, &[p, "stage1"], "", None).await.status, 200);
    assert_eq!(project.next(second).await.as_deref(), Some("change"));
    assert_eq!(stage.next(second).await.as_deref(), Some("change"));
    assert_eq!(other.next(std::time::Duration::from_millis(700)).await, None, "another stage's page hears nothing");
    // Unknown, hidden and signed out: the usual answers, no stream.
    problem(&api.call("GET", STAGE_CHANGES, &[p, "nope"], "", None).await, 404, "not-found");
    problem(&api.call("GET", PROJECT_CHANGES, &["nope"], "", None).await, 404, "not-found");
    let outsider = env.services.acting(env.user("olga").await);
    let token = outsider.create_token("olga", None, None).await.unwrap().token;
    problem(&api.with_token(Some(&token)).call("GET", PROJECT_CHANGES, &[p], "", None).await, 404, "not-found");
    problem(&api.with_token(None).call("GET", STAGE_CHANGES, &[p, "stage1"], "", None).await, 401, "unauthenticated");
    // The server stopping ends the streams.
    env.services.close_live_streams();
    assert_eq!(project.next(second).await, None);
    assert!(project.response.chunk().await.map(|c| c.is_none()).unwrap_or(true), "the stream has ended");
}

/// A component's logs with `since`, `tail`, `after`, `format` and `follow`: bad values are 400
/// with what to write; a followed component that is not running ends the stream after a while.
async fn log_queries(api: &Api, _env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    for bad in ["?tail=0", "?tail=many", "?since=yesterday", "?follow=yes", "?format=xml", "?after=-1"] {
        let r = api.call("GET", LOGS, &[p, "stage1", "web"], bad, None).await;
        problem(&r, 400, "malformed-request");
    }
    assert_eq!(api.call("GET", LOGS, &[p, "stage1", "web"], "?since=10m&tail=5", None).await.body, json!([]));
    let text = api.http.get(format!("{}/api/v1/projects/{p}/stages/stage1/components/web/logs?format=text", api.base));
    let text = text.send().await.unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(text.text().await.unwrap(), "");
    // Nothing runs here (no runtime): a follower is told nothing and let go after 5 s.
    let started = std::time::Instant::now();
    let url = format!("{}/api/v1/projects/{p}/stages/stage1/components/web/logs?follow=true", api.base);
    let followed = api.http.get(url).send().await.unwrap();
    assert_eq!(followed.headers()["content-type"], "application/x-ndjson");
    assert_eq!(followed.text().await.unwrap(), "");
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(4) && took < std::time::Duration::from_secs(15), "{took:?}");
    problem(&api.call("GET", LOGS, &[p, "nope", "web"], "?follow=true", None).await, 404, "not-found");
}

/// A stage's metrics (what the proxy forwarded is counted; nothing runs here, so no CPU), and
/// `/metrics` for administrators only.
async fn metrics(api: &Api, env: &Env) {
    let p = project_with(api, &[STAGE1]).await;
    env.services.sample_metrics().await;
    env.services.record_proxied(p, "stage1", "web", 200, 12.0);
    env.services.record_proxied(p, "stage1", "web", 503, 40.0);
    env.clock.advance(Duration::seconds(10));
    env.services.sample_metrics().await;
    for window in ["", "?window=1h", "?window=24h"] {
        let r = api.call("GET", METRICS, &[p, "stage1"], window, None).await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        let points = &r.body["components"][0]["points"];
        assert_eq!(r.body["components"][0]["component"], "web");
        assert_eq!((points[0]["requests"].as_u64(), points[0]["errors"].as_u64()), (Some(2), Some(1)), "{:#}", r.body);
    }
    problem(&api.call("GET", METRICS, &[p, "stage1"], "?window=7d", None).await, 400, "malformed-request");
    problem(&api.call("GET", METRICS, &[p, "nope"], "", None).await, 404, "not-found");

    let scrape = |token: Option<String>| {
        let req = reqwest::Client::new().get(format!("{}/metrics", api.base));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send()
    };
    let text = scrape(Some(api.token.clone())).await.unwrap();
    assert_eq!(text.status(), 200);
    assert!(text.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = text.text().await.unwrap();
    assert!(
        text.contains(&format!("pergola_proxy_errors_total{{project=\"{p}\",stage=\"stage1\",component=\"web\"}} 1\n")),
        "{text}"
    );
    assert!(text.contains("# TYPE pergola_uptime_seconds gauge\n"));
    let member = env.member("mia", p, pergola_domain::Role::Owner).await;
    let token = member.create_token("mia", None, None).await.unwrap().token;
    assert_eq!(scrape(Some(token)).await.unwrap().status(), 403, "owners of a project are not administrators");
    assert_eq!(scrape(None).await.unwrap().status(), 401);
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
    // Resource limits per stage type.
    let defaults = api.call("GET", LIMITS, &[], "", None).await.body;
    assert_eq!(
        defaults["prod"],
        json!({"memory_mib": 2048, "processes": 512, "open_files": 4096, "cpu_nice": 0, "oom_score_adj": 0})
    );
    assert_eq!(defaults["dev"]["oom_score_adj"], 800);
    let mut wanted = defaults.clone();
    wanted["dev"]["memory_mib"] = json!(256);
    wanted["qa"]["cpu_nice"] = json!(19);
    let r = api.call("PUT", LIMITS, &[], "", Some(wanted.clone())).await;
    assert_eq!((r.status, &r.body), (200, &wanted));
    let mut bad = wanted.clone();
    bad["prod"]["cpu_nice"] = json!(20);
    let r = api.call("PUT", LIMITS, &[], "", Some(bad)).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "limits_prod_cpu_nice");
    let mut bad = wanted.clone();
    bad["dev"]["processes"] = json!(-1);
    assert_eq!(
        problem(&api.call("PUT", LIMITS, &[], "", Some(bad)).await, 422, "validation")["field"],
        "limits_dev_processes"
    );
    let mut bad = wanted.clone();
    bad["dev"]["open_files"] = json!("many");
    problem(&api.call("PUT", LIMITS, &[], "", Some(bad)).await, 400, "malformed-request");
    problem(&api.call("PUT", LIMITS, &[], "", Some(json!({"dev": wanted["dev"]}))).await, 400, "malformed-request");
    assert_eq!(api.call("GET", LIMITS, &[], "", None).await.body, wanted, "refusals changed nothing");
    // This test server runs nothing: there is no isolation to report.
    problem(&api.call("GET", ISOLATION, &[], "", None).await, 404, "not-found");
}

async fn unknown_routes(api: &Api, _env: &Env) {
    // Unknown API routes answer with a problem too.
    let res = api.http.get(format!("{}/api/v1/nothing-here", api.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// Signing in for a token, who am I, tokens, users, members and the project's activity.
async fn access(api: &Api, env: &Env) {
    use pergola_core::testing::ADMIN_PASSWORD;
    let anonymous = api.with_token(None);
    // Signed out: 401 with the scheme to use, on every route but login.
    let r = anonymous.call("GET", PROJECTS, &[], "", None).await;
    problem(&r, 401, "unauthenticated");
    let res = reqwest::get(format!("{}/api/v1/projects", api.base)).await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    // Login: a token for the CLI; a wrong password never says whether the user exists.
    let r = anonymous
        .call(
            "POST",
            LOGIN,
            &[],
            "",
            Some(json!({"username": "Admin", "password": ADMIN_PASSWORD, "token_name": "laptop"})),
        )
        .await;
    assert_eq!((r.status, r.body["name"].as_str()), (201, Some("laptop")), "{:#}", r.body);
    let laptop = r.body["token"].as_str().unwrap().to_owned();
    assert!(laptop.starts_with("pgt_"));
    let me = api.with_token(Some(&laptop)).call("GET", WHOAMI, &[], "", None).await;
    assert_eq!(me.body, json!({"username": "admin", "is_admin": true, "token": "laptop"}));
    let wrong =
        anonymous.call("POST", LOGIN, &[], "", Some(json!({"username": "admin", "password": "nope-nope-nope"}))).await;
    let unknown =
        anonymous.call("POST", LOGIN, &[], "", Some(json!({"username": "nobody", "password": "nope-nope-nope"}))).await;
    assert_eq!(problem(&wrong, 401, "unauthenticated")["detail"], problem(&unknown, 401, "unauthenticated")["detail"]);

    // Throttle: after 5 failures for one username from one address, even the right password
    // gets 429 with Retry-After, until the window passes.
    for _ in 0..4 {
        let r = anonymous
            .call("POST", LOGIN, &[], "", Some(json!({"username": "admin", "password": "wrong-password"})))
            .await;
        problem(&r, 401, "unauthenticated");
    }
    let right = json!({"username": "admin", "password": ADMIN_PASSWORD});
    let res = anonymous.http.post(format!("{}{LOGIN}", api.base)).json(&right).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    problem(&anonymous.call("POST", LOGIN, &[], "", Some(right.clone())).await, 429, "too-many-requests");
    env.clock.advance(Duration::seconds(wait));
    assert_eq!(anonymous.call("POST", LOGIN, &[], "", Some(right)).await.status, 201);

    // Tokens: listed with their last use (never their value), revoked at once.
    let r = api.call("POST", TOKENS, &[], "", Some(json!({"name": "ci", "expires_in_days": 30}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "your_password", "a token alone makes no token");
    let r = api.call("POST", TOKENS, &[], "", Some(confirmed(json!({"name": "ci", "expires_in_days": 30})))).await;
    assert_eq!(r.status, 201);
    let ci = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(time(&r.body["expires_at"]), pergola_core::Clock::now(&env.clock) + Duration::days(30));
    let taken = api.call("POST", TOKENS, &[], "", Some(confirmed(json!({"name": "ci"})))).await;
    assert_eq!(problem(&taken, 422, "validation")["field"], "name");
    problem(&api.call("POST", TOKENS, &[], "", Some(json!({"name": "a b"}))).await, 422, "validation");
    problem(
        &api.call("POST", TOKENS, &[], "", Some(json!({"name": "x", "expires_in_days": 0}))).await,
        422,
        "validation",
    );
    let as_ci = api.with_token(Some(&ci));
    assert_eq!(as_ci.call("GET", PROJECTS, &[], "", None).await.status, 200);
    let listed = api.call("GET", TOKENS, &[], "", None).await.body;
    let ci_row = listed.as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap().clone();
    assert!(ci_row.get("token").is_none() && ci_row["last_used_at"].is_string(), "{ci_row:#}");
    assert_eq!(api.call("DELETE", TOKEN, &["ci"], "", None).await.status, 204);
    problem(&as_ci.call("GET", PROJECTS, &[], "", None).await, 401, "unauthenticated");
    problem(&api.call("DELETE", TOKEN, &["ci"], "", None).await, 404, "not-found");
    // An expired token stops working.
    let r = api.call("POST", TOKENS, &[], "", Some(confirmed(json!({"name": "day", "expires_in_days": 1})))).await;
    let day = api.with_token(Some(r.body["token"].as_str().unwrap()));
    env.clock.advance(Duration::days(1));
    problem(&day.call("GET", PROJECTS, &[], "", None).await, 401, "unauthenticated");

    // Users: created by an administrator; a disabled user's tokens stop at once.
    let r = api
        .call("POST", USERS, &[], "", Some(confirmed(json!({"username": "Alice", "password": "alice-password"}))))
        .await;
    assert_eq!(
        (r.status, r.body["username"].as_str(), r.body["is_admin"].as_bool()),
        (201, Some("alice"), Some(false))
    );
    problem(
        &api.call("POST", USERS, &[], "", Some(confirmed(json!({"username": "alice", "password": "another-one"}))))
            .await,
        422,
        "validation",
    );
    problem(
        &api.call("POST", USERS, &[], "", Some(confirmed(json!({"username": "bob", "password": "short"})))).await,
        422,
        "validation",
    );
    // A token alone makes no user: without the administrator's own password, 422 on `your_password`.
    let r = api.call("POST", USERS, &[], "", Some(json!({"username": "eve", "password": "eves-password-1"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "your_password");
    let login = json!({"username": "alice", "password": "alice-password"});
    let alice_token =
        anonymous.call("POST", LOGIN, &[], "", Some(login)).await.body["token"].as_str().unwrap().to_owned();
    let alice = api.with_token(Some(&alice_token));
    problem(&alice.call("GET", USERS, &[], "", None).await, 403, "forbidden");
    problem(&alice.call("POST", PROJECTS, &[], "", Some(json!({"name": "Mine"}))).await, 403, "forbidden");
    let users = api.call("GET", USERS, &[], "", None).await.body;
    let names: Vec<_> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "alice"]);
    problem(&api.call("PATCH", USER, &["admin"], "", Some(json!({"disabled": true}))).await, 409, "invalid-state");
    problem(&api.call("PATCH", USER, &["nobody"], "", Some(json!({"disabled": true}))).await, 404, "not-found");

    // Members: an owner's business; an outsider cannot even see the project.
    let p = project_with(api, &[("Dev", "dev", "dev")]).await;
    problem(&alice.call("GET", PROJECT, &[p], "", None).await, 404, "not-found");
    assert!(alice.call("GET", PROJECTS, &[], "", None).await.body.as_array().unwrap().is_empty());
    // Through a token, adding a member needs the caller's own password too.
    let r = api.call("POST", MEMBERS, &[p], "", Some(json!({"username": "alice", "role": "viewer"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "your_password");
    assert!(alice.call("GET", PROJECT, &[p], "", None).await.status == 404, "not added");
    let r = api.call("POST", MEMBERS, &[p], "", Some(confirmed(json!({"username": "alice", "role": "viewer"})))).await;
    assert_eq!((r.status, r.body["role"].as_str()), (200, Some("viewer")));
    problem(
        &api.call("POST", MEMBERS, &[p], "", Some(json!({"username": "alice", "role": "boss"}))).await,
        400,
        "malformed-request",
    );
    problem(
        &api.call("POST", MEMBERS, &[p], "", Some(json!({"username": "nobody", "role": "viewer"}))).await,
        422,
        "validation",
    );
    assert_eq!(alice.call("GET", PROJECT, &[p], "", None).await.status, 200);
    let r = alice.call("POST", STAGES, &[p], "", Some(json!({"name": "QA", "type": "qa"}))).await;
    let detail = problem(&r, 403, "forbidden")["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("developer") && detail.contains("you are a viewer"), "{detail}");
    let members = api.call("GET", MEMBERS, &[p], "", None).await.body;
    let roles: Vec<_> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("admin", "owner"), ("alice", "viewer")]);
    assert_eq!(api.call("DELETE", MEMBER, &[p, "alice"], "", None).await.status, 204);
    problem(&api.call("DELETE", MEMBER, &[p, "alice"], "", None).await, 404, "not-found");
    problem(&alice.call("GET", PROJECT, &[p], "", None).await, 404, "not-found");

    // The activity names who did what, filtered.
    let events = api.call("GET", PROJECT_EVENTS, &[p], "", None).await.body;
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds[0], ("admin (token api-tests)", "member.removed"));
    assert!(kinds.contains(&("admin (token api-tests)", "stage.created")), "{kinds:?}");
    problem(&api.call("GET", PROJECT_EVENTS, &[p], "?limit=0", None).await, 422, "validation");
    api.refused_url("GET", PROJECT_EVENTS, &[p], "?limit=many").await;
    let only = api.call("GET", PROJECT_EVENTS, &[p], "?kind=member.added&limit=5", None).await.body;
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert!(only[0]["message"].as_str().unwrap().contains("'alice' added as viewer"), "{only:#}");

    let r =
        alice.call("PUT", PASSWORD, &[], "", Some(json!({"current": "wrong-one!", "new": "alice-password-2"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "current");
    assert_eq!(
        alice
            .call("PUT", PASSWORD, &[], "", Some(json!({"current": "alice-password", "new": "alice-password-2"})))
            .await
            .status,
        204
    );
    let r = api.call("PATCH", USER, &["alice"], "", Some(json!({"disabled": true}))).await;
    assert_eq!(r.body["disabled"], true);
    problem(&alice.call("GET", WHOAMI, &[], "", None).await, 401, "unauthenticated");

    // Invitations: administrators only; the link works once.
    let r = api.call("POST", INVITATIONS, &[], "", Some(confirmed(json!({"project": p, "role": "developer"})))).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let link = r.body["link"].as_str().unwrap().to_owned();
    assert!(link.starts_with("/invite/pgi_"), "{link}");
    problem(&api.call("POST", INVITATIONS, &[], "", Some(json!({"project": p}))).await, 422, "validation");
    problem(
        &api.call("POST", INVITATIONS, &[], "", Some(json!({"project": "nope", "role": "viewer"}))).await,
        404,
        "not-found",
    );
    let open_ones = api.call("GET", INVITATIONS, &[], "", None).await.body;
    assert_eq!(open_ones.as_array().unwrap().len(), 1);
    assert!(open_ones[0].get("link").is_none());
    let secret = link.trim_start_matches("/invite/");
    let joined = env.services.accept_invitation(secret, "carol", "carol-password", None).await.unwrap();
    assert_eq!(joined.caller.username, "carol");
    assert!(env.services.accept_invitation(secret, "dave", "dave-password", None).await.is_err(), "used once");
    assert!(api.call("GET", INVITATIONS, &[], "", None).await.body.as_array().unwrap().is_empty());
    let members = api.call("GET", MEMBERS, &[p], "", None).await.body;
    assert!(members.as_array().unwrap().iter().any(|m| m["username"] == "carol" && m["role"] == "developer"));

    // The dashboard's session cookie works on the API too, but a change it authenticates must
    // say where it comes from (a browser always does): without Origin or Sec-Fetch-Site, 403.
    let session = env.services.sign_in_session("admin", ADMIN_PASSWORD, "127.0.0.1").await.unwrap();
    let cookie = format!("pergola_session={}", session.secret);
    let plain = reqwest::Client::new();
    let url = format!("{}{PROJECTS}", api.base);
    let r = plain.get(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = json!({"name": "By cookie"});
    let r = plain.post(&url).header("cookie", &cookie).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403, "a cookie-authenticated change without Origin");
    let r = plain.post(&url).header("cookie", &cookie).header("origin", &api.base).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = plain.post(&url).header("cookie", "pergola_session=pgs_forged").json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "a forged cookie signs nobody in");
    // Sent twice — this server's, and one another host of the site set for a parent domain or
    // a narrower path (over plain http a share link's component can: to sign the visitor into
    // the attacker's account) — which is whose cannot be told: it signs nobody in.
    let planted = env.services.sign_in_session("carol", "carol-password", "127.0.0.1").await.unwrap();
    for twice in [
        vec![format!("pergola_session={}; pergola_session={}", planted.secret, session.secret)],
        vec![format!("pergola_session={}", session.secret), format!("pergola_session={}", planted.secret)],
    ] {
        let mut request = plain.get(format!("{}{WHOAMI}", api.base));
        for header in &twice {
            request = request.header("cookie", header);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), 401, "{twice:?}");
    }
    let r = plain.get(format!("{}{WHOAMI}", api.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["username"], "admin", "once, it signs in");
    // Over https the cookie is `__Host-pergola_session`, a name a browser takes only from the
    // dashboard's own host: the plain name signs nobody in there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https_base = format!("http://{}", listener.local_addr().unwrap());
    let https_api: axum::Router =
        pergola_api::router(env.services.clone(), pergola_api::auth::SessionCookie { secure: true });
    let https_api = https_api.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, https_api).await.unwrap() });
    for (cookie, status) in [
        (format!("pergola_session={}", session.secret), 401),
        (format!("__Host-pergola_session={}", session.secret), 200),
        (format!("__Host-pergola_session={0}; __Host-pergola_session={0}", session.secret), 401),
    ] {
        let r = plain.get(format!("{https_base}{WHOAMI}")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{cookie}");
    }
    // A page of another host of the site (a share link's app under the same domain) cannot use
    // the visitor's session in the background — to read, or to hold their live streams; a link
    // it follows to the dashboard is a navigation, signed in as ever.
    let changes = format!("{}/api/v1/projects/{p}/changes", api.base);
    let from = |target: &str, site: &str, mode: &str, dest: &str| {
        plain
            .get(target)
            .header("cookie", &cookie)
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", mode)
            .header("sec-fetch-dest", dest)
    };
    for (target, site, mode, dest) in [
        (&url, "same-site", "no-cors", "empty"),
        (&url, "cross-site", "cors", "empty"),
        (&changes, "same-site", "no-cors", "empty"),
        // A frame of another host's page is a navigation too, but not a visit.
        (&changes, "same-site", "navigate", "iframe"),
    ] {
        let r = from(target, site, mode, dest).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{target} from a {site} page ({mode}, {dest})");
    }
    let prefetch = from(&url, "same-site", "navigate", "document").header("sec-purpose", "prefetch");
    assert_eq!(prefetch.send().await.unwrap().status().as_u16(), 401, "a prefetch");
    for (site, mode, dest) in
        [("same-origin", "cors", "empty"), ("same-site", "navigate", "document"), ("none", "navigate", "document")]
    {
        let r = from(&url, site, mode, dest).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{site}, {mode}, {dest}");
    }

    // Logout revokes the token it is called with.
    let laptop_api = api.with_token(Some(&laptop));
    assert_eq!(laptop_api.call("POST", LOGOUT, &[], "", None).await.status, 204);
    problem(&laptop_api.call("GET", WHOAMI, &[], "", None).await, 401, "unauthenticated");
}

/// One request of the permission matrix: what it asks for, and what it needs (`None`: any
/// signed-in user).
struct Case {
    method: &'static str,
    template: &'static str,
    args: Vec<String>,
    body: Option<Value>,
    needs: Option<(pergola_domain::Action, Option<pergola_domain::StageType>)>,
}

/// What the administrator reads to tell whether a refused request changed anything.
async fn everything(api: &Api, p: &str) -> Value {
    let mut all = Vec::new();
    for (template, args, query) in [
        (PROJECTS, vec![], ""),
        (USERS, vec![], ""),
        (INVITATIONS, vec![], ""),
        (RETENTION, vec![], ""),
        (LIMITS, vec![], ""),
        (STAGES, vec![p], ""),
        (STAGES, vec![p], "?archived=true"),
        (BUILDS, vec![p], ""),
        (MEMBERS, vec![p], ""),
        (PROJECT_EVENTS, vec![p], "?limit=500"),
        (CONFIG, vec![p, "dev"], ""),
        (CONFIG, vec![p, "prod"], ""),
        (RELEASES, vec![p, "dev"], ""),
        (RELEASES, vec![p, "prod"], ""),
    ] {
        let r = api.call("GET", template, &args, query, None).await;
        assert_eq!(r.status, 200, "{template}");
        all.push(r.body);
    }
    Value::Array(all)
}

/// The permission table, route by route: every REST route that touches a project or the
/// instance, called by every role, an outsider, an administrator, nobody and a revoked token,
/// gets exactly the answer `pergola_domain::decide` gives — 2xx (or a refusal of the request
/// itself, never 401/403/404), 403 naming the role, or 404 for a project the caller may not
/// see — and a refused request changes nothing.
async fn permissions(api: &Api, _env: &Env) {
    use pergola_domain::{decide, Action as A, Actor, Decision, Role, StageType as T};
    let p = project_with(api, &[("Dev", "dev", "dev"), ("Prod", "prod", "prod"), ("Old Dev", "dev", "old-dev")]).await;
    api.call("POST", STAGES, &[p], "", Some(json!({"name": "Old Prod", "type": "prod", "id": "old-prod"}))).await;
    let r = api.upload(BUILDS, &[p], "application/gzip", archive(MANIFEST, &[])).await;
    assert_eq!(r.status, 201);
    for stage in ["dev", "prod"] {
        api.call("POST", RELEASES, &[p, stage], "", Some(json!({"build": 1}))).await;
        api.call("PUT", CONFIG_KEY, &[p, stage, "LOG_LEVEL"], "", Some(json!({"value": "info"}))).await;
    }
    for stage in ["old-dev", "old-prod"] {
        assert_eq!(api.call("DELETE", STAGE, &[p, stage], "", None).await.status, 200);
    }
    let spare = json!({"username": "spare", "password": "spare-password"});
    api.call("POST", USERS, &[], "", Some(confirmed(spare))).await;
    api.call("POST", MEMBERS, &[p], "", Some(confirmed(json!({"username": "spare", "role": "viewer"})))).await;

    // Who asks: each role, an outsider and an administrator, with their own tokens.
    let mut actors: Vec<(String, Actor, Api)> = vec![("admin".into(), Actor::admin(), api.with_token(None))];
    actors[0].2 = Api {
        http: api.http.clone(),
        base: api.base.clone(),
        doc: api.doc.clone(),
        seen: api.seen.clone(),
        token: api.token.clone(),
    };
    let outsider_and_roles = std::iter::once(None).chain(Role::ALL.into_iter().map(Some));
    for role in outsider_and_roles {
        let name = role.map_or("outsider".to_owned(), |r| r.as_str().to_owned());
        let body = json!({"username": name, "password": "password-of-someone"});
        assert_eq!(api.call("POST", USERS, &[], "", Some(confirmed(body.clone()))).await.status, 201);
        if let Some(role) = role {
            let member = json!({"username": name, "role": role.as_str()});
            api.call("POST", MEMBERS, &[p], "", Some(confirmed(member))).await;
        }
        let token = api.with_token(None).call("POST", LOGIN, &[], "", Some(body)).await.body["token"].clone();
        let actor = role.map_or(Actor::non_member(), Actor::member);
        actors.push((name, actor, api.with_token(token.as_str())));
    }

    let s = |v: &str| v.to_owned();
    let stage_cases = |t: T, id: &str| {
        vec![
            Case {
                method: "GET",
                template: STAGE,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "GET",
                template: CONFIG,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "GET",
                template: RELEASES,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "GET",
                template: COMPONENTS,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "GET",
                template: LOGS,
                args: vec![s(p), s(id), s("web")],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "GET",
                template: EVENTS,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ReadStage, None)),
            },
            Case {
                method: "PATCH",
                template: STAGE,
                args: vec![s(p), s(id)],
                body: Some(json!({"grace_secs": 30})),
                needs: Some((A::UpdateStage, Some(t))),
            },
            Case {
                method: "PUT",
                template: CONFIG_KEY,
                args: vec![s(p), s(id), s("LOG_LEVEL")],
                body: Some(json!({"value": "debug"})),
                needs: Some((A::ConfigureStage, Some(t))),
            },
            Case {
                method: "DELETE",
                template: CONFIG_KEY,
                args: vec![s(p), s(id), s("LOG_LEVEL")],
                body: None,
                needs: Some((A::ConfigureStage, Some(t))),
            },
            Case {
                method: "POST",
                template: RELEASES,
                args: vec![s(p), s(id)],
                body: Some(json!({"build": 1})),
                needs: Some((A::Deploy, Some(t))),
            },
            Case {
                method: "POST",
                template: REDEPLOY,
                args: vec![s(p), s(id), s("1")],
                body: None,
                needs: Some((A::Deploy, Some(t))),
            },
            Case {
                method: "POST",
                template: SUSPEND,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::SuspendStage, Some(t))),
            },
            Case {
                method: "POST",
                template: RESUME,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::ResumeStage, Some(t))),
            },
            Case {
                method: "DELETE",
                template: STAGE,
                args: vec![s(p), s(id)],
                body: None,
                needs: Some((A::DeleteStage, Some(t))),
            },
            Case {
                method: "POST",
                template: RESTORE,
                args: vec![s(p), format!("old-{id}")],
                body: None,
                needs: Some((A::RestoreStage, Some(t))),
            },
        ]
    };
    for (n, (name, actor, as_actor)) in actors.iter().enumerate() {
        let mut cases = vec![
            Case { method: "GET", template: PROJECTS, args: vec![], body: None, needs: None },
            Case { method: "GET", template: RETENTION, args: vec![], body: None, needs: None },
            Case { method: "GET", template: LIMITS, args: vec![], body: None, needs: None },
            Case {
                method: "GET",
                template: PROJECT,
                args: vec![s(p)],
                body: None,
                needs: Some((A::ReadProject, None)),
            },
            Case { method: "GET", template: STAGES, args: vec![s(p)], body: None, needs: Some((A::ReadProject, None)) },
            Case {
                method: "GET",
                template: STAGE_ID,
                args: vec![s(p), s("free")],
                body: None,
                needs: Some((A::ReadProject, None)),
            },
            Case { method: "GET", template: BUILDS, args: vec![s(p)], body: None, needs: Some((A::ReadProject, None)) },
            Case {
                method: "GET",
                template: MEMBERS,
                args: vec![s(p)],
                body: None,
                needs: Some((A::ReadProject, None)),
            },
            Case {
                method: "GET",
                template: PROJECT_EVENTS,
                args: vec![s(p)],
                body: None,
                needs: Some((A::ViewActivity, None)),
            },
            Case {
                method: "POST",
                template: STAGES,
                args: vec![s(p)],
                body: Some(json!({"name": format!("dev {n}"), "type": "dev"})),
                needs: Some((A::CreateStage, Some(T::Dev))),
            },
            Case {
                method: "POST",
                template: STAGES,
                args: vec![s(p)],
                body: Some(json!({"name": format!("prod {n}"), "type": "prod"})),
                needs: Some((A::CreateStage, Some(T::Prod))),
            },
            Case {
                method: "POST",
                template: BUILDS,
                args: vec![s(p)],
                // Sent as an archive (see below).
                body: None,
                needs: Some((A::RegisterBuild, None)),
            },
            Case {
                method: "POST",
                template: MEMBERS,
                args: vec![s(p)],
                body: Some(json!({"username": "spare", "role": "viewer"})),
                needs: Some((A::ManageMembers, None)),
            },
            Case {
                method: "DELETE",
                template: MEMBER,
                args: vec![s(p), s("spare")],
                body: None,
                needs: Some((A::ManageMembers, None)),
            },
            Case {
                method: "POST",
                template: PROJECTS,
                args: vec![],
                body: Some(json!({"name": format!("Project {n}")})),
                needs: Some((A::CreateProject, None)),
            },
            Case { method: "GET", template: USERS, args: vec![], body: None, needs: Some((A::AdministerUsers, None)) },
            Case {
                method: "GET",
                template: INVITATIONS,
                args: vec![],
                body: None,
                needs: Some((A::AdministerUsers, None)),
            },
            Case {
                method: "POST",
                template: INVITATIONS,
                args: vec![],
                body: Some(confirmed(json!({}))),
                needs: Some((A::AdministerUsers, None)),
            },
            Case {
                method: "POST",
                template: USERS,
                args: vec![],
                body: Some(confirmed(json!({"username": format!("new{n}"), "password": "password-of-new"}))),
                needs: Some((A::AdministerUsers, None)),
            },
            Case {
                method: "PATCH",
                template: USER,
                args: vec![s("spare")],
                body: Some(json!({"admin": false})),
                needs: Some((A::AdministerUsers, None)),
            },
            Case {
                method: "PUT",
                template: RETENTION,
                args: vec![],
                body: Some(json!({"dev_days": 1, "qa_days": 7, "prod_days": 30})),
                needs: Some((A::AdministerPolicies, None)),
            },
            Case {
                method: "PUT",
                template: LIMITS,
                args: vec![],
                body: Some(serde_json::to_value(pergola_domain::LimitsPolicy::default()).unwrap()),
                needs: Some((A::AdministerPolicies, None)),
            },
        ];
        cases.extend(stage_cases(T::Dev, "dev"));
        cases.extend(stage_cases(T::Prod, "prod"));
        for case in cases {
            let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
            let decision = case.needs.map_or(Decision::Allowed, |(action, t)| decide(actor, action, t, p));
            let before = if decision.is_allowed() { Value::Null } else { everything(api, p).await };
            let r = if (case.method, case.template) == ("POST", BUILDS) {
                as_actor.upload(case.template, &args, "application/gzip", archive(MANIFEST, &[])).await
            } else {
                as_actor.call(case.method, case.template, &args, "", case.body.clone()).await
            };
            let what = format!("{name}: {} {} -> {} {:#}", case.method, case.template, r.status, r.body);
            match decision {
                Decision::Allowed => {
                    assert!(![401, 403, 404].contains(&r.status) && r.status < 500, "{what}");
                    // Put back what an allowed change took away, for the next callers.
                    match (case.method, case.template) {
                        ("POST", SUSPEND) => assert_eq!(api.call("POST", RESUME, &args, "", None).await.status, 200),
                        ("DELETE", STAGE) => assert_eq!(api.call("POST", RESTORE, &args, "", None).await.status, 200),
                        ("POST", RESTORE) => assert_eq!(api.call("DELETE", STAGE, &args, "", None).await.status, 200),
                        ("DELETE", MEMBER) => {
                            let body = confirmed(json!({"username": "spare", "role": "viewer"}));
                            assert_eq!(api.call("POST", MEMBERS, &[p], "", Some(body)).await.status, 200);
                        }
                        ("DELETE", CONFIG_KEY) => {
                            let body = json!({"value": "info"});
                            assert_eq!(api.call("PUT", CONFIG_KEY, &args, "", Some(body)).await.status, 200);
                        }
                        _ => {}
                    }
                }
                Decision::Invisible => {
                    assert_eq!(
                        problem(&r, 404, "not-found")["detail"],
                        format!("There is no project '{p}'."),
                        "{what}"
                    );
                }
                Decision::Forbidden(message) => {
                    assert_eq!(problem(&r, 403, "forbidden")["detail"], message, "{what}");
                }
            }
            if !before.is_null() {
                assert_eq!(everything(api, p).await, before, "{what} changed something");
            }
        }
    }

    // Nobody, and a revoked token: 401 everywhere, nothing changed.
    let revoked =
        api.call("POST", TOKENS, &[], "", Some(confirmed(json!({"name": "revoked"})))).await.body["token"].clone();
    api.call("DELETE", TOKEN, &["revoked"], "", None).await;
    let before = everything(api, p).await;
    for caller in [api.with_token(None), api.with_token(revoked.as_str())] {
        for (method, template, args) in [
            ("GET", PROJECTS, vec![]),
            ("POST", PROJECTS, vec![]),
            ("GET", STAGE, vec![p, "dev"]),
            ("POST", SUSPEND, vec![p, "prod"]),
            ("DELETE", STAGE, vec![p, "prod"]),
            ("PUT", CONFIG_KEY, vec![p, "prod", "LOG_LEVEL"]),
            ("POST", USERS, vec![]),
        ] {
            let body = (method != "GET" && method != "DELETE").then(|| json!({"name": "x", "value": "y"}));
            let r = caller.call(method, template, &args, "", body).await;
            problem(&r, 401, "unauthenticated");
        }
    }
    assert_eq!(everything(api, p).await, before, "unauthenticated requests changed something");
}

/// Per family a test on SQLite and one on PostgreSQL, each on a fresh store and server; and one
/// test that runs every family (on SQLite) and checks that together they call every documented
/// operation.
async fn sharing(api: &Api, env: &Env) {
    let p = project_with(api, &[("Dev", "dev", "dev"), ("Prod", "prod", "prod")]).await;
    // Visibility: a field of the stage's PATCH, alone or with other changes.
    let r = api.call("PATCH", STAGE, &[p, "dev"], "", Some(json!({"visibility": "public"}))).await;
    assert_eq!((r.status, r.body["id"].as_str()), (200, Some("dev")), "{:#}", r.body);
    assert_eq!(env.admin.visibility(p, "dev").await.unwrap(), pergola_domain::Visibility::Public);
    let r = api.call("PATCH", STAGE, &[p, "dev"], "", Some(json!({"visibility": "members", "name": "Dev 2"}))).await;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("Dev 2")), "{:#}", r.body);
    assert_eq!(env.admin.visibility(p, "dev").await.unwrap(), pergola_domain::Visibility::Members);
    let r = api.call("PATCH", STAGE, &[p, "dev"], "", Some(json!({"visibility": "everyone", "name": "X"}))).await;
    assert_eq!(problem(&r, 422, "validation")["field"], "visibility");
    assert_eq!(api.call("GET", STAGE, &[p, "dev"], "", None).await.body["name"], "Dev 2", "nothing changed");

    // Guest links: created with a life in hours, listed without their secret, revoked.
    let r = api.call("GET", LINKS, &[p, "dev"], "", None).await;
    assert_eq!((r.status, r.body.clone()), (200, json!([])));
    for hours in [0, -1, 8761] {
        let r = api.call("POST", LINKS, &[p, "dev"], "", Some(json!({"expires_in_hours": hours}))).await;
        assert_eq!(problem(&r, 422, "validation")["field"], "expires_in_hours", "{hours}");
    }
    let r = api.call("POST", LINKS, &[p, "dev"], "", Some(json!({"expires_in_hours": 24}))).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pgg_"));
    assert_eq!(r.location.as_deref(), Some(format!("/api/v1/projects/{p}/stages/dev/links/{id}").as_str()));
    let created = time(&r.body["expires_at"]);
    assert_eq!(created, pergola_core::Clock::now(&env.clock) + Duration::hours(24));
    let listed = api.call("GET", LINKS, &[p, "dev"], "", None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["id"], id.as_str());
    assert_eq!(listed.body[0]["created_by"], "admin");
    assert!(!listed.body.to_string().contains(&token), "never the secret again");
    assert!(env.services.guest_link_opens(&token, p, "dev").await.unwrap().is_some());
    assert_eq!(api.call("DELETE", LINK, &[p, "dev", &id], "", None).await.status, 204);
    assert!(env.services.guest_link_opens(&token, p, "dev").await.unwrap().is_none(), "revoked at once");
    problem(&api.call("DELETE", LINK, &[p, "dev", &id], "", None).await, 404, "not-found");
    problem(&api.call("GET", LINKS, &[p, "nope"], "", None).await, 404, "not-found");

    // A developer may share DEV, not PROD; a viewer neither.
    for (name, role) in [("dora", "developer"), ("vera", "viewer")] {
        let body = json!({"username": name, "password": "password-of-someone"});
        api.call("POST", USERS, &[], "", Some(confirmed(body.clone()))).await;
        api.call("POST", MEMBERS, &[p], "", Some(confirmed(json!({"username": name, "role": role})))).await;
        let token = api.with_token(None).call("POST", LOGIN, &[], "", Some(body)).await.body["token"].clone();
        let as_them = api.with_token(token.as_str());
        for stage in ["dev", "prod"] {
            let r = as_them.call("POST", LINKS, &[p, stage], "", Some(json!({"expires_in_hours": 1}))).await;
            let allowed = role == "developer" && stage == "dev";
            if allowed {
                assert_eq!(r.status, 201, "{name} {stage}");
            } else {
                problem(&r, 403, "forbidden");
            }
            let r = as_them.call("PATCH", STAGE, &[p, stage], "", Some(json!({"visibility": "public"}))).await;
            assert_eq!(r.status == 200, allowed, "{name} {stage}: {:#}", r.body);
            assert_eq!(as_them.call("GET", LINKS, &[p, stage], "", None).await.status, 200);
        }
    }
}

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

families!(
    projects,
    stages,
    stage_listing,
    config,
    builds_and_releases,
    uploads_and_their_limit,
    components_and_logs,
    live_streams,
    log_queries,
    metrics,
    lifecycle,
    settings,
    unknown_routes,
    access,
    permissions,
    sharing
);

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
        format!("GET {LIMITS}"),
        format!("GET {COMPARE}"),
        format!("GET {PROMOTE}"),
        format!("POST {PROMOTE}"),
        format!("POST {DUPLICATE}"),
        format!("PUT {LIMITS}"),
        format!("GET {ISOLATION}"),
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
        format!("POST {LOGIN}"),
        format!("POST {LOGOUT}"),
        format!("GET {WHOAMI}"),
        format!("PUT {PASSWORD}"),
        format!("GET {TOKENS}"),
        format!("POST {TOKENS}"),
        format!("DELETE {TOKEN}"),
        format!("GET {USERS}"),
        format!("POST {USERS}"),
        format!("PATCH {USER}"),
        format!("GET {MEMBERS}"),
        format!("POST {MEMBERS}"),
        format!("DELETE {MEMBER}"),
        format!("GET {PROJECT_EVENTS}"),
        format!("GET {INVITATIONS}"),
        format!("POST {INVITATIONS}"),
        format!("GET {LINKS}"),
        format!("POST {LINKS}"),
        format!("DELETE {LINK}"),
        format!("GET {PROJECT_CHANGES}"),
        format!("GET {STAGE_CHANGES}"),
        format!("GET {METRICS}"),
        format!("GET {KUBERNETES}"),
        format!("GET {BUILD_DOWNLOAD}"),
    ];
    expected.sort();
    assert_eq!(ops, expected);
    assert_eq!(doc["info"]["title"], "Pergola Stages API");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

/// A build's upload is documented as the archive it is: binary bodies of either compression
/// (and the JSON of a path build), with the answers only an upload gives.
#[test]
fn the_upload_is_documented_as_a_binary_body() {
    let doc = serde_json::to_value(pergola_api::openapi()).unwrap();
    let op = &doc["paths"]["/api/v1/projects/{project}/builds"]["post"];
    let content = op["requestBody"]["content"].as_object().unwrap();
    let types: BTreeSet<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(types, BTreeSet::from(["application/gzip", "application/zstd", "application/json"]));
    for archive in ["application/gzip", "application/zstd"] {
        let schema = &content[archive]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        assert_eq!((schema["type"].as_str(), schema["format"].as_str()), (Some("string"), Some("binary")), "{schema}");
    }
    for status in ["201", "400", "404", "413", "415", "422"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    let build = &doc["components"]["schemas"]["Build"]["properties"];
    for field in
        ["digest", "size", "unpacked_size", "uploaded_by", "expired", "version", "manifest", "number", "created_at"]
    {
        assert!(build[field].is_object(), "Build.{field}");
    }
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
