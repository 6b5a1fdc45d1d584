//! Graph API versions and their end of life: which versions wagate knows, when each expires,
//! and what the proxy does with a request for one that expired or that Meta has not released
//! (`graph.version_policy`). Meta retires a version about two years after its release; calls to
//! a retired one fail, so wagate says so before they do (a response header and a metric within
//! `graph.version_warning_days`) and can move callers forward (`upgrade`) or refuse early.

use std::collections::BTreeMap;

pub use crate::config::VersionPolicy;
use chrono::NaiveDate;

/// `v23.0` → `(23, 0)`.
pub fn parse_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.strip_prefix('v')?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// What to do with one request's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward, with this version (the caller's, or the minimum when upgraded); `expires` is set
    /// when the caller's version expires within the warning window or already expired.
    Forward {
        version: String,
        expires: Option<NaiveDate>,
    },
    Refuse(String),
}

/// The version table and the policy, built once from `[graph]`.
#[derive(Debug, Clone)]
pub struct VersionGuard {
    /// Known versions; `None`: released, no end of life announced yet.
    table: BTreeMap<(u32, u32), Option<NaiveDate>>,
    policy: VersionPolicy,
    minimum: String,
    warning_days: i64,
}

impl VersionGuard {
    /// `expiry`: version → `YYYY-MM-DD`, or empty for a released version without a date.
    pub fn new(
        expiry: &BTreeMap<String, String>,
        policy: VersionPolicy,
        minimum: &str,
        warning_days: u32,
    ) -> Result<Self, String> {
        let mut table = BTreeMap::new();
        for (version, date) in expiry {
            let key = parse_version(version).ok_or_else(|| {
                format!("graph.version_expiry: '{version}' is not a version such as v23.0")
            })?;
            let date = match date.trim() {
                "" => None,
                d => Some(NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                    format!("graph.version_expiry.\"{version}\": '{d}' is not a date such as 2027-01-21")
                })?),
            };
            table.insert(key, date);
        }
        if policy == VersionPolicy::Upgrade && parse_version(minimum).is_none() {
            return Err("graph.minimum_version must be a version such as v23.0 when graph.version_policy = \"upgrade\"".into());
        }
        Ok(Self {
            table,
            policy,
            minimum: minimum.to_owned(),
            warning_days: i64::from(warning_days),
        })
    }

    /// When `version` expires, if wagate knows; `Err(())` for a version newer than any it knows.
    fn expiry(&self, version: (u32, u32)) -> Result<Option<NaiveDate>, ()> {
        if let Some(date) = self.table.get(&version) {
            return Ok(*date);
        }
        match (self.table.keys().next(), self.table.keys().next_back()) {
            // Older than every known version: long expired.
            (Some(oldest), _) if version < *oldest => Ok(Some(NaiveDate::MIN)),
            (_, Some(newest)) if version > *newest => Err(()),
            _ => Ok(None),
        }
    }

    /// The verdict for a request for `version` on `today`.
    pub fn check(&self, version: &str, today: NaiveDate) -> Verdict {
        let Some(parsed) = parse_version(version) else {
            return Verdict::Forward {
                version: version.to_owned(),
                expires: None,
            };
        };
        let (problem, expires) = match self.expiry(parsed) {
            Ok(Some(date)) if date <= today => (
                Some(if date == NaiveDate::MIN {
                    format!("Graph API {version} is no longer supported by Meta")
                } else {
                    format!("Graph API {version} expired on {date}")
                }),
                (date != NaiveDate::MIN).then_some(date),
            ),
            Ok(Some(date)) => (
                None,
                ((date - today).num_days() <= self.warning_days).then_some(date),
            ),
            Ok(None) => (None, None),
            Err(()) => (
                Some(format!(
                    "Graph API {version} is not a version Meta has released"
                )),
                None,
            ),
        };
        match (problem, self.policy) {
            (None, _) | (Some(_), VersionPolicy::Forward) => Verdict::Forward {
                version: version.to_owned(),
                expires,
            },
            (Some(_), VersionPolicy::Upgrade) => Verdict::Forward {
                version: self.minimum.clone(),
                expires,
            },
            (Some(problem), VersionPolicy::Refuse) => Verdict::Refuse(format!(
                "{problem}; call a current version (see https://developers.facebook.com/docs/graph-api/changelog)"
            )),
        }
    }

    /// Whether wagate's own calls with `version` need a warning at start: expired, or within
    /// the warning window, as of `today`.
    pub fn warning_for(&self, version: &str, today: NaiveDate) -> Option<String> {
        let date = self.expiry(parse_version(version)?).ok().flatten()?;
        if date <= today {
            Some(format!("{version} expired on {date}"))
        } else if (date - today).num_days() <= self.warning_days {
            Some(format!("{version} expires on {date}"))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(policy: VersionPolicy) -> VersionGuard {
        let table: BTreeMap<String, String> = [
            ("v20.0", "2026-09-24"),
            ("v21.0", "2027-01-21"),
            ("v23.0", "2027-10-08"),
            ("v26.0", ""),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        VersionGuard::new(&table, policy, "v23.0", 90).unwrap()
    }

    #[test]
    fn verdicts() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let date = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let forward = guard(VersionPolicy::Forward);
        assert_eq!(
            forward.check("v21.0", today),
            Verdict::Forward {
                version: "v21.0".into(),
                expires: Some(date("2027-01-21"))
            }
        );
        assert_eq!(
            forward.check("v23.0", today),
            Verdict::Forward {
                version: "v23.0".into(),
                expires: None
            }
        );
        assert_eq!(
            forward.check("v20.0", today),
            Verdict::Forward {
                version: "v20.0".into(),
                expires: Some(date("2026-09-24"))
            }
        );
        let upgrade = guard(VersionPolicy::Upgrade);
        assert_eq!(
            upgrade.check("v20.0", today),
            Verdict::Forward {
                version: "v23.0".into(),
                expires: Some(date("2026-09-24"))
            }
        );
        assert_eq!(
            upgrade.check("v99.0", today),
            Verdict::Forward {
                version: "v23.0".into(),
                expires: None
            }
        );
        assert_eq!(
            upgrade.check("v26.0", today),
            Verdict::Forward {
                version: "v26.0".into(),
                expires: None
            }
        );
        let refuse = guard(VersionPolicy::Refuse);
        assert!(
            matches!(refuse.check("v19.0", today), Verdict::Refuse(m) if m.contains("no longer supported"))
        );
        assert!(
            matches!(refuse.check("v27.0", today), Verdict::Refuse(m) if m.contains("not a version Meta has released"))
        );
        assert!(
            matches!(refuse.check("v22.0", today), Verdict::Forward { .. }),
            "between known versions"
        );
        assert_eq!(
            forward.warning_for("v21.0", today).as_deref(),
            Some("v21.0 expires on 2027-01-21")
        );
        assert_eq!(forward.warning_for("v23.0", today), None);
        assert!(VersionGuard::new(&BTreeMap::new(), VersionPolicy::Upgrade, "", 90).is_err());
    }
}
