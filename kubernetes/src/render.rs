//! What a stage's release becomes on Kubernetes — one function of the release, the stage's
//! state and the cluster's settings, so that deploying and reconciling are the same
//! server-side apply, and an operator can review or apply the same objects by hand.
//!
//! | Pergola | Kubernetes |
//! |---|---|
//! | a stage | a `Namespace` named `pergola-` + 20 hex digits of a hash of the project and stage IDs (an ID alone may be 63 characters); the IDs in its labels and annotations |
//! | its stage type | a `PriorityClass` `pergola-dev` / `-qa` / `-prod` (PROD first when the cluster is full), and each component's requests and limits from the type's resource limits |
//! | the installation (`PERGOLA_KUBE_INSTALL`, when several share the cluster) | its name in every namespace's and priority class's name (`pergola-NAME-…`, hashed with the IDs) and the label `pergola.dev/install` on every object |
//! | the release's configuration | a `Secret` `config-rN` per release, read with `envFrom` (the manifest's `env` for keys it does not set) |
//! | a service | a `Deployment` (one replica, `strategy: Recreate`: the old release stops before the new one starts, as on one machine) and a `Service` on port 80 → `PORT`; readiness from the manifest's health path |
//! | a worker | a `Deployment` without a port |
//! | a job | a `Job` `NAME-rN` per release: it runs once per release |
//! | a cron component | a `CronJob` (`concurrencyPolicy: Forbid`, `startingDeadlineSeconds`) |
//! | storage | a `PersistentVolumeClaim` per volume, mounted at `/storage/VOLUME` (`PERGOLA_STORAGE_VOLUME`) |
//! | temporary data | an `emptyDir` at `/tmp` (`TMPDIR`), at most 1 GiB |
//! | isolation | a `NetworkPolicy`: only the stage's own pods and the control plane's namespace reach its pods — by the namespace's name (`PERGOLA_KUBE_NAMESPACE`), else by its labels |
//! | the grace period | `terminationGracePeriodSeconds` |
//! | the build | an `emptyDir` at `/app`, filled by an init container that downloads the release's build from the control plane with a short-lived token (the `Secret` `fetch-rN`); the components run in the configured base image |
//! | a component's `image` | that image, with its own command unless the manifest names one; no download |
//! | suspend | `replicas: 0` and `CronJob.spec.suspend: true`; a job already started runs to completion |
//!
//! Every pod runs as nobody (65534), without privilege escalation, capabilities or a service
//! account token, with a read-only root file system and the runtime's default seccomp profile.

use pergola_core::StageSpec;
use pergola_domain::{ComponentKind, ComponentSpec, StageType};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// How long a DNS label (most object names) may be.
pub const MAX_NAME: usize = 63;
/// How long a `CronJob`'s name may be (its jobs' names add 11 characters).
pub const MAX_CRON_NAME: usize = 52;
/// The port a service listens on when its manifest names none.
pub const DEFAULT_PORT: u16 = 8080;
/// The label every object Pergola manages carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "pergola");
pub const PROJECT_LABEL: &str = "pergola.dev/project";
pub const STAGE_LABEL: &str = "pergola.dev/stage";
pub const COMPONENT_LABEL: &str = "pergola.dev/component";
pub const RELEASE_LABEL: &str = "pergola.dev/release";
/// The label saying what kind of component a pod runs (`service`, `worker`, `job`, `cron`).
pub const KIND_LABEL: &str = "pergola.dev/kind";
/// The label the API server gives every namespace: its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The label naming the installation (`PERGOLA_KUBE_INSTALL`), when there is a name.
pub const INSTALL_LABEL: &str = "pergola.dev/install";
/// The label of the namespace Pergola's control plane runs in (`deploy/kubernetes/namespace.yaml`):
/// the one namespace whose pods may reach a stage's.
pub const CONTROL_PLANE_LABEL: (&str, &str) = ("app.kubernetes.io/name", "pergola");
/// How much a component's temporary data and its downloaded build may take on the node.
pub const TMP_SIZE: &str = "1Gi";
pub const BUILD_SIZE: &str = "2Gi";
/// Where a component's build is, in its container.
pub const BUILD_DIR: &str = "/app";
/// The kinds of object the runtime manages: (apiVersion, kind, plural, namespaced). Pergola's
/// own RBAC (`deploy/kubernetes/rbac.yaml`) grants these, and pods with their logs.
pub const KINDS: [(&str, &str, &str, bool); 9] = [
    ("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", false),
    ("v1", "Namespace", "namespaces", false),
    ("v1", "Secret", "secrets", true),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", true),
    ("apps/v1", "Deployment", "deployments", true),
    ("v1", "Service", "services", true),
    ("batch/v1", "Job", "jobs", true),
    ("batch/v1", "CronJob", "cronjobs", true),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", true),
];
/// What a printed object shows in place of a secret value.
pub const REDACTED: &str = "<redacted>";

/// The cluster's side: where builds run and how pods reach the control plane (the server's
/// `PERGOLA_KUBE_*` settings).
pub use pergola_core::config::Cluster;

/// The stage whose objects are rendered.
#[derive(Clone, Debug)]
pub struct Stage<'a> {
    /// Its current release (the configuration's values as they should appear: opened for
    /// the runtime, redacted for people).
    pub spec: &'a StageSpec,
    pub suspended: bool,
    pub grace_secs: u32,
    /// The token the release's init containers download its build with ([`REDACTED`] for
    /// people).
    pub fetch_token: &'a str,
    /// The installation's name on the cluster ([`Cluster::install`]).
    pub install: Option<&'a str>,
}

impl Stage<'_> {
    /// The stage's namespace.
    pub fn namespace(&self) -> String {
        namespace_of(self.install, &self.spec.key.project, &self.spec.key.stage)
    }
}

/// A name that is a DNS label of at most `max` characters: `parts` joined with `-`, lower
/// case, other characters as `-`; too long, or changed on the way, it is cut and ends with a
/// hash of the parts, so that two different names never meet.
pub fn dns_name(parts: &[&str], max: usize) -> String {
    let joined = parts.join("-");
    let clean: String = joined
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' })
        .collect();
    let trimmed = clean.trim_matches('-');
    if trimmed == joined && !trimmed.is_empty() && trimmed.len() <= max {
        return joined;
    }
    let hash = &hex(&Sha256::digest(joined.as_bytes()))[..8];
    let room = max - hash.len() - 1;
    let head = trimmed.get(..room.min(trimmed.len())).unwrap_or_default().trim_end_matches('-');
    if head.is_empty() {
        format!("x-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The namespace of a stage of the one installation on a cluster: `pergola-` and 20 hex
/// digits of a hash of its project and stage.
pub fn namespace(project: &str, stage: &str) -> String {
    namespace_of(None, project, stage)
}

/// The namespace of a stage of the installation `install` (`None`: the one installation):
/// `pergola-`, the installation's name, and 20 hex digits of a hash of it, the project and the
/// stage — at most 49 characters.
pub fn namespace_of(install: Option<&str>, project: &str, stage: &str) -> String {
    let hashed = |s: String| hex(&Sha256::digest(s.as_bytes()))[..20].to_owned();
    match install {
        None => format!("pergola-{}", hashed(format!("{project}/{stage}"))),
        Some(name) => format!("pergola-{name}-{}", hashed(format!("{name}/{project}/{stage}"))),
    }
}

/// The priority class of a stage type (of the installation `install`).
pub fn priority_class(install: Option<&str>, stage_type: StageType) -> String {
    match install {
        None => format!("pergola-{}", stage_type.as_str()),
        Some(name) => format!("pergola-{name}-{}", stage_type.as_str()),
    }
}

/// The `Secret` holding a release's configuration.
pub fn config_secret(release: i64) -> String {
    format!("config-r{release}")
}

/// The `Secret` holding the token a release's build is downloaded with.
pub fn fetch_secret(release: i64) -> String {
    format!("fetch-r{release}")
}

/// The `PersistentVolumeClaim` of a storage volume.
pub fn volume_claim(volume: &str) -> String {
    dns_name(&["storage", volume], MAX_NAME)
}

/// The object name of a component: a `Deployment` and `Service`, a `Job` of one release, or a
/// `CronJob`.
pub fn component_object(component: &ComponentSpec, release: i64) -> String {
    match component.kind {
        ComponentKind::Service | ComponentKind::Worker => dns_name(&[&component.name], MAX_NAME),
        ComponentKind::Job => dns_name(&[&component.name, &format!("r{release}")], MAX_NAME),
        ComponentKind::Cron => dns_name(&[&component.name], MAX_CRON_NAME),
    }
}

/// The environment variable naming a storage volume's path, as on one machine.
pub fn storage_var(volume: &str) -> String {
    format!("PERGOLA_STORAGE_{}", volume.to_ascii_uppercase().replace('-', "_"))
}

/// The URL a release's build is downloaded from.
pub fn build_url(cluster: &Cluster, spec: &StageSpec) -> String {
    format!(
        "{}/api/v1/projects/{}/stages/{}/releases/{}/build",
        cluster.control_plane.trim_end_matches('/'),
        spec.key.project,
        spec.key.stage,
        spec.release
    )
}

/// Every object of the stage's release, in the order they are applied: the cluster-wide
/// priority class, the namespace, the secrets and volumes, then each component's objects.
pub fn objects(stage: &Stage, cluster: &Cluster) -> Vec<Value> {
    debug_assert_eq!(stage.install, cluster.install.as_deref(), "the stage is rendered for its installation");
    let spec = stage.spec;
    let ns = stage.namespace();
    let mut out = vec![priority_class_object(stage), namespace_object(stage, &ns)];
    // Only the stage's own pods and Pergola's control plane reach its pods: another stage, or
    // another installation, cannot go around the share links' sign-in. The control plane's
    // namespace is labelled app.kubernetes.io/name=pergola and, of a named installation,
    // pergola.dev/install=NAME; the unnamed installation's has no pergola.dev/install (a named
    // installation's control plane does not reach the unnamed one's stages either).
    // With the control plane's namespace known (`PERGOLA_KUBE_NAMESPACE`), by its name: the
    // API server sets `kubernetes.io/metadata.name`, and no one can give it to another
    // namespace, whereas whoever may label a namespace could copy the labels.
    let mut control_plane = Map::new();
    let mut selector = Map::new();
    if let Some(namespace) = &cluster.namespace {
        control_plane.insert(NAMESPACE_NAME_LABEL.into(), json!(namespace));
    } else {
        control_plane.insert(CONTROL_PLANE_LABEL.0.into(), json!(CONTROL_PLANE_LABEL.1));
        match stage.install {
            Some(name) => {
                control_plane.insert(INSTALL_LABEL.into(), json!(name));
            }
            None => {
                selector.insert("matchExpressions".into(), json!([{"key": INSTALL_LABEL, "operator": "DoesNotExist"}]));
            }
        }
    }
    selector.insert("matchLabels".into(), Value::Object(control_plane));
    out.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": lasting_metadata(stage, &ns, "pergola-isolation"),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"podSelector": {}},
                {"namespaceSelector": selector},
            ]}],
        },
    }));
    out.push(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(stage, &ns, &config_secret(spec.release), None),
        "type": "Opaque",
        "stringData": spec.config,
    }));
    out.push(fetch_secret_object(stage));
    let mut volumes: Vec<&str> = spec.components.iter().flat_map(|c| c.storage.iter().map(String::as_str)).collect();
    volumes.sort_unstable();
    volumes.dedup();
    for volume in volumes {
        let mut claim = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": cluster.volume_size}},
        });
        if let Some(class) = &cluster.storage_class {
            claim["storageClassName"] = json!(class);
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": lasting_metadata(stage, &ns, &volume_claim(volume)),
            "spec": claim,
        }));
    }
    for component in &spec.components {
        out.extend(component_objects(stage, cluster, &ns, component));
    }
    out
}

/// The `Secret` holding the token the release's init containers download its build with
/// (the runtime puts a fresh token into it while the release runs: a token works for minutes
/// only).
fn fetch_secret_object(stage: &Stage) -> Value {
    let spec = stage.spec;
    let ns = stage.namespace();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(stage, &ns, &fetch_secret(spec.release), None),
        "type": "Opaque",
        "stringData": {"token": stage.fetch_token},
    })
}

fn priority_class_object(stage: &Stage) -> Value {
    let stage_type = stage.spec.stage_type;
    let mut labels = Map::new();
    labels.insert(MANAGED_BY.0.into(), json!(MANAGED_BY.1));
    if let Some(name) = stage.install {
        labels.insert(INSTALL_LABEL.into(), json!(name));
    }
    let (value, preemption) = match stage_type {
        StageType::Prod => (1_000_000, "PreemptLowerPriority"),
        StageType::Qa => (100_000, "Never"),
        StageType::Dev => (10_000, "Never"),
    };
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": priority_class(stage.install, stage_type), "labels": labels},
        "value": value,
        "globalDefault": false,
        "preemptionPolicy": preemption,
        "description": format!("Pergola {} stages", stage_type.as_str().to_uppercase()),
    })
}

fn namespace_object(stage: &Stage, ns: &str) -> Value {
    let mut meta = lasting_metadata(stage, ns, ns);
    meta["labels"]["pergola.dev/type"] = json!(stage.spec.stage_type.as_str());
    if let Some(meta) = meta.as_object_mut() {
        meta.remove("namespace");
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
}

/// The labels of everything of the stage (and of one component): IDs are at most 63
/// characters of `a-z0-9-`, valid label values as they are.
fn labels(stage: &Stage, component: Option<&str>) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(MANAGED_BY.0.into(), json!(MANAGED_BY.1));
    labels.insert(PROJECT_LABEL.into(), json!(stage.spec.key.project));
    labels.insert(STAGE_LABEL.into(), json!(stage.spec.key.stage));
    if let Some(name) = stage.install {
        labels.insert(INSTALL_LABEL.into(), json!(name));
    }
    if let Some(component) = component {
        labels.insert(COMPONENT_LABEL.into(), json!(component));
    }
    labels
}

/// The metadata of an object of the current release (it carries the release's number).
fn metadata(stage: &Stage, ns: &str, name: &str, component: Option<&str>) -> Value {
    let mut meta = lasting_metadata(stage, ns, name);
    if let Some(component) = component {
        meta["labels"][COMPONENT_LABEL] = json!(component);
    }
    meta["labels"][RELEASE_LABEL] = json!(stage.spec.release.to_string());
    meta
}

/// The metadata of an object that outlives releases (the namespace, a volume).
fn lasting_metadata(stage: &Stage, ns: &str, name: &str) -> Value {
    let labels = labels(stage, None);
    json!({
        "name": name,
        "namespace": ns,
        "labels": labels,
        "annotations": {
            "pergola.dev/project-id": stage.spec.key.project,
            "pergola.dev/stage-id": stage.spec.key.stage,
        },
    })
}

/// The selector of a component's pods: what never changes between its releases.
fn selector(stage: &Stage, component: &str) -> Value {
    Value::Object(labels(stage, Some(component)))
}

fn component_objects(stage: &Stage, cluster: &Cluster, ns: &str, c: &ComponentSpec) -> Vec<Value> {
    let release = stage.spec.release;
    let name = component_object(c, release);
    let meta = metadata(stage, ns, &name, Some(&c.name));
    let pod_meta = {
        let mut labels = labels(stage, Some(&c.name));
        labels.insert(RELEASE_LABEL.into(), json!(release.to_string()));
        labels.insert(KIND_LABEL.into(), json!(c.kind.as_str()));
        json!({"labels": labels})
    };
    let mut run_labels = labels(stage, Some(&c.name));
    run_labels.insert(RELEASE_LABEL.into(), json!(release.to_string()));
    match c.kind {
        ComponentKind::Service | ComponentKind::Worker => {
            let replicas = if stage.suspended { 0 } else { 1 };
            let mut out = vec![json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta.clone(),
                "spec": {
                    "replicas": replicas,
                    "strategy": {"type": "Recreate"},
                    "revisionHistoryLimit": 3,
                    "selector": {"matchLabels": selector(stage, &c.name)},
                    "template": {"metadata": pod_meta, "spec": pod_spec(stage, cluster, c, "Always")},
                },
            })];
            if c.kind == ComponentKind::Service {
                out.push(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta,
                    "spec": {
                        "type": "ClusterIP",
                        "selector": selector(stage, &c.name),
                        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                    },
                }));
            }
            out
        }
        ComponentKind::Job => vec![json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {
                // Once per release, as on one machine: a failed run is not tried again.
                "backoffLimit": 0,
                "template": {"metadata": pod_meta, "spec": pod_spec(stage, cluster, c, "Never")},
            },
        })],
        ComponentKind::Cron => vec![json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": c.schedule.clone().unwrap_or_default(),
                "suspend": stage.suspended,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 300,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    // The release's label too: a run the schedule started goes with its release.
                    "metadata": {"labels": run_labels},
                    "spec": {
                        "backoffLimit": 0,
                        "template": {"metadata": pod_meta, "spec": pod_spec(stage, cluster, c, "Never")},
                    },
                },
            },
        })],
    }
}

fn pod_spec(stage: &Stage, cluster: &Cluster, c: &ComponentSpec, restart: &str) -> Value {
    let spec = stage.spec;
    let limits = &spec.limits;
    let port = (c.kind == ComponentKind::Service).then(|| c.port.unwrap_or(DEFAULT_PORT));
    // What the component sees, as on one machine; the configuration (`envFrom`) wins over
    // the manifest's `env`, so a key it sets is left out here.
    let mut env: Vec<Value> = c
        .env
        .iter()
        .filter(|(k, _)| !spec.config.contains_key(*k))
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if let Some(port) = port {
        env.push(json!({"name": "PORT", "value": port.to_string()}));
    }
    for (k, v) in [
        ("PERGOLA_PROJECT", spec.key.project.as_str()),
        ("PERGOLA_STAGE", spec.key.stage.as_str()),
        ("PERGOLA_COMPONENT", c.name.as_str()),
        ("TMPDIR", "/tmp"),
        ("HOME", "/tmp"),
    ] {
        env.push(json!({"name": k, "value": v}));
    }
    // A ready image brings its own files; a build's are downloaded into /app first.
    let from_build = c.image.is_none();
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}})];
    if from_build {
        mounts.insert(0, json!({"name": "build", "mountPath": BUILD_DIR, "readOnly": true}));
        volumes.insert(0, json!({"name": "build", "emptyDir": {"sizeLimit": BUILD_SIZE}}));
    }
    for volume in &c.storage {
        let mount = dns_name(&["storage", volume], MAX_NAME);
        let path = format!("/storage/{volume}");
        env.push(json!({"name": storage_var(volume), "value": path}));
        mounts.push(json!({"name": mount, "mountPath": path}));
        volumes.push(json!({"name": mount, "persistentVolumeClaim": {"claimName": volume_claim(volume)}}));
    }
    // A command in the build (`./web`, `bin/worker`) is found in it; a bare name on PATH.
    let command = if from_build && c.command.contains('/') && !c.command.starts_with('/') {
        format!("{BUILD_DIR}/{}", c.command.trim_start_matches("./"))
    } else {
        c.command.clone()
    };
    let memory = u64::from(limits.memory_mib.max(16));
    // The nice value's share of a CPU: 0 → a whole one, each 5 steps half as much.
    let cpu_millis = (1000u32 >> (u32::from(limits.cpu_nice) / 5)).max(50);
    let mut container = json!({
        "name": c.name,
        "image": c.image.as_deref().unwrap_or(&cluster.base_image),
        "args": c.args,
        "env": env,
        "envFrom": [{"secretRef": {"name": config_secret(spec.release)}}],
        "resources": {
            "limits": {"memory": format!("{memory}Mi")},
            "requests": {"memory": format!("{}Mi", (memory / 4).max(16)), "cpu": format!("{cpu_millis}m")},
        },
        "securityContext": restricted(),
        "volumeMounts": mounts,
    });
    if !command.is_empty() {
        container["command"] = json!([command]);
    }
    if from_build {
        container["workingDir"] = json!(BUILD_DIR);
    }
    if let Some(port) = port {
        container["ports"] = json!([{"name": "http", "containerPort": port, "protocol": "TCP"}]);
        if let Some(health) = &c.health {
            container["readinessProbe"] = json!({
                "httpGet": {"path": health.path, "port": "http"},
                "periodSeconds": health.interval_secs,
                "failureThreshold": 3,
            });
        }
    }
    let fetch = json!({
        "name": "fetch-build",
        "image": cluster.fetch_image,
        "command": ["sh", "-c", "curl -fsS --retry 5 -H \"Authorization: Bearer $PERGOLA_FETCH_TOKEN\" \"$PERGOLA_BUILD_URL\" | tar -xzf - -C /app"],
        "env": [
            {"name": "PERGOLA_BUILD_URL", "value": build_url(cluster, spec)},
            {"name": "PERGOLA_FETCH_TOKEN", "valueFrom": {"secretKeyRef": {"name": fetch_secret(spec.release), "key": "token"}}},
        ],
        "resources": {"limits": {"memory": "128Mi"}, "requests": {"memory": "32Mi", "cpu": "50m"}},
        "securityContext": restricted(),
        "volumeMounts": [{"name": "build", "mountPath": BUILD_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    });
    let init: Vec<Value> = if from_build { vec![fetch] } else { Vec::new() };
    json!({
        "restartPolicy": restart,
        "priorityClassName": priority_class(stage.install, stage.spec.stage_type),
        "terminationGracePeriodSeconds": stage.grace_secs,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init,
        "containers": [container],
        "volumes": volumes,
    })
}

fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}
