//! The rendered objects, for any valid IDs, names, releases and stage states: every name is a
//! valid DNS label within its length, every object lands in the stage's namespace, selectors
//! match the pods they select, the grace period is carried, and a suspended stage runs nothing
//! new.

use pergola_core::{StageKey, StageSpec};
use pergola_domain::limits::LimitsPolicy;
use pergola_domain::manifest::{ComponentKind, ComponentSpec, HealthCheck};
use pergola_domain::{validate_id, IdKind, StageType};
use pergola_kubernetes::render::{
    self, namespace, namespace_of, INSTALL_LABEL, MAX_CRON_NAME, MAX_NAME, NAMESPACE_NAME_LABEL,
};
use pergola_kubernetes::{objects, Cluster, Stage};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,61}[a-z0-9]".prop_filter("a valid ID", |s| validate_id(IdKind::Stage, s).is_ok())
}

fn component(kind: ComponentKind) -> impl Strategy<Value = ComponentSpec> {
    (
        prop_oneof!["[a-z][a-z0-9-]{0,61}[a-z0-9]", "[a-z][a-z0-9-]{50,61}[a-z0-9]"]
            .prop_filter("a valid name", |s| validate_id(IdKind::Component, s).is_ok()),
        prop::collection::vec("[a-z0-9_-]{1,70}", 0..3),
        any::<Option<u16>>(),
        prop::option::of("[a-z0-9]{1,12}(/[a-z0-9]{1,12})?(:[a-z0-9.]{1,8})?"),
    )
        .prop_map(move |(name, storage, port, image)| {
            let mut storage = storage;
            storage.sort();
            storage.dedup();
            let service = kind == ComponentKind::Service;
            ComponentSpec {
                name,
                kind,
                command: if image.is_some() { String::new() } else { "./run".into() },
                image,
                args: vec!["--flag".into()],
                port: if service { port.filter(|p| *p > 0) } else { None },
                schedule: (kind == ComponentKind::Cron).then(|| "*/5 * * * *".into()),
                health: service.then(|| HealthCheck { path: "/healthz".into(), interval_secs: 5 }),
                storage,
                env: BTreeMap::from([("LOG".into(), "info".into())]),
            }
        })
}

fn components() -> impl Strategy<Value = Vec<ComponentSpec>> {
    prop::collection::vec(
        prop_oneof![
            component(ComponentKind::Service),
            component(ComponentKind::Worker),
            component(ComponentKind::Job),
            component(ComponentKind::Cron),
        ],
        1..5,
    )
    .prop_map(|mut cs| {
        let mut seen = HashSet::new();
        cs.retain(|c| seen.insert(c.name.clone()));
        cs
    })
}

fn names_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "name" || k == "claimName" {
                    if let Value::String(s) = v {
                        out.push(s.clone());
                    }
                }
                names_in(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names_in(v, out)),
        _ => {}
    }
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// Whether a label selector (`matchLabels` and `matchExpressions`, as Kubernetes reads them)
/// selects an object labelled `labels`. An operator it does not know selects nothing.
fn selects(selector: &Value, labels: &[(&str, &str)]) -> bool {
    let get = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let by_label = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| get(k).is_some() && get(k) == v.as_str()));
    let by_expression = selector["matchExpressions"].as_array().is_none_or(|list| {
        list.iter().all(|e| {
            let key = e["key"].as_str().unwrap();
            let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match e["operator"].as_str() {
                Some("Exists") => get(key).is_some(),
                Some("DoesNotExist") => get(key).is_none(),
                Some("In") => get(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => get(key).is_none_or(|v| !values.contains(&v)),
                _ => false,
            }
        })
    });
    by_label && by_expression
}

/// A namespace's labels: those its owner gave it, and its name (the API server's, which no one
/// can change).
fn named<'a>(name: &'a str, labels: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = labels.to_vec();
    all.push((NAMESPACE_NAME_LABEL, name));
    all
}

fn pod_specs(object: &Value) -> Vec<&Value> {
    match object["kind"].as_str() {
        Some("Deployment") | Some("Job") => vec![&object["spec"]["template"]["spec"]],
        Some("CronJob") => vec![&object["spec"]["jobTemplate"]["spec"]["template"]["spec"]],
        _ => vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_object_is_well_named_placed_selected_and_suspended_as_the_stage_is(
        project in id(),
        stage_id in id(),
        release in 1i64..2_000_000,
        comps in components(),
        suspended in any::<bool>(),
        grace in 1u32..3600,
        stage_type in prop_oneof![Just(StageType::Dev), Just(StageType::Qa), Just(StageType::Prod)],
        install in proptest::option::of("[a-z]([a-z0-9-]{0,18}[a-z0-9])?"),
        // Up to 32 characters: the namespaces named in the test below are longer.
        home in proptest::option::of("[a-z]([a-z0-9-]{0,30}[a-z0-9])?"),
    ) {
        let spec = StageSpec {
            key: StageKey::new(&project, &stage_id),
            release,
            components: comps.clone(),
            config: BTreeMap::from([("LOG".into(), "debug".into()), ("API_KEY".into(), "s3cret".into())]),
            workdir: "/nowhere".into(),
            limits: LimitsPolicy::default().of(stage_type),
            stage_type,
        };
        let stage = Stage { spec: &spec, suspended, grace_secs: grace, fetch_token: "t", install: install.as_deref() };
        let all = objects(&stage, &Cluster { install: install.clone(), namespace: home.clone(), ..Cluster::default() });
        let ns = namespace_of(install.as_deref(), &project, &stage_id);
        prop_assert!(is_dns_label(&ns, MAX_NAME), "{ns}");
        // Another installation's stage of the same IDs lives elsewhere.
        prop_assert_ne!(&ns, &namespace_of(Some("other"), &project, &stage_id));
        if install.is_some() {
            prop_assert_ne!(&ns, &namespace(&project, &stage_id));
        }
        let mut seen = HashSet::new();
        for object in &all {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            let max = if kind == "CronJob" { MAX_CRON_NAME } else { MAX_NAME };
            prop_assert!(is_dns_label(name, max), "{kind} {name}");
            prop_assert!(seen.insert((kind.to_owned(), name.to_owned())), "two {kind} named {name}");
            match kind {
                "PriorityClass" | "Namespace" => prop_assert!(object["metadata"].get("namespace").is_none()),
                _ => prop_assert_eq!(object["metadata"]["namespace"].as_str(), Some(ns.as_str())),
            }
            // Label values are IDs: at most 63 characters.
            for (_, v) in labels(&object["metadata"]["labels"]) {
                prop_assert!(v.len() <= 63, "{v}");
            }
            // Every object, and every pod, says which installation it belongs to (or none).
            prop_assert_eq!(object["metadata"]["labels"].get(INSTALL_LABEL).and_then(Value::as_str), install.as_deref());
            for template in [&object["spec"]["template"], &object["spec"]["jobTemplate"]["spec"]["template"]] {
                if !template.is_null() {
                    prop_assert_eq!(template["metadata"]["labels"].get(INSTALL_LABEL).and_then(Value::as_str), install.as_deref());
                }
            }
            if kind == "PriorityClass" {
                let class = render::priority_class(install.as_deref(), stage_type);
                prop_assert_eq!(name, class.as_str());
            }
            let mut names = Vec::new();
            names_in(object, &mut names);
            for n in names.iter().filter(|n| !n.contains('_') && *n != "PORT" && !n.chars().any(|c| c.is_ascii_uppercase())) {
                prop_assert!(is_dns_label(n, MAX_NAME), "{kind} {name}: {n}");
            }
            for pod in pod_specs(object) {
                // A ready image runs as it is; a build is downloaded first.
                let container = &pod["containers"][0];
                let c = comps.iter().find(|c| Some(c.name.as_str()) == container["name"].as_str()).unwrap();
                let inits = pod["initContainers"].as_array().unwrap().len();
                match &c.image {
                    Some(image) => {
                        prop_assert_eq!(container["image"].as_str(), Some(image.as_str()));
                        prop_assert_eq!(inits, 0);
                        prop_assert!(container.get("command").is_none() && container.get("workingDir").is_none());
                    }
                    None => {
                        prop_assert_eq!(container["image"].as_str(), Some("debian:12-slim"));
                        prop_assert_eq!(inits, 1);
                        prop_assert_eq!(container["command"][0].as_str(), Some("/app/run"));
                    }
                }
                prop_assert_eq!(pod["terminationGracePeriodSeconds"].as_u64(), Some(u64::from(grace)));
                let class = render::priority_class(install.as_deref(), stage_type);
                prop_assert_eq!(pod["priorityClassName"].as_str(), Some(class.as_str()));
                prop_assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
                // Every volume a container mounts is a volume of the pod.
                let volumes: HashSet<_> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
                for c in pod["containers"].as_array().unwrap().iter().chain(pod["initContainers"].as_array().unwrap()) {
                    for m in c["volumeMounts"].as_array().unwrap() {
                        prop_assert!(volumes.contains(m["name"].as_str().unwrap()));
                    }
                }
            }
            match kind {
                "Deployment" => {
                    let selector = labels(&object["spec"]["selector"]["matchLabels"]);
                    let pods = labels(&object["spec"]["template"]["metadata"]["labels"]);
                    prop_assert!(selector.iter().all(|(k, v)| pods.get(k) == Some(v)), "{selector:?} ⊄ {pods:?}");
                    prop_assert_eq!(object["spec"]["replicas"].as_u64(), Some(if suspended { 0 } else { 1 }));
                    prop_assert_eq!(object["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
                }
                "Service" => {
                    let selector = labels(&object["spec"]["selector"]);
                    let deployment = all.iter().find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == object["metadata"]["name"]).unwrap();
                    let pods = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
                    prop_assert!(selector.iter().all(|(k, v)| pods.get(k) == Some(v)));
                }
                "NetworkPolicy" => {
                    // Only this installation's control plane (and the stage's own pods) get in:
                    // not another installation's, named or not, nor any other namespace.
                    let from = &object["spec"]["ingress"][0]["from"];
                    prop_assert_eq!(&from[0], &serde_json::json!({"podSelector": {}}));
                    prop_assert_eq!(from.as_array().map(Vec::len), Some(2));
                    let admits = |ns: &[(&str, &str)]| selects(&from[1]["namespaceSelector"], ns);
                    let app = ("app.kubernetes.io/name", "pergola");
                    let install_label: Vec<(&str, &str)> = install.iter().map(|i| (INSTALL_LABEL, i.as_str())).collect();
                    let mut impostor = named("impostor-namespace-of-another-team-01", &[app]);
                    impostor.extend(install_label.iter().copied());
                    prop_assert!(!admits(&named("default-namespace-of-another-team-01", &[])) && !admits(&named("another-namespace-of-another-team-02", &[("app.kubernetes.io/name", "other")])));
                    prop_assert!(!admits(&named("another-installations-control-plane-03", &[app, (INSTALL_LABEL, "another-installation-x")])), "a named installation");
                    match &home {
                        // By its name only: labels copied onto another namespace do not get in.
                        Some(home) => {
                            prop_assert!(admits(&[(NAMESPACE_NAME_LABEL, home.as_str())]), "its own control plane");
                            prop_assert!(!admits(&impostor), "a namespace with the control plane's labels");
                        }
                        None => {
                            prop_assert!(admits(&impostor), "by labels, whoever has them: {impostor:?}");
                            if install.is_some() {
                                prop_assert!(!admits(&named("the-unnamed-installations-control-plane", &[app])), "the unnamed installation");
                            }
                        }
                    }
                }
                "CronJob" => {
                    prop_assert_eq!(object["spec"]["suspend"].as_bool(), Some(suspended));
                    prop_assert_eq!(object["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"));
                }
                _ => {}
            }
        }
        // Each component is there, once.
        for c in &comps {
            let name = render::component_object(c, release);
            prop_assert!(all.iter().any(|o| o["metadata"]["name"] == name.as_str()), "{name}");
        }
    }
}

#[test]
fn long_or_unusual_names_are_cut_and_told_apart_by_a_hash() {
    let long = "a".repeat(63);
    assert_eq!(render::dns_name(&[&long], 63), long, "a valid name is kept");
    let job = render::dns_name(&[&long, "r12"], 63);
    assert!(job.len() <= 63 && job.starts_with("aaaa"), "{job}");
    assert_ne!(job, render::dns_name(&[&long, "r13"], 63), "two releases, two names");
    assert_ne!(render::volume_claim("a_b"), render::volume_claim("a-b"));
    assert_eq!(render::volume_claim("uploads"), "storage-uploads");
    assert_ne!(namespace("a-b", "c"), namespace("a", "b-c"), "the separator is not ambiguous");
    assert_eq!(render::dns_name(&["___"], 63).len(), 10);
    // The longest names each object may have.
    let longest = |kind| ComponentSpec {
        name: "c".repeat(63),
        kind,
        command: "x".into(),
        image: None,
        args: vec![],
        port: None,
        schedule: None,
        health: None,
        storage: vec![],
        env: BTreeMap::new(),
    };
    assert_eq!(render::component_object(&longest(ComponentKind::Service), 7).len(), 63);
    assert!(render::component_object(&longest(ComponentKind::Job), 1_000_000).len() <= 63);
    let cron = render::component_object(&longest(ComponentKind::Cron), 7);
    assert!(cron.len() <= MAX_CRON_NAME && cron.starts_with("ccc"), "{cron}");
}
