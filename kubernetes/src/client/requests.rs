//! The requests the runtime makes of the API server, one function each: server-side apply of a
//! rendered object, and the listing, patching and deleting of a stage's objects by label.

use crate::render::{KINDS, MANAGED_BY, RELEASE_LABEL};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

/// The field manager of everything Pergola applies: deploying and reconciling are the same
/// server-side apply, forced (Pergola owns these objects; a hand edit is put back).
pub const FIELD_MANAGER: &str = "pergola";

/// The kinds of a release's own objects (they carry its number): what a new release replaces.
pub const RELEASE_KINDS: [&str; 5] = ["Deployment", "Service", "Job", "CronJob", "Secret"];

/// The API resource of a kind the renderer makes, and whether it lives in a namespace.
pub fn resource(kind: &str) -> Option<(ApiResource, bool)> {
    let (api_version, kind, plural, namespaced) = KINDS.into_iter().find(|k| k.1 == kind)?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some((ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural), namespaced))
}

fn api(client: &Client, kind: &str, namespace: Option<&str>) -> Result<Api<DynamicObject>, String> {
    let (resource, namespaced) = resource(kind).ok_or_else(|| format!("unknown kind {kind}"))?;
    Ok(match (namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (true, None) => return Err(format!("{kind} needs a namespace")),
        (false, _) => Api::all_with(client.clone(), &resource),
    })
}

/// What went wrong with a request, for the log and the error the services show.
fn failed(what: &str, e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{what}: {} ({})", status.message, status.code),
        other => format!("{what}: {other}"),
    }
}

/// Applies one rendered object (server-side apply, forced, as [`FIELD_MANAGER`]). A `Job` that
/// exists already is left as it is: its pod template cannot change, and it runs once per
/// release (suspended by a halt, it is not started again).
pub async fn apply(client: &Client, object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str();
    let api = api(client, kind, namespace)?;
    if kind == "Job" {
        match api.get_opt(name).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(failed(&format!("read {kind} {name}"), e)),
        }
    }
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map(drop)
        .map_err(|e| failed(&format!("apply {kind} {name}"), e))
}

/// The names of a namespace's objects of `kind` that Pergola manages and that match `selector`
/// (more label requirements, comma-separated; may be empty).
pub async fn names(client: &Client, kind: &str, namespace: &str, selector: &str) -> Result<Vec<String>, String> {
    let api = api(client, kind, Some(namespace))?;
    let mut labels = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    if !selector.is_empty() {
        labels = format!("{labels},{selector}");
    }
    match api.list(&ListParams::default().labels(&labels)).await {
        Ok(list) => Ok(list.items.into_iter().filter_map(|o| o.metadata.name).collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(e) => Err(failed(&format!("list {kind} in {namespace}"), e)),
    }
}

/// Deletes an object (its dependents — a Job's pods — in the background); one that is gone
/// already is no error.
pub async fn delete(client: &Client, kind: &str, namespace: Option<&str>, name: &str) -> Result<(), String> {
    let api = api(client, kind, namespace)?;
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        // Gone already, or going (a namespace being deleted answers 409).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(failed(&format!("delete {kind} {name}"), e)),
    }
}

/// Changes fields of an object (a JSON merge patch: `replicas`, `suspend`).
pub async fn merge(client: &Client, kind: &str, namespace: &str, name: &str, patch: &Value) -> Result<(), String> {
    merge_present(client, kind, namespace, name, patch).await.map(|_| ())
}

/// [`merge`], saying whether the object was there (true) or not (false: nothing is created).
pub async fn merge_present(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
    patch: &Value,
) -> Result<bool, String> {
    let api = api(client, kind, Some(namespace))?;
    match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(failed(&format!("patch {kind} {name}"), e)),
    }
}

/// Deletes the objects of a stage's earlier releases (a release's own kinds whose release
/// label is not `release`): its old jobs stop, its old configuration goes, a component the
/// new release no longer has is removed. Volumes and the namespace stay.
pub async fn prune(client: &Client, namespace: &str, release: i64) -> Result<(), String> {
    let older = format!("{RELEASE_LABEL},{RELEASE_LABEL}!={release}");
    for kind in RELEASE_KINDS {
        for name in names(client, kind, namespace, &older).await? {
            delete(client, kind, Some(namespace), &name).await?;
        }
    }
    Ok(())
}
