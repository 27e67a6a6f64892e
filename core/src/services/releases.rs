//! Builds and releases.

use super::{internal, Acting, Services, ANSWER_WITHIN};
use crate::StoreError;
use pergola_domain::access::Action;
use pergola_domain::{parse_manifest, Build, Error, EventKind, Release, StageEvent, StageStatus};
use std::collections::BTreeMap;

impl Acting {
    /// Registers a build of a project from its manifest; the build's files are in `workdir`
    /// (an absolute directory on this machine). A malformed manifest is refused with the line
    /// and the reason.
    pub async fn register_build(&self, project_id: &str, manifest: &str, workdir: &str) -> Result<Build, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::RegisterBuild, None, project_id).await?;
        let parsed = parse_manifest(manifest)?;
        let workdir = workdir.trim();
        if !std::path::Path::new(workdir).is_absolute() {
            return Err(Error::validation("workdir", "The build directory must be an absolute path."));
        }
        if !std::path::Path::new(workdir).is_dir() {
            return Err(Error::validation("workdir", format!("There is no directory '{workdir}' on the server.")));
        }
        let mut build = Build {
            project_id: project_id.to_owned(),
            number: 0,
            version: parsed.version,
            manifest: manifest.to_owned(),
            workdir: workdir.to_owned(),
            created_at: self.clock.now(),
        };
        let uid = uuid::Uuid::new_v4().to_string();
        build.number = retry_on_conflict(|| self.store.insert_build(&uid, &build), internal("insert a build")).await?;
        let version = build.version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
        let message = format!("Build {}{version} registered from {}.", build.number, build.workdir);
        self.audit(Some(project_id), None, "build.registered", &build.number.to_string(), message).await;
        Ok(build)
    }

    /// A project's builds, newest first.
    pub async fn builds(&self, project_id: &str) -> Result<Vec<Build>, Error> {
        self.get_project(project_id).await?;
        let rows = self.store.list_builds(project_id).await.map_err(internal("list the builds"))?;
        Ok(rows.into_iter().map(|r| r.build).collect())
    }

    /// Deploys a build to a live stage as its new release, with a snapshot of the stage's
    /// configuration. The new release replaces the running one.
    pub async fn deploy(&self, project_id: &str, stage_id: &str, build_number: i64) -> Result<Release, Error> {
        self.deploy_from(project_id, stage_id, build_number, None).await
    }

    /// [`Acting::deploy`], recording that the build was promoted from `origin` (a stage of the
    /// project and its release) when it was.
    pub(super) async fn deploy_from(
        &self,
        project_id: &str,
        stage_id: &str,
        build_number: i64,
        origin: Option<(&str, i64)>,
    ) -> Result<Release, Error> {
        self.live(self.allow_stage(Action::Deploy, project_id, stage_id).await?)?;
        let build = self
            .store
            .get_build(project_id, build_number)
            .await
            .map_err(internal("read a build to deploy"))?
            .ok_or_else(|| {
            Error::validation("build", format!("Project '{project_id}' has no build {build_number}."))
        })?;
        // The snapshot keeps secret values sealed, as the stage's configuration does (the same
        // sealed form: same project, stage and key); plain values that would read as sealed
        // are marked plain.
        let config: BTreeMap<String, String> = self
            .store
            .list_config(project_id, stage_id)
            .await
            .map_err(internal("snapshot the configuration for a release"))?
            .into_iter()
            .map(|v| (v.key, Services::to_snapshot(v.value, v.secret)))
            .collect();
        let now = self.clock.now();
        let number = retry_on_conflict(
            || self.store.insert_release(project_id, stage_id, &build.uid, &config, now, origin.map(|o| o.0)),
            internal("insert a release"),
        )
        .await?;
        let Some(number) = number else {
            return Err(self.live_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        };
        // This deploy's release (a concurrent one may already have recorded a newer one).
        let release = self
            .release_rows(project_id, stage_id)
            .await?
            .into_iter()
            .find(|r| r.number == number)
            .ok_or_else(Error::internal)?;
        let version = build.build.version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
        // A suspended stage keeps its new release for when it is resumed.
        let stage = self.live_stage(project_id, stage_id).await?;
        let when = if stage.status == StageStatus::Running { "" } else { "; it runs when the stage is resumed" };
        let from = origin
            .map(|(stage, release)| format!(", promoted from '{stage}' (its release {release})"))
            .unwrap_or_default();
        let message = format!("Release {} deployed: build {build_number}{version}{from}{when}.", release.number);
        self.record(project_id, stage_id, StageEvent::new(now, EventKind::Deployed, message)).await;
        if stage.status == StageStatus::Running {
            // The previous release stops gracefully first, which may take the grace period:
            // answer after a moment and let it go on in the background (the stage page shows
            // the old components stopping, then the new ones starting).
            let services = self.services().clone();
            // A start that fails records why in the stage's timeline (`start_current`).
            let task = tokio::spawn(async move { services.start_current(&stage).await });
            if let Ok(Ok(Err(e))) = tokio::time::timeout(ANSWER_WITHIN, task).await {
                return Err(e);
            }
        }
        Ok(release)
    }

    /// Deploys the build of an earlier release again (a rollback), with today's configuration.
    pub async fn redeploy(&self, project_id: &str, stage_id: &str, release_number: i64) -> Result<Release, Error> {
        let releases = self.releases(project_id, stage_id).await?;
        let earlier = releases
            .iter()
            .find(|r| r.number == release_number)
            .ok_or_else(|| Error::not_found(format!("Stage '{stage_id}' has no release {release_number}.")))?;
        self.deploy(project_id, stage_id, earlier.build_number).await
    }

    /// A stage's releases, newest (the running one) first.
    pub async fn releases(&self, project_id: &str, stage_id: &str) -> Result<Vec<Release>, Error> {
        self.allow_stage(Action::ReadStage, project_id, stage_id).await?;
        self.release_rows(project_id, stage_id).await
    }
}

impl Services {
    /// A stage's releases, newest first, whoever asks.
    pub(super) async fn release_rows(&self, project_id: &str, stage_id: &str) -> Result<Vec<Release>, Error> {
        let rows = self.store.list_releases(project_id, stage_id).await.map_err(internal("list the releases"))?;
        Ok(rows
            .into_iter()
            .map(|r| Release {
                project_id: project_id.to_owned(),
                stage_id: stage_id.to_owned(),
                number: r.number,
                build_number: r.build.number,
                build_version: r.build.version,
                config_keys: r.config.into_keys().collect(),
                created_at: r.created_at,
                promoted_from: r.promoted_from,
            })
            .collect())
    }
}

/// Runs a numbered insert again when a concurrent one took the same number; `failed` (an
/// [`internal`] made where the insert is) logs and answers a failure.
pub(super) async fn retry_on_conflict<T, F, Fut>(
    mut insert: F,
    failed: impl FnOnce(StoreError) -> Error,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    for _ in 0..20 {
        match insert().await {
            Err(StoreError::Conflict) => continue,
            other => return other.map_err(failed),
        }
    }
    Err(failed(StoreError::Conflict))
}
