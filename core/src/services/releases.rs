//! Builds and releases.

use super::{internal, Acting, Services, ANSWER_WITHIN};
use crate::artifacts::{Artifacts, Compression};
use crate::store::ArtifactRow;
use crate::StoreError;
use pergola_domain::access::Action;
use pergola_domain::{
    parse_manifest, Build, BuildListing, BuildStage, Error, EventKind, Release, StageEvent, StageStatus,
};
use std::collections::BTreeMap;

/// The refusal of a build registered by a server path while `PERGOLA_PATH_BUILDS` is off.
pub const PATH_BUILDS_OFF: &str = "Builds are uploaded as archives: send the build's directory packed (tar + gzip or \
     zstd, its pergola.toml at the root) with Content-Type application/gzip or application/zstd, e.g. \
     `pergola create build --dir DIR`. Registering a directory on the server is turned off (PERGOLA_PATH_BUILDS).";

impl Acting {
    /// Registers a build uploaded as an archive (`body`, tar compressed with `compression`):
    /// streamed to the artifact store, hashed and counted (refused past the size limit with
    /// [`pergola_domain::ErrorKind::TooLarge`]), unpacked safely once per content (see
    /// [`crate::artifacts`]) and recorded under the project's next build number. Its manifest
    /// is the archive's `pergola.toml`; a bad one is refused with the line and the reason. A
    /// refused archive leaves nothing behind: no file, no row. `announced` is the length the
    /// request said it has: over the limit, nothing is read.
    pub async fn upload_build(
        &self,
        project_id: &str,
        compression: Compression,
        announced: Option<u64>,
        body: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<Build, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::RegisterBuild, None, project_id).await?;
        let artifacts = self.artifact_store()?;
        if announced.is_some_and(|n| n > artifacts.limits().max_archive_bytes) {
            return Err(artifacts.too_large());
        }
        let received = artifacts.receive(body, compression).await?;
        let (stored, _placing) = artifacts.keep(received).await?;
        let parsed = parse_manifest(&stored.manifest)?;
        let now = self.clock.now();
        let row = ArtifactRow {
            digest: stored.digest.clone(),
            compression: stored.compression.as_str().to_owned(),
            size: stored.size,
            unpacked_size: stored.unpacked_size,
            created_at: now,
            deleted_at: None,
        };
        self.store.upsert_artifact(&row).await.map_err(internal("record an artifact"))?;
        let mut build = Build {
            project_id: project_id.to_owned(),
            number: 0,
            version: parsed.version,
            manifest: stored.manifest,
            workdir: stored.dir.display().to_string(),
            created_at: now,
            digest: Some(stored.digest),
            size: Some(stored.size),
            unpacked_size: Some(stored.unpacked_size),
            uploaded_by: Some(self.caller().username.clone()),
            expired: false,
        };
        let uid = uuid::Uuid::new_v4().to_string();
        build.number = retry_on_conflict(|| self.store.insert_build(&uid, &build), internal("insert a build")).await?;
        let version = build.version.as_deref().map(|v| format!(" ({v})")).unwrap_or_default();
        let message = format!(
            "Build {}{version} uploaded: {} ({} bytes).",
            build.number,
            build.digest.as_deref().unwrap_or_default(),
            stored.size
        );
        self.audit(Some(project_id), None, "build.uploaded", &build.number.to_string(), message).await;
        Ok(build)
    }

    /// Registers a build of a project from its manifest and a directory on this machine
    /// (`workdir`, absolute) — only for administrators, and only when the server allows it
    /// (`PERGOLA_PATH_BUILDS=on`): otherwise builds are uploaded ([`Self::upload_build`]). A
    /// malformed manifest is refused with the line and the reason.
    pub async fn register_build(&self, project_id: &str, manifest: &str, workdir: &str) -> Result<Build, Error> {
        self.get_project(project_id).await?;
        self.allow(Action::RegisterBuild, None, project_id).await?;
        if !self.path_builds {
            return Err(Error::validation("workdir", PATH_BUILDS_OFF));
        }
        if !self.caller().is_admin {
            return Err(Error::forbidden(
                "Only administrators may register a build by a directory on the server; upload the build as an \
                 archive instead.",
            ));
        }
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
            digest: None,
            size: None,
            unpacked_size: None,
            uploaded_by: Some(self.caller().username.clone()),
            expired: false,
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

    /// A project's builds, newest first, each with where it runs: the live stages whose current
    /// release is of it (the dashboard's Builds page).
    pub async fn build_listing(&self, project_id: &str) -> Result<Vec<BuildListing>, Error> {
        let builds = self.builds(project_id).await?;
        let (live, _) = self.live_and_archived(project_id).await?;
        let ids: Vec<String> = live.iter().map(|s| s.id.clone()).collect();
        let mut current: BTreeMap<String, Release> = BTreeMap::new();
        // One statement per page-sized batch (a statement binds a bounded number of values).
        for batch in ids.chunks(pergola_domain::MAX_PAGE_SIZE as usize) {
            let releases = self.store.current_releases(project_id, batch).await;
            current.extend(releases.map_err(internal("read the current releases of the stages"))?);
        }
        let mut running: BTreeMap<i64, Vec<BuildStage>> = BTreeMap::new();
        for stage in live {
            let Some(current) = current.remove(&stage.id) else { continue };
            running.entry(current.build_number).or_default().push(BuildStage {
                stage_id: stage.id,
                stage_name: stage.name,
                stage_type: stage.stage_type,
                status: stage.status,
                release: current.number,
            });
        }
        Ok(builds
            .into_iter()
            .map(|build| {
                let components = parse_manifest(&build.manifest)
                    .map(|m| m.components.iter().map(|c| format!("{} ({})", c.name, c.kind.as_str())).collect())
                    .unwrap_or_default();
                BuildListing { running_on: running.remove(&build.number).unwrap_or_default(), build, components }
            })
            .collect())
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
        // Retention does not delete an artifact while this deploy checks it and records its
        // release (which then keeps it).
        let reading = match &self.artifacts {
            Some(a) => Some(a.read().await),
            None => None,
        };
        let build = self
            .store
            .get_build(project_id, build_number)
            .await
            .map_err(internal("read a build to deploy"))?
            .ok_or_else(|| {
            Error::validation("build", format!("Project '{project_id}' has no build {build_number}."))
        })?;
        if let Some(digest) = &build.build.digest {
            let there = self.artifacts.as_ref().is_some_and(|a| a.has(digest));
            if build.build.expired || !there {
                return Err(Error::invalid_state(format!(
                    "Build {build_number}'s artifact ({digest}) was deleted: no release used it for {} days. Upload \
                     the build again to deploy it.",
                    self.artifact_retention.num_days()
                )));
            }
        }
        // A build this server's runtime cannot run (a ready image on the local runtime) is
        // refused here, with the running release left as it is.
        for component in parse_manifest(&build.build.manifest)?.components {
            if let Err(reason) = self.runtime.can_run(&component) {
                return Err(Error::invalid_state(format!("Build {build_number} cannot run here: {reason}")));
            }
        }
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
        drop(reading);
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
    /// The artifact store, or the internal error when this server has none.
    fn artifact_store(&self) -> Result<&Artifacts, Error> {
        self.artifacts.as_ref().ok_or_else(|| {
            tracing::error!("an upload came, but the services have no artifact store");
            Error::internal()
        })
    }

    /// Deletes the artifacts no release (of a live or archived stage) runs and no build of the
    /// last retention period (`PERGOLA_ARTIFACT_RETENTION_DAYS`) refers to: their files go, their
    /// builds stay listed as expired. Returns the digests deleted. A file that cannot be deleted
    /// is logged (an upload of the same bytes takes it back).
    pub async fn purge_artifacts(&self) -> Result<Vec<String>, Error> {
        let Some(artifacts) = &self.artifacts else { return Ok(Vec::new()) };
        let now = self.clock.now();
        let before = now - self.artifact_retention;
        let _deleting = artifacts.write().await;
        let unused = self.store.unused_artifacts(before).await.map_err(internal("list the unused artifacts"))?;
        let mut deleted = Vec::new();
        for digest in unused {
            let marked = self.store.mark_artifact_deleted(&digest, before, now).await;
            if !marked.map_err(internal("mark an artifact deleted"))? {
                continue;
            }
            match artifacts.delete(&digest).await {
                Ok(()) => tracing::info!(digest, "unused artifact deleted"),
                Err(e) => tracing::warn!(digest, error = %e, "could not delete an unused artifact's files"),
            }
            deleted.push(digest);
        }
        Ok(deleted)
    }

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
