//! How long an archived (deleted) stage can still be restored, per stage type.

use crate::{Error, StageType};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Retention in whole days per stage type. The seed's defaults: DEV 1, QA 7, PROD 30.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionPolicy {
    pub dev_days: u32,
    pub qa_days: u32,
    pub prod_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { dev_days: 1, qa_days: 7, prod_days: 30 }
    }
}

impl RetentionPolicy {
    /// The longest retention an administrator may set (ten years).
    pub const MAX_DAYS: u32 = 3650;

    pub fn days(&self, t: StageType) -> u32 {
        match t {
            StageType::Dev => self.dev_days,
            StageType::Qa => self.qa_days,
            StageType::Prod => self.prod_days,
        }
    }

    /// When a stage of type `t` archived at `archived_at` is deleted for good.
    pub fn due_at(&self, t: StageType, archived_at: DateTime<Utc>) -> DateTime<Utc> {
        archived_at + Duration::days(i64::from(self.days(t)))
    }

    /// Parses an administrator's input (one text per type) into a policy, or explains which
    /// value is wrong (`field` is `retention_dev`, `retention_qa` or `retention_prod`).
    pub fn parse(dev: &str, qa: &str, prod: &str) -> Result<Self, Error> {
        Ok(Self {
            dev_days: parse_days(StageType::Dev, dev)?,
            qa_days: parse_days(StageType::Qa, qa)?,
            prod_days: parse_days(StageType::Prod, prod)?,
        })
    }

    /// Checks a policy built elsewhere (API, store) against the same bounds.
    pub fn validate(&self) -> Result<(), Error> {
        for t in StageType::ALL {
            parse_days(t, &self.days(t).to_string())?;
        }
        Ok(())
    }
}

fn parse_days(t: StageType, input: &str) -> Result<u32, Error> {
    let field = format!("retention_{}", t.as_str());
    let max = RetentionPolicy::MAX_DAYS;
    let msg = || format!("Retention for {} must be a whole number of days from 1 to {max}.", t.label());
    match input.trim().parse::<u32>() {
        Ok(d) if (1..=max).contains(&d) => Ok(d),
        _ => Err(Error::validation(&field, msg())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn defaults_follow_the_seed() {
        let p = RetentionPolicy::default();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        assert_eq!(p.due_at(StageType::Dev, t0), t0 + Duration::days(1));
        assert_eq!(p.due_at(StageType::Qa, t0), t0 + Duration::days(7));
        assert_eq!(p.due_at(StageType::Prod, t0), t0 + Duration::days(30));
    }

    #[test]
    fn parse_accepts_whole_days_and_explains_bad_values() {
        let p = RetentionPolicy::parse("2", " 14 ", "90").unwrap();
        assert_eq!((p.dev_days, p.qa_days, p.prod_days), (2, 14, 90));
        for (dev, qa, prod, field) in [
            ("0", "7", "30", "retention_dev"),
            ("1", "-3", "30", "retention_qa"),
            ("1", "7", "1.5", "retention_prod"),
            ("1", "7", "", "retention_prod"),
            ("1", "seven", "30", "retention_qa"),
            ("3651", "7", "30", "retention_dev"),
        ] {
            let e = RetentionPolicy::parse(dev, qa, prod).unwrap_err();
            assert!(e.is_for(field), "{dev}/{qa}/{prod}: {e:?}");
            assert!(e.message.contains("whole number of days from 1 to 3650"));
        }
    }
}
