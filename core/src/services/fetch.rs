//! Downloading a release's build: for a member who may deploy to the stage, and for whoever
//! holds a build-fetch token — what a pod's init container on Kubernetes is given to download
//! the build it runs (Heroku's slug model). A token names one release of one stage, ends after
//! a short time, and opens nothing else: it is the grant sealed with the server's key (bound to
//! the stage), so it cannot be forged, altered or moved to another stage, and the server keeps
//! no list of them.

use super::{internal, Acting, Services};
// The sealed form a token carries: the current one, with associated data (a v1 value,
// without, is never accepted).
use crate::secrets::{Place, PREFIX as SEALED};
use chrono::{DateTime, Duration, TimeZone, Utc};
use pergola_domain::access::Action;
use pergola_domain::Error;
use std::path::PathBuf;

/// How many builds are packed for downloads at once, at most.
pub const DOWNLOADS_AT_ONCE: usize = 4;

/// How build-fetch tokens start.
pub const FETCH_TOKEN_PREFIX: &str = "pgf_";
/// How long a build-fetch token works by default.
pub const FETCH_TOKEN_TTL: Duration = Duration::minutes(15);
/// The key of the token's place: a NUL cannot be in a setting's key, so no configuration value
/// sealed for the stage reads as a token, nor a token as one.
const TOKEN_KEY: &str = "\0build-fetch";

/// What a build-fetch token allows: downloading release `release`'s build of a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildGrant {
    pub project: String,
    pub stage: String,
    pub release: i64,
    pub expires_at: DateTime<Utc>,
}

/// A release's build, ready to be packed: its files and its manifest.
#[derive(Clone, Debug)]
pub struct BuildFiles {
    pub dir: PathBuf,
    pub manifest: String,
    /// `PROJECT-STAGE-release-N.tar.gz`, for the download's name.
    pub file_name: String,
}

/// A token for release `release`'s build of a stage, ending at `expires`.
fn mint(secrets: &crate::SecretBox, expires: DateTime<Utc>, project: &str, stage: &str, release: i64) -> String {
    let sealed =
        secrets.seal(&format!("{release}\n{}", expires.timestamp_millis()), Place { project, stage, key: TOKEN_KEY });
    format!("{FETCH_TOKEN_PREFIX}{project}/{stage}/{}", &sealed[SEALED.len()..])
}

impl Services {
    /// A place among the [`DOWNLOADS_AT_ONCE`] builds being packed for downloads, held until
    /// the packing ends; `None` while they are all taken.
    pub fn download_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.downloads.clone().try_acquire_owned().ok()
    }

    /// A token that lets its bearer download release `release`'s build of the stage for `ttl`.
    /// Needs the server's secret key.
    pub fn build_fetch_token(&self, project: &str, stage: &str, release: i64, ttl: Duration) -> Result<String, Error> {
        let Some(secrets) = &self.secrets else {
            tracing::error!("a build-fetch token needs the server's secret key");
            return Err(Error::internal());
        };
        Ok(mint(secrets, self.clock.now() + ttl, project, stage, release))
    }

    /// What the runtime mints its releases' build-fetch tokens with ([`FETCH_TOKEN_TTL`]
    /// each); it holds the server's key and clock, not the services.
    pub(super) fn build_minter(&self) -> crate::BuildMinter {
        let (secrets, clock) = (self.secrets.clone(), self.clock.clone());
        std::sync::Arc::new(move |key: &crate::StageKey, release: i64| {
            let secrets = secrets.as_ref()?;
            Some(mint(secrets, clock.now() + FETCH_TOKEN_TTL, &key.project, &key.stage, release))
        })
    }

    /// What a build-fetch token allows, if it is one of this server's and has not ended.
    pub fn build_grant(&self, token: &str) -> Option<BuildGrant> {
        let rest = token.strip_prefix(FETCH_TOKEN_PREFIX)?;
        let mut parts = rest.splitn(3, '/');
        let (project, stage, sealed) = (parts.next()?, parts.next()?, parts.next()?);
        if project.is_empty() || stage.is_empty() || sealed.is_empty() || !sealed.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let opened =
            self.secrets.as_ref()?.open(&format!("{SEALED}{sealed}"), Place { project, stage, key: TOKEN_KEY }).ok()?;
        let (release, expires) = opened.split_once('\n')?;
        let expires_at = Utc.timestamp_millis_opt(expires.parse().ok()?).single()?;
        let release = release.parse().ok()?;
        (self.clock.now() < expires_at).then(|| BuildGrant {
            project: project.to_owned(),
            stage: stage.to_owned(),
            release,
            expires_at,
        })
    }

    /// The build of release `number` of a stage, for the holder of `grant` (which must name
    /// exactly that release).
    pub async fn granted_build(
        &self,
        grant: &BuildGrant,
        project_id: &str,
        stage_id: &str,
        number: i64,
    ) -> Result<BuildFiles, Error> {
        if (grant.project.as_str(), grant.stage.as_str(), grant.release) != (project_id, stage_id, number) {
            return Err(Error::forbidden("This build-fetch token is for another release."));
        }
        self.build_files(project_id, stage_id, number).await
    }

    async fn build_files(&self, project_id: &str, stage_id: &str, number: i64) -> Result<BuildFiles, Error> {
        let releases = self
            .store
            .list_releases(project_id, stage_id)
            .await
            .map_err(internal("list the releases of a download"))?;
        let Some(release) = releases.into_iter().find(|r| r.number == number) else {
            return Err(Error::not_found(format!("Stage '{stage_id}' has no release {number}.")));
        };
        let build = release.build;
        if build.digest.is_none() {
            return Err(Error::invalid_state(format!(
                "Release {number} runs build {}, registered by a directory on the server: only uploaded builds can be \
                 downloaded.",
                build.number
            )));
        }
        if build.expired {
            return Err(Error::invalid_state(format!(
                "The files of build {} were deleted (no release ran it for the retention period).",
                build.number
            )));
        }
        Ok(BuildFiles {
            dir: PathBuf::from(build.workdir),
            manifest: build.manifest,
            file_name: format!("{project_id}-{stage_id}-release-{number}.tar.gz"),
        })
    }
}

impl Acting {
    /// The build of release `number` of a stage, for a member who may deploy to it.
    pub async fn release_build(&self, project_id: &str, stage_id: &str, number: i64) -> Result<BuildFiles, Error> {
        let stage = self.allow_stage(Action::Deploy, project_id, stage_id).await?;
        self.live(stage)?;
        self.build_files(project_id, stage_id, number).await
    }
}
