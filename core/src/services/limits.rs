//! Administration: the resource limits of each stage type, and how this server isolates
//! components (the dashboard's banner when they run unsandboxed).

use super::{internal, Acting, Services};
use pergola_domain::access::Action;
use pergola_domain::{Error, Isolation, LimitsPolicy};

/// The settings key of the limits (one JSON value: a change is saved whole).
const LIMITS_KEY: &str = "limits.policy";

impl Services {
    /// The limits in force (the defaults until an administrator changes them). An unreadable
    /// stored value is logged and the defaults apply.
    pub async fn limits(&self) -> Result<LimitsPolicy, Error> {
        let stored = self.store.get_setting(LIMITS_KEY).await.map_err(internal("read the resource limits"))?;
        let Some(text) = stored else { return Ok(LimitsPolicy::default()) };
        match serde_json::from_str::<LimitsPolicy>(&text) {
            Ok(policy) if policy.validate().is_ok() => Ok(policy),
            _ => {
                tracing::warn!(key = LIMITS_KEY, "ignoring unreadable resource limits; the defaults apply");
                Ok(LimitsPolicy::default())
            }
        }
    }

    /// How components are isolated and limited here (`None` when this server runs nothing).
    pub fn isolation(&self) -> Option<Isolation> {
        self.runtime.isolation()
    }
}

impl Acting {
    /// Sets the limits per stage type (checked against the same bounds as an administrator's
    /// input). Components started from now on get them; running ones keep theirs until they
    /// start again (a deploy, a resume, a restart).
    pub async fn set_limits(&self, policy: LimitsPolicy) -> Result<LimitsPolicy, Error> {
        self.allow(Action::AdministerPolicies, None, "").await?;
        policy.validate()?;
        let text = serde_json::to_string(&policy).map_err(|e| {
            tracing::error!(error = %e, "cannot serialize the resource limits");
            Error::internal()
        })?;
        self.store.put_settings(&[(LIMITS_KEY, text)]).await.map_err(internal("save the resource limits"))?;
        let message = format!("Resource limits set: {}.", policy.describe());
        self.audit(None, None, "limits.updated", "limits", message).await;
        Ok(policy)
    }
}
