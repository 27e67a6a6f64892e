//! Administration: the retention of archived stages.

use super::{internal, Acting, Services};
use pergola_domain::access::Action;
use pergola_domain::{Error, RetentionPolicy, StageType};

const RETENTION_KEYS: [(StageType, &str); 3] = [
    (StageType::Dev, "retention.dev_days"),
    (StageType::Qa, "retention.qa_days"),
    (StageType::Prod, "retention.prod_days"),
];

impl Services {
    /// The retention policy in force (the seed's defaults until an administrator changes it).
    pub async fn retention(&self) -> Result<RetentionPolicy, Error> {
        let mut policy = RetentionPolicy::default();
        for (t, key) in RETENTION_KEYS {
            let stored = self.store.get_setting(key).await.map_err(internal("read a retention setting"))?;
            let days = match stored.as_deref().map(str::parse::<u32>) {
                None => continue,
                Some(Ok(d)) => d,
                Some(Err(_)) => {
                    tracing::warn!(key, ?stored, "ignoring unreadable retention setting");
                    continue;
                }
            };
            match t {
                StageType::Dev => policy.dev_days = days,
                StageType::Qa => policy.qa_days = days,
                StageType::Prod => policy.prod_days = days,
            }
        }
        Ok(policy)
    }
}

impl Acting {
    /// Sets the retention per type (checked against the same bounds as an administrator's
    /// input). Applies to stages archived from now on; already archived stages keep their
    /// deletion date.
    pub async fn set_retention(&self, policy: RetentionPolicy) -> Result<RetentionPolicy, Error> {
        self.allow(Action::AdministerPolicies, None, "").await?;
        policy.validate()?;
        let pairs: Vec<(&str, String)> =
            RETENTION_KEYS.iter().map(|(t, key)| (*key, policy.days(*t).to_string())).collect();
        self.store.put_settings(&pairs).await.map_err(internal("save the retention settings"))?;
        let message = format!(
            "Retention set: DEV {} days, QA {} days, PROD {} days.",
            policy.dev_days, policy.qa_days, policy.prod_days
        );
        self.audit(None, None, "retention.updated", "retention", message).await;
        Ok(policy)
    }
}
