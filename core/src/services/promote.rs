//! Promotion (DEV → QA → PROD: a stage's current build deployed to another stage, with that
//! stage's own configuration), comparison of two stages, and duplication of a stage.

use super::{internal, Acting, Services};
use crate::secrets::Place;
use crate::store::ConfigValue;
use crate::StageKey;
use pergola_domain::access::{self, Action};
use pergola_domain::{
    compare, parse_manifest, promotion_targets, ComponentSide, ConfigSide, Error, EventKind, Release, Stage,
    StageComparison, StageEvent, StageSide,
};
use sha2::{Digest, Sha256};

/// What a duplicate takes along besides the type, configuration and grace period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Duplicate {
    /// Deploy the source's current build.
    pub deploy: bool,
    /// Copy the source's persistent storage (the source must be suspended).
    pub storage: bool,
}

impl Services {
    /// A stage as compared: its current release's build and components, its configuration
    /// (with `digests`, secret values opened only to tell equal ones apart by a digest that
    /// never leaves the server; without, secrets are never equal).
    async fn side(&self, stage: &Stage, digests: bool) -> Result<StageSide, Error> {
        let (p, s) = (&stage.project_id, &stage.id);
        let current = self.store.list_releases(p, s).await.map_err(internal("list the releases to compare"))?;
        let current = current.into_iter().next();
        let components = match &current {
            Some(r) => parse_manifest(&r.build.manifest)?
                .components
                .into_iter()
                .map(|c| ComponentSide { name: c.name, kind: c.kind })
                .collect(),
            None => Vec::new(),
        };
        let values = self.store.list_config(p, s).await.map_err(internal("list the configuration to compare"))?;
        let mut config = Vec::new();
        for v in values {
            let digest = if v.secret && digests {
                let clear = self.open(&v.value, true, Place { project: p, stage: s, key: &v.key })?;
                Some(format!("{:x}", Sha256::digest(clear.as_bytes())))
            } else {
                None
            };
            config.push(ConfigSide {
                key: v.key,
                value: (!v.secret).then_some(v.value),
                secret: v.secret,
                secret_digest: digest,
            });
        }
        Ok(StageSide {
            id: stage.id.clone(),
            name: stage.name.clone(),
            stage_type: stage.stage_type,
            grace_secs: stage.grace_secs,
            release: current.as_ref().map(|r| r.number),
            build: current.as_ref().map(|r| r.build.number),
            version: current.and_then(|r| r.build.version),
            components,
            config,
        })
    }
}

/// `side` with no secret's digest: its secrets then differ from every other stage's.
fn without_digests(mut side: StageSide) -> StageSide {
    for setting in &mut side.config {
        setting.secret_digest = None;
    }
    side
}

impl Acting {
    /// Whether the caller may set the settings of `stage` (of `project_id`): only then may a
    /// comparison with it tell whether its secrets equal another stage's — to anyone else, an
    /// equal secret would give away a value they may not know (a PROD secret a developer guessed
    /// into a DEV stage).
    async fn may_configure(&self, project_id: &str, stage: &Stage) -> Result<bool, Error> {
        let actor = self.actor(project_id).await?;
        Ok(access::permits(&actor, Action::ConfigureStage, Some(stage.stage_type)))
    }

    /// How live stage `from` differs from live stage `to` of a project: build, components,
    /// configuration (secret values masked), type and grace period. Secrets are told equal only
    /// to a caller who may configure both stages; to others, secrets set on both always differ.
    pub async fn compare_stages(&self, project_id: &str, from: &str, to: &str) -> Result<StageComparison, Error> {
        let a = self.live(self.allow_stage(Action::ReadStage, project_id, from).await?)?;
        let b = self.live(self.allow_stage(Action::ReadStage, project_id, to).await?)?;
        let digests = self.may_configure(project_id, &a).await? && self.may_configure(project_id, &b).await?;
        Ok(compare(self.side(&a, digests).await?, self.side(&b, digests).await?))
    }

    /// The stages live stage `from` may be promoted to, best first (the next type: DEV → QA →
    /// PROD), each with what a promotion would change there (secrets as in
    /// [`Self::compare_stages`]).
    pub async fn promotion_options(&self, project_id: &str, from: &str) -> Result<Vec<StageComparison>, Error> {
        let source = self.live(self.allow_stage(Action::ReadStage, project_id, from).await?)?;
        let source_digests = self.may_configure(project_id, &source).await?;
        let side = self.side(&source, source_digests).await?;
        let stages = self.list_stages(project_id, false).await?;
        let mut options = Vec::new();
        for target in promotion_targets(&side, &stages) {
            let digests = source_digests && self.may_configure(project_id, target).await?;
            let ours = if digests { side.clone() } else { without_digests(side.clone()) };
            options.push(compare(ours, self.side(target, digests).await?));
        }
        Ok(options)
    }

    /// Deploys the build live stage `from` runs now to stage `to`, with `to`'s own
    /// configuration; the release and the timeline name where it came from. Needs the right
    /// to deploy to `to` (a developer cannot promote to PROD).
    pub async fn promote(&self, project_id: &str, from: &str, to: &str) -> Result<Release, Error> {
        let source = self.live(self.allow_stage(Action::ReadStage, project_id, from).await?)?;
        if from == to {
            return Err(Error::validation("to", "A stage cannot be promoted to itself: choose another stage."));
        }
        let current = self.store.list_releases(project_id, &source.id).await.map_err(internal("list the releases"))?;
        let Some(current) = current.into_iter().next() else {
            return Err(Error::invalid_state(format!(
                "Stage '{from}' has no release to promote: deploy a build to it first."
            )));
        };
        self.deploy_from(project_id, to, current.build.number, Some((&source.id, current.number))).await
    }

    /// Creates stage `name` (ID derived from it unless `id` is given, by the popup's rules) like
    /// live stage `source`: its type, configuration (secrets re-sealed for the new stage) and
    /// grace period; with `deploy`, its current build deployed too; with `storage`, a copy of its
    /// persistent storage — only while `source` is suspended, so that nothing writes to it
    /// during the copy.
    pub async fn duplicate_stage(
        &self,
        project_id: &str,
        source: &str,
        name: &str,
        id: Option<&str>,
        copy: Duplicate,
    ) -> Result<Stage, Error> {
        let Duplicate { deploy, storage } = copy;
        let source = self.live(self.allow_stage(Action::ReadStage, project_id, source).await?)?;
        if storage && source.status != pergola_domain::StageStatus::Suspended {
            return Err(Error::invalid_state(format!(
                "Suspend stage '{}' first: its storage is copied while nothing writes to it.",
                source.id
            )));
        }
        // Everything the copy takes is checked before anything is created.
        self.allow(Action::ConfigureStage, Some(source.stage_type), project_id).await?;
        if deploy {
            self.allow(Action::Deploy, Some(source.stage_type), project_id).await?;
        }
        if storage {
            let running = self.runtime.still_running(&StageKey::new(project_id, &source.id));
            if !running.is_empty() {
                return Err(Error::invalid_state(format!(
                    "Stage '{}' is suspended but {} still running: its storage is copied once nothing of it runs. \
                     Try again when {} ended.",
                    source.id,
                    running.join(", "),
                    if running.len() == 1 { "it has" } else { "they have" }
                )));
            }
        }
        let values =
            self.store.list_config(project_id, &source.id).await.map_err(internal("read the configuration"))?;
        let mut clear = Vec::new();
        for v in values {
            let value = self.open(&v.value, v.secret, Place { project: project_id, stage: &source.id, key: &v.key })?;
            clear.push((v.key, value, v.secret));
        }
        let stage = self.create_stage(project_id, name, source.stage_type, id).await?;
        let now = self.clock.now();
        for (key, value, secret) in &clear {
            let stored = if *secret {
                self.seal(value, Place { project: project_id, stage: &stage.id, key })
            } else {
                value.clone()
            };
            let entry = ConfigValue { key: key.clone(), value: stored, secret: *secret, updated_at: now };
            self.store.set_config(project_id, &stage.id, &entry).await.map_err(internal("copy a setting"))?;
        }
        if stage.grace_secs != source.grace_secs {
            let updated = self.store.update_stage(&stage, &stage.name, stage.stage_type, source.grace_secs, now).await;
            self.proxy_cache.forget_all();
            updated.map_err(internal("set the duplicated stage's grace period"))?;
        }
        if storage {
            let (from, to) = (StageKey::new(project_id, &source.id), StageKey::new(project_id, &stage.id));
            self.runtime.copy_storage(&from, &to).await.map_err(|e| {
                tracing::error!(project_id, stage = stage.id, error = %e, "could not copy a duplicated stage's storage");
                Error::internal()
            })?;
        }
        let message = format!(
            "Duplicated from '{}': {} settings, grace period {} s{}{}.",
            source.id,
            clear.len(),
            source.grace_secs,
            if storage { ", its storage copied" } else { "" },
            if deploy { ", its current build deployed" } else { "" }
        );
        self.record(project_id, &stage.id, StageEvent::new(now, EventKind::Updated, message)).await;
        let stage = self.live_stage(project_id, &stage.id).await?;
        if deploy {
            let current =
                self.store.list_releases(project_id, &source.id).await.map_err(internal("list the releases"))?;
            if let Some(current) = current.into_iter().next() {
                self.deploy(project_id, &stage.id, current.build.number).await?;
            }
        }
        Ok(stage)
    }
}
