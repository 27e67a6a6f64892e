//! The configuration of a stage.

use super::{internal, Acting};
use crate::secrets::Place;
use crate::store::ConfigValue;
use pergola_domain::access::Action;
use pergola_domain::{validate_config, ConfigEntry, Error, EventKind, StageEvent};

impl Acting {
    /// The configuration of a live stage; secret values are masked (`None`).
    pub async fn config(&self, project_id: &str, stage_id: &str) -> Result<Vec<ConfigEntry>, Error> {
        self.get_stage(project_id, stage_id).await?;
        let values = self.store.list_config(project_id, stage_id).await.map_err(internal("list the configuration"))?;
        Ok(values.into_iter().map(masked).collect())
    }

    /// The configuration of a stage with secret values, for tests only (the runtime gets
    /// them with the release it starts): never send this to a browser or a client.
    #[cfg(feature = "testing")]
    pub async fn config_values(
        &self,
        project_id: &str,
        stage_id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, Error> {
        let values =
            self.store.list_config(project_id, stage_id).await.map_err(internal("list the configuration values"))?;
        values
            .into_iter()
            .map(|v| {
                let place = Place { project: project_id, stage: stage_id, key: &v.key };
                let value = self.open(&v.value, v.secret, place)?;
                Ok((v.key, value))
            })
            .collect()
    }

    /// Sets one setting of a live stage. It applies with the stage's next release.
    pub async fn set_config(
        &self,
        project_id: &str,
        stage_id: &str,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<ConfigEntry, Error> {
        let key = key.trim();
        self.live(self.allow_stage(Action::ConfigureStage, project_id, stage_id).await?)?;
        validate_config(key, value)?;
        // A secret's value is sealed before it reaches the database.
        // It is bound to its place: copied into another stage's or key's row, it does not open.
        let stored = if secret {
            self.seal(value, Place { project: project_id, stage: stage_id, key })
        } else {
            value.to_owned()
        };
        let entry = ConfigValue { key: key.to_owned(), value: stored, secret, updated_at: self.clock.now() };
        if !self.store.set_config(project_id, stage_id, &entry).await.map_err(internal("set a setting"))? {
            return Err(self.live_stage(project_id, stage_id).await.err().unwrap_or_else(Error::internal));
        }
        let what = if secret { "Secret" } else { "Setting" };
        let message = format!("{what} {key} set; it applies with the next release.");
        self.record(project_id, stage_id, StageEvent::new(entry.updated_at, EventKind::ConfigChanged, message)).await;
        Ok(masked(entry))
    }

    /// Removes one setting of a live stage.
    pub async fn unset_config(&self, project_id: &str, stage_id: &str, key: &str) -> Result<(), Error> {
        self.live(self.allow_stage(Action::ConfigureStage, project_id, stage_id).await?)?;
        if !self.store.unset_config(project_id, stage_id, key.trim()).await.map_err(internal("unset a setting"))? {
            return Err(Error::not_found(format!("Stage '{stage_id}' has no setting '{}'.", key.trim())));
        }
        let message = format!("Setting {} removed; this applies with the next release.", key.trim());
        self.record(project_id, stage_id, StageEvent::new(self.clock.now(), EventKind::ConfigChanged, message)).await;
        Ok(())
    }
}

/// What leaves the server of a setting: a secret's value stays behind.
pub(super) fn masked(v: ConfigValue) -> ConfigEntry {
    ConfigEntry { value: (!v.secret).then_some(v.value), key: v.key, secret: v.secret, updated_at: v.updated_at }
}
