//! What status judges by: the configuration's `[policy]`, jobs and pools, defaults applied.

use super::*;

/// The policy, with the defaults of [`settings::Policy`] applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub copies: u32,
    pub kinds: u32,
    pub offsite: u32,
    pub offline: u32,
    /// `None`: no drill required.
    #[serde(rename = "drill_within_seconds", serialize_with = "secs_opt")]
    pub drill_within: Option<Duration>,
    pub primary_kind: MediumKind,
    #[serde(rename = "stale_after_seconds", serialize_with = "secs")]
    pub stale_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            copies: settings::POLICY_COPIES,
            kinds: settings::POLICY_KINDS,
            offsite: settings::POLICY_OFFSITE,
            offline: settings::POLICY_OFFLINE,
            drill_within: Some(Duration::from_secs(30 * 86_400)),
            primary_kind: MediumKind::Disk,
            stale_after: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A configured job, as status judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub rpo: Option<Duration>,
    /// Late for this long past the RPO, breached after (default: the RPO).
    pub rpo_grace: Duration,
    /// `pin = true`: every enrolled medium must hold its newest snapshot (`pinned.rs`).
    pub pin: bool,
}

/// A pool's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSpec {
    pub rotate_every: Option<Duration>,
    pub stale_after: Option<Duration>,
}

/// What status judges by: the policy, the jobs and the pools of the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub policy: Policy,
    pub jobs: Vec<JobSpec>,
    pub pools: BTreeMap<String, PoolSpec>,
}

pub(super) fn duration(v: Option<&str>) -> Result<Option<Duration>, TimeError> {
    v.map(timefmt::parse_duration).transpose()
}

impl Settings {
    /// The settings of a configuration file, defaults applied.
    ///
    /// # Errors
    /// A duration that does not parse (`settings::read` refuses those already).
    pub fn from_config(cfg: &Config) -> Result<Settings, TimeError> {
        let p = &cfg.policy;
        let d = Policy::default();
        let drill_within = match p.drill_within.as_deref() {
            Some(settings::OFF) => None,
            Some(v) => Some(timefmt::parse_duration(v)?),
            None => d.drill_within,
        };
        let policy = Policy {
            copies: p.copies.unwrap_or(d.copies),
            kinds: p.kinds.unwrap_or(d.kinds),
            offsite: p.offsite.unwrap_or(d.offsite),
            offline: p.offline.unwrap_or(d.offline),
            drill_within,
            primary_kind: p.primary_kind.unwrap_or(d.primary_kind),
            stale_after: duration(p.stale_after.as_deref())?.unwrap_or(d.stale_after),
        };
        let mut jobs = Vec::new();
        for (name, j) in &cfg.jobs {
            let rpo = duration(j.rpo.as_deref())?;
            let rpo_grace = duration(j.rpo_grace.as_deref())?
                .or(rpo)
                .unwrap_or_default();
            jobs.push(JobSpec {
                name: name.clone(),
                rpo,
                rpo_grace,
                pin: j.pin,
            });
        }
        let mut pools = BTreeMap::new();
        for (name, pool) in &cfg.pools {
            pools.insert(
                name.clone(),
                PoolSpec {
                    rotate_every: duration(pool.rotate_every.as_deref())?,
                    stale_after: duration(pool.stale_after.as_deref())?,
                },
            );
        }
        Ok(Settings {
            policy,
            jobs,
            pools,
        })
    }
}
