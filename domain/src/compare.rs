//! Comparing two stages of a project (the compare view, `pergola diff stage`) and what a
//! promotion would change — the seed: "we recommend following the DEV -> QA -> PROD approach to
//! maintain a stable, reproducible release process".
//!
//! The services gather a [`StageSide`] per stage (secret values never leave the server: a
//! secret's value is `None`, and whether two secrets differ is decided on the server and
//! passed in as `secret_digest`); [`compare`] is the one place that decides what differs.

use crate::{ComponentKind, StageType};
use serde::{Deserialize, Serialize};

/// One stage, as compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageSide {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub stage_type: StageType,
    pub grace_secs: u32,
    /// Its current release (the newest), if it has one.
    pub release: Option<i64>,
    pub build: Option<i64>,
    pub version: Option<String>,
    /// The components of its current release, in the manifest's order.
    pub components: Vec<ComponentSide>,
    /// Its configuration, by key.
    pub config: Vec<ConfigSide>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComponentSide {
    pub name: String,
    pub kind: ComponentKind,
}

/// One setting of a stage as compared: a secret's value is never shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigSide {
    pub key: String,
    /// The value of a plain setting; `None` for a secret.
    pub value: Option<String>,
    pub secret: bool,
    /// For a secret: a digest of its value the server computed to tell whether two stages'
    /// secrets are equal (never sent: it is not part of what is serialized).
    #[serde(skip)]
    pub secret_digest: Option<String>,
}

impl StageSide {
    /// What it runs, in words: `release #3 (build 7, 1.4.0)`, or `no release`.
    pub fn runs(&self) -> String {
        match (self.release, self.build) {
            (Some(release), Some(build)) => {
                let version = self.version.as_deref().map(|v| format!(", {v}")).unwrap_or_default();
                format!("release #{release} (build {build}{version})")
            }
            _ => "no release".to_owned(),
        }
    }
}

/// A setting's side as shown: its value, `(secret)` (never the value), or `(not set)`.
pub fn shown(side: Option<&ConfigSide>) -> String {
    match side {
        None => "(not set)".to_owned(),
        Some(c) if c.secret => "(secret)".to_owned(),
        Some(c) => c.value.clone().unwrap_or_default(),
    }
}

/// How two stages differ (`from` compared with `to`: "what changes on `to` if it became like
/// `from`").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageComparison {
    pub from: StageSide,
    pub to: StageSide,
    /// Whether they run different builds (or one runs none).
    pub build_differs: bool,
    /// Components of `from`'s release that `to`'s does not have.
    pub components_added: Vec<ComponentSide>,
    /// Components of `to`'s release that `from`'s does not have.
    pub components_removed: Vec<ComponentSide>,
    /// Settings present on one side only, or with different values (or secrecy), by key.
    pub config: Vec<ConfigDifference>,
    pub type_differs: bool,
    pub grace_differs: bool,
}

/// A setting that differs: its side on each stage (`None`: not set there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigDifference {
    pub key: String,
    pub from: Option<ConfigSide>,
    pub to: Option<ConfigSide>,
}

impl StageComparison {
    /// Whether the two stages are the same in everything compared but their names and IDs.
    pub fn is_same(&self) -> bool {
        !self.build_differs
            && self.components_added.is_empty()
            && self.components_removed.is_empty()
            && self.config.is_empty()
            && !self.type_differs
            && !self.grace_differs
    }
}

/// Compares stage `from` with stage `to`.
pub fn compare(from: StageSide, to: StageSide) -> StageComparison {
    let missing = |a: &StageSide, b: &StageSide| -> Vec<ComponentSide> {
        a.components.iter().filter(|c| !b.components.iter().any(|o| o.name == c.name)).cloned().collect()
    };
    let mut keys: Vec<&str> = from.config.iter().chain(&to.config).map(|c| c.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let config = keys
        .into_iter()
        .filter_map(|key| {
            let a = from.config.iter().find(|c| c.key == key);
            let b = to.config.iter().find(|c| c.key == key);
            let same = match (a, b) {
                (Some(a), Some(b)) => {
                    a.secret == b.secret
                        && a.value == b.value
                        && (!a.secret || (a.secret_digest.is_some() && a.secret_digest == b.secret_digest))
                }
                _ => false,
            };
            (!same).then(|| ConfigDifference { key: key.to_owned(), from: a.cloned(), to: b.cloned() })
        })
        .collect();
    StageComparison {
        build_differs: from.build.is_none() || from.build != to.build,
        components_added: missing(&from, &to),
        components_removed: missing(&to, &from),
        config,
        type_differs: from.stage_type != to.stage_type,
        grace_differs: from.grace_secs != to.grace_secs,
        from,
        to,
    }
}

/// Where stage `from` may be promoted to, best first: stages of the next type (DEV → QA →
/// PROD) before the others, then by ID; never itself.
pub fn promotion_targets<'a>(from: &StageSide, stages: &'a [crate::Stage]) -> Vec<&'a crate::Stage> {
    let rank = |t: StageType| {
        let (from, t) = (order(from.stage_type), order(t));
        if t == from + 1 {
            0
        } else if t > from {
            1
        } else if t == from {
            2
        } else {
            3
        }
    };
    let mut targets: Vec<&crate::Stage> = stages.iter().filter(|s| s.id != from.id && !s.is_archived()).collect();
    targets.sort_by(|a, b| rank(a.stage_type).cmp(&rank(b.stage_type)).then_with(|| a.id.cmp(&b.id)));
    targets
}

fn order(t: StageType) -> u8 {
    match t {
        StageType::Dev => 0,
        StageType::Qa => 1,
        StageType::Prod => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(
        id: &str,
        t: StageType,
        build: Option<i64>,
        components: &[&str],
        config: &[(&str, Option<&str>)],
    ) -> StageSide {
        StageSide {
            id: id.into(),
            name: id.into(),
            stage_type: t,
            grace_secs: 30,
            release: build.map(|_| 1),
            build,
            version: None,
            components: components
                .iter()
                .map(|n| ComponentSide { name: (*n).into(), kind: ComponentKind::Service })
                .collect(),
            config: config
                .iter()
                .map(|(k, v)| ConfigSide {
                    key: (*k).into(),
                    value: v.map(str::to_owned),
                    secret: v.is_none(),
                    secret_digest: v.is_none().then(|| format!("digest-of-{k}")),
                })
                .collect(),
        }
    }

    #[test]
    fn differences_of_build_components_and_configuration() {
        let dev = side("dev", StageType::Dev, Some(3), &["web", "worker"], &[("LOG", Some("debug")), ("TOKEN", None)]);
        let qa = side("qa", StageType::Qa, Some(2), &["web", "cron"], &[("LOG", Some("info")), ("TOKEN", None)]);
        let c = compare(dev, qa);
        assert!(c.build_differs && c.type_differs && !c.grace_differs && !c.is_same());
        assert_eq!(c.components_added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["worker"]);
        assert_eq!(c.components_removed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["cron"]);
        // The secrets have the same digest: equal. LOG differs, values shown.
        assert_eq!(c.config.len(), 1);
        assert_eq!(c.config[0].key, "LOG");
        assert_eq!(c.config[0].from.as_ref().unwrap().value.as_deref(), Some("debug"));
    }

    #[test]
    fn secrets_differ_by_digest_and_never_serialize_it() {
        let mut a = side("a", StageType::Dev, Some(1), &[], &[("TOKEN", None)]);
        let b = side("b", StageType::Dev, Some(1), &[], &[("TOKEN", None)]);
        a.config[0].secret_digest = Some("other".into());
        let c = compare(a, b);
        assert_eq!(c.config.len(), 1);
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("digest"), "{json}");
        assert!(json.contains(r#""value":null,"secret":true"#), "{json}");
    }

    #[test]
    fn a_stage_without_a_release_differs_and_identical_stages_are_the_same() {
        let none = side("a", StageType::Qa, None, &[], &[]);
        assert!(compare(none.clone(), none).build_differs);
        let one = side("a", StageType::Qa, Some(4), &["web"], &[("K", Some("v"))]);
        assert!(compare(one.clone(), one).is_same());
    }

    #[test]
    fn the_next_type_comes_first() {
        let now = chrono::Utc::now();
        let stage = |id: &str, t: StageType| crate::Stage {
            project_id: "p".into(),
            id: id.into(),
            name: id.into(),
            stage_type: t,
            status: crate::StageStatus::Running,
            grace_secs: 30,
            created_at: now,
            updated_at: now,
            archived_at: None,
            purge_due_at: None,
        };
        let stages = [
            stage("prod", StageType::Prod),
            stage("dev", StageType::Dev),
            stage("dev-2", StageType::Dev),
            stage("qa", StageType::Qa),
        ];
        let from = side("dev", StageType::Dev, Some(1), &[], &[]);
        let ids: Vec<&str> = promotion_targets(&from, &stages).iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["qa", "prod", "dev-2"]);
        let from = side("qa", StageType::Qa, Some(1), &[], &[]);
        let ids: Vec<&str> = promotion_targets(&from, &stages).iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["prod", "dev", "dev-2"]);
    }
}
