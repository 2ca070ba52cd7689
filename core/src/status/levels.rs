//! The report's levels and states, from best to worst, and why a report could not be made.

use super::*;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// `--job` names no job of the configuration.
    #[error("no job {0:?} in the configuration")]
    NoSuchJob(String),
    /// `--medium` names no enrolled medium.
    #[error("no medium labelled {0:?} (see `bakfs media list`)")]
    NoSuchMedium(String),
    /// A duration in the configuration does not parse (`settings::read` checks them first).
    #[error("config: {0}")]
    Config(#[from] TimeError),
}

/// How well things hold, from best to worst. A report's level is the worst of its jobs' and
/// media's; `bakfs status` exits with a code per level (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Everything holds.
    Ok,
    /// A medium is due for rotation or stale, or lacks the newest snapshot of a pinned job
    /// (and so does that job); every job's RPO and digits hold.
    Attention,
    /// A job's newest snapshot is older than its RPO (within the grace).
    Late,
    /// A digit of the policy is short for a job.
    Short,
    /// The catalog cannot tell (no record of the repository, media ledger lost, …).
    Unknown,
    /// A job's newest snapshot is older than its RPO and the grace, or it has none.
    Breached,
}

impl Level {
    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Attention => "attention",
            Level::Late => "late",
            Level::Short => "short",
            Level::Unknown => "unknown",
            Level::Breached => "breached",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A job's newest snapshot against its RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpoState {
    /// No older than the RPO.
    Ok,
    /// Older than the RPO, no older than RPO + grace.
    Late,
    /// Older than RPO + grace, or no snapshot at all.
    Breached,
    /// The job has no RPO.
    None,
}

impl RpoState {
    /// The state of a snapshot `age` old for an RPO `rpo` (`None`: no RPO) with `grace`.
    pub fn judge(rpo: Option<Duration>, grace: Duration, age: Duration) -> RpoState {
        match rpo {
            None => RpoState::None,
            Some(rpo) if age <= rpo => RpoState::Ok,
            Some(rpo) if age <= rpo.saturating_add(grace) => RpoState::Late,
            Some(_) => RpoState::Breached,
        }
    }

    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            RpoState::Ok => "ok",
            RpoState::Late => "late",
            RpoState::Breached => "breached",
            RpoState::None => "none",
        }
    }

    pub(super) fn level(self) -> Level {
        match self {
            RpoState::Ok | RpoState::None => Level::Ok,
            RpoState::Late => Level::Late,
            RpoState::Breached => Level::Breached,
        }
    }
}

impl Serialize for RpoState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether a digit of the policy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitState {
    Ok,
    Short,
    Unknown,
}

impl DigitState {
    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            DigitState::Ok => "ok",
            DigitState::Short => "short",
            DigitState::Unknown => "unknown",
        }
    }

    pub(super) fn level(self) -> Level {
        match self {
            DigitState::Ok => Level::Ok,
            DigitState::Short => Level::Short,
            DigitState::Unknown => Level::Unknown,
        }
    }
}

impl Serialize for DigitState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
