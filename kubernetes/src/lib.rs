//! Stages on Kubernetes. [`render`] turns a stage's current release into the objects the
//! Kubernetes runtime applies (see its table for the mapping); [`yaml`] prints them for people
//! (`pergola get stage STAGE -o kubernetes`, `GET …/stages/{stage}/kubernetes`), secret values
//! redacted.

#[cfg(feature = "client")]
pub mod client;
pub mod render;
pub mod yaml;

#[cfg(feature = "client")]
pub use client::KubernetesRuntime;
pub use render::{objects, Cluster, Stage, REDACTED};

/// The stage's objects as multi-document YAML.
pub fn to_yaml(stage: &Stage, cluster: &Cluster) -> String {
    yaml::documents(&objects(stage, cluster))
}
