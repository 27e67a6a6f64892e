//! Every object rendered — for the demo app and for a manifest using every feature, running and
//! suspended, of each stage type — against the official Kubernetes JSON schemas, strictly (no
//! unknown field), with `kubernetes-validate` (PyPI; `scripts/install.sh` puts it in
//! `.tools/venv`). The YAML it reads is the one `pergola get stage -o kubernetes` prints.

use pergola_core::{StageKey, StageSpec};
use pergola_domain::limits::LimitsPolicy;
use pergola_domain::{parse_manifest, StageType};
use pergola_kubernetes::{objects, yaml, Cluster, Stage, REDACTED};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// The Kubernetes version the objects are checked against (the oldest one supported).
const KUBERNETES: &str = "1.33.0";

const EVERY_FEATURE: &str = r#"version = "2.0.0"

[[component]]
name = "web"
kind = "service"
command = "./bin/web"
args = ["--port", "$PORT", "on", "0755"]
port = 3000
storage = ["uploads", "cache_v2"]
env = { LOG_LEVEL = "info", API_KEY = "from-the-manifest", ON = "no" }
health = { path = "/healthz?deep=1", interval_secs = 10 }

[[component]]
name = "a-service-whose-name-is-as-long-as-a-component-name-may-be-63"
kind = "service"
command = "python3"
args = ["-m", "http.server"]

[[component]]
name = "queue"
kind = "worker"
command = "worker"
storage = ["uploads"]

[[component]]
name = "cache"
kind = "worker"
image = "redis:7.4"
storage = ["cache_v2"]

[[component]]
name = "backend"
kind = "service"
image = "ghcr.io/acme/api@sha256:0123abcd"
command = "/usr/local/bin/api"
args = ["serve"]
port = 9000
health = { path = "/ready", interval_secs = 3 }

[[component]]
name = "migrate-the-database-schema-before-anything-else-starts-up-now"
kind = "job"
command = "/usr/bin/env"
args = ["sh", "-c", "echo 'done: yes' && exit 0"]

[[component]]
name = "nightly-cleanup-of-everything-that-is-older-than-thirty-days"
kind = "cron"
schedule = "0 3 * * 1-5"
command = "./cleanup"
"#;

fn validator() -> PathBuf {
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/kubernetes-validate");
    assert!(tool.is_file(), "{} is missing: run scripts/install.sh", tool.display());
    tool
}

/// What `kubernetes-validate --strict` says of `objects` (as YAML): `Ok` when every one is
/// valid.
fn validate(name: &str, objects: &[Value]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("pergola-k8s-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml::documents(objects)).unwrap();
    validate_file(&file)
}

/// What `kubernetes-validate --strict` says of a YAML file.
fn validate_file(file: &std::path::Path) -> Result<(), String> {
    let out = Command::new(validator())
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && !said.contains("ERROR") {
        Ok(())
    } else {
        Err(format!("{}:\n{said}", file.display()))
    }
}

fn spec(manifest: &str, project: &str, stage: &str, release: i64, t: StageType) -> StageSpec {
    StageSpec {
        key: StageKey::new(project, stage),
        release,
        components: parse_manifest(manifest).unwrap().components,
        config: BTreeMap::from([
            ("API_KEY".into(), REDACTED.into()),
            ("DATABASE_URL".into(), "postgres://db/shop".into()),
            ("FEATURE_FLAGS".into(), "a,b\nc: d".into()),
            // What a YAML reader refuses or reads as a line break, unless escaped.
            ("NOTE".into(), "x\u{2028}y\u{85}z\u{feff}\u{7f} #{{ }}".into()),
        ]),
        workdir: "/srv/builds/1".into(),
        limits: LimitsPolicy::default().of(t),
        stage_type: t,
    }
}

#[test]
fn every_object_is_valid_kubernetes_for_the_demo_app_and_every_feature() {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo-app/pergola.toml")).unwrap();
    let mut checked = 0;
    for (name, manifest) in [("demo", demo.as_str()), ("every-feature", EVERY_FEATURE)] {
        for t in StageType::ALL {
            for suspended in [false, true] {
                // One installation of several on the cluster (a name of 20) while suspended.
                let install = suspended.then(|| "staging-installation".to_owned());
                // The control plane's namespace known by name (it is with the deploy manifests)
                // or not.
                let namespace = (t != StageType::Dev).then(|| "pergola".to_owned());
                let cluster = Cluster {
                    storage_class: Some("fast-ssd".into()),
                    install: install.clone(),
                    namespace,
                    ..Cluster::default()
                };
                let long = "p".repeat(63);
                let spec = spec(manifest, &long, &format!("{}-stage", t.as_str()), 1_234_567, t);
                let install = install.as_deref();
                let stage = Stage { spec: &spec, suspended, grace_secs: 90, fetch_token: REDACTED, install };
                let all = objects(&stage, &cluster);
                checked += all.len();
                validate(&format!("{name}-{}-{suspended}", t.as_str()), &all).unwrap();
            }
        }
    }
    assert!(checked > 50, "{checked} objects");
}

#[test]
fn the_check_refuses_what_kubernetes_would() {
    // So that the test above can fail: an unknown field, a wrong type, a name with capitals.
    let spec = spec(EVERY_FEATURE, "shop", "dev", 1, StageType::Dev);
    let stage = Stage { spec: &spec, suspended: false, grace_secs: 5, fetch_token: "t", install: None };
    let good = objects(&stage, &Cluster::default());
    validate("good", &good).unwrap();
    let deployment = good.iter().position(|o| o["kind"] == "Deployment").unwrap();
    type Spoil = fn(&mut Value);
    let spoils: [(&str, Spoil); 4] = [
        ("an unknown field", |d| d["spec"]["replicaz"] = json!(1)),
        ("a string for a number", |d| d["spec"]["replicas"] = json!("one")),
        ("a list for a name", |d| d["spec"]["template"]["spec"]["containers"][0]["name"] = json!(["web"])),
        ("no containers", |d| d["spec"]["template"]["spec"]["containers"] = Value::Null),
    ];
    for (what, spoil) in spoils {
        let mut bad = good.clone();
        spoil(&mut bad[deployment]);
        assert!(validate(&format!("bad-{}", what.replace(' ', "-")), &bad).is_err(), "{what} passed");
    }
}

/// Every object of a YAML file, as JSON (read by the validator's own Python, which has PyYAML).
fn read_yaml(file: &std::path::Path) -> Vec<Value> {
    let python = validator().with_file_name("python");
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pergolas_own_manifests_are_valid_and_grant_what_the_runtime_does() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|e| e == "yaml") {
            validate_file(&file).unwrap();
            all.extend(read_yaml(&file));
        }
    }
    let find = |kind: &str| all.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}")).clone();
    let deployment = find("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2, "several replicas");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Every variable it sets is one the server reads (a typo would be silently ignored), the
    // secrets come from Secrets, and the runtime is Kubernetes.
    let known: Vec<&str> = pergola_core::config::SETTINGS.iter().map(|s| s.name).collect();
    let env = container["env"].as_array().unwrap();
    let value = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name} not set")).clone();
    for e in env {
        assert!(known.contains(&e["name"].as_str().unwrap()), "unknown setting {}", e["name"]);
    }
    assert_eq!(value("PERGOLA_RUNTIME")["value"], "kubernetes");
    // The stages' network policy admits the control plane by its namespace's name.
    assert_eq!(value("PERGOLA_KUBE_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    for secret in ["DATABASE_URL", "PERGOLA_SECRET_KEY"] {
        assert!(value(secret)["valueFrom"]["secretKeyRef"]["name"].is_string(), "{secret} from a Secret");
    }
    // The pods download their builds from the control plane's Service.
    let service = find("Service");
    let port = &service["spec"]["ports"][0];
    let url = format!(
        "http://{}.{}.svc.cluster.local:{}",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap(),
        port["port"]
    );
    assert_eq!(value("PERGOLA_KUBE_CONTROL_PLANE")["value"], url.as_str());
    assert_eq!(port["targetPort"], container["ports"][0]["name"]);
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
    // Its service account may do what the runtime does, to every kind it manages.
    let role = find("ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    let allowed = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            let has = |field: &str, want: &str| r[field].as_array().unwrap().iter().any(|v| v == want);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for (api_version, _, plural, _) in pergola_kubernetes::render::KINDS {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            assert!(allowed(group, plural, verb), "{verb} {plural}");
        }
    }
    for verb in ["get", "list", "watch"] {
        assert!(allowed("", "pods", verb) && allowed("", "pods/log", verb));
    }
    assert!(!allowed("", "pods", "delete") && !allowed("", "nodes", "get"), "no more than it needs");
    let binding = find("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    assert_eq!(binding["subjects"][0]["namespace"], deployment["metadata"]["namespace"]);
}
