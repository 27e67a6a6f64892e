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
    let out = Command::new(validator())
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(&file)
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
    let cluster = Cluster { storage_class: Some("fast-ssd".into()), ..Cluster::default() };
    let mut checked = 0;
    for (name, manifest) in [("demo", demo.as_str()), ("every-feature", EVERY_FEATURE)] {
        for t in StageType::ALL {
            for suspended in [false, true] {
                let long = "p".repeat(63);
                let spec = spec(manifest, &long, &format!("{}-stage", t.as_str()), 1_234_567, t);
                let stage = Stage { spec: &spec, suspended, grace_secs: 90, fetch_token: REDACTED };
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
    let stage = Stage { spec: &spec, suspended: false, grace_secs: 5, fetch_token: "t" };
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
