//! Boot profiles: which services a node runs, with which links and disk
//! regions, and which selftest phases prove them. Profiles are TOML files
//! in `recipes/boot/`, built into the image ([`BUILTIN`]) and chosen by
//! the `nexus.profile` boot argument.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;

/// The profiles built into the image, by name.
pub const BUILTIN: [(&str, &str); 4] = [
    ("single", include_str!("../../../recipes/boot/single.toml")),
    ("watch", include_str!("../../../recipes/boot/watch.toml")),
    ("pair", include_str!("../../../recipes/boot/pair.toml")),
    ("bus", include_str!("../../../recipes/boot/bus.toml")),
];

/// The services init knows how to start.
pub const SERVICES: [&str; 5] = ["logd", "metricsd", "busd", "obsscraped", "traced"];

/// A selftest phase: one capability proved with this boot's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// logd hardening, query, persistence.
    Logd,
    /// metricsd rejects, counters, histograms, spans, retention.
    Metrics,
    /// Two nodes, plain TCP.
    Pair,
    /// Two nodes, the device bus through busd.
    Bus,
    /// Two nodes, remote observability: B collects A's logs and metrics.
    Obs,
    /// Spans sent to traced, correlated and read back as JSONL.
    Trace,
    /// Two nodes: a span context across a busd stream, the child's span
    /// forwarded to the collector's traced and stored as JSONL.
    MuxTrace,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 7] = [
        Phase::Logd,
        Phase::Metrics,
        Phase::Pair,
        Phase::Bus,
        Phase::Obs,
        Phase::Trace,
        Phase::MuxTrace,
    ];

    /// Its name in profiles.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Logd => "logd",
            Phase::Metrics => "metrics",
            Phase::Pair => "pair",
            Phase::Bus => "bus",
            Phase::Obs => "obs",
            Phase::Trace => "trace",
            Phase::MuxTrace => "mux-trace",
        }
    }

    /// Parses a profile name.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The services the phase talks to.
    pub const fn needs(self) -> &'static [&'static str] {
        match self {
            Phase::Logd => &["logd"],
            Phase::Metrics => &["logd", "metricsd"],
            Phase::Bus => &["busd"],
            Phase::Obs => &["logd", "metricsd", "busd", "obsscraped"],
            Phase::Trace => &["traced", "metricsd", "logd"],
            Phase::MuxTrace => &["busd", "traced"],
            Phase::Pair => &[],
        }
    }

    /// The app endpoints the phase sends from (registered at start, so
    /// services can resolve them, e.g. logd's reader role).
    pub const fn endpoints(self) -> &'static [&'static str] {
        match self {
            Phase::Logd => &["selftest", "selftest-flood"],
            Phase::Metrics => &["selftest-metrics"],
            // busd's control role (`recipes/observability/busd.toml`).
            Phase::Bus => &["selftest"],
            Phase::Obs => &["selftest", "selftest-metrics", "selftest-obs"],
            Phase::Trace => &["selftest-trace", "selftest-trace-metrics"],
            Phase::MuxTrace => &["selftest", "selftest-trace"],
            Phase::Pair => &[],
        }
    }
}

/// A disk region a profile asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Its name in the region table.
    pub name: String,
    /// Its size in 512-byte blocks (used when the region is created).
    pub blocks: u64,
}

/// A service a profile starts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// One of [`SERVICES`].
    pub name: String,
    /// The region it persists to; none: in memory only.
    #[serde(default)]
    pub region: Option<String>,
    /// Services it sends to, by name.
    #[serde(default)]
    pub links: Vec<String>,
    /// traced only: the busd peer name of the node (or host) that
    /// collects cross-node traces, instead of traced.toml's `collector`.
    #[serde(default)]
    pub trace_collector: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelftestSpec {
    #[serde(default)]
    phases: Vec<String>,
    #[serde(default)]
    then_serve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "region")]
    regions: Vec<RegionSpec>,
    #[serde(default, rename = "service")]
    services: Vec<ServiceSpec>,
    #[serde(default)]
    selftest: SelftestSpec,
}

/// A checked profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// Regions, in allocation order.
    pub regions: Vec<RegionSpec>,
    /// Services, in start order.
    pub services: Vec<ServiceSpec>,
    /// Selftest phases, in order.
    pub phases: Vec<Phase>,
    /// After the phases the node keeps serving until it is stopped (a
    /// node to watch), instead of ending the run.
    pub then_serve: bool,
}

/// Why a profile was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileError {
    /// No built-in profile has that name.
    NotFound(String),
    /// Not valid TOML, or fields of the wrong type, or unknown fields.
    Syntax(String),
    /// A service init does not know.
    UnknownService(String),
    /// A service or region listed twice.
    Duplicate(String),
    /// A service names a region the profile does not declare.
    UnknownRegion {
        /// The service.
        service: String,
        /// The region.
        region: String,
    },
    /// Two services on one region.
    SharedRegion(String),
    /// A link to a service the profile does not start (or to itself).
    UnknownLink {
        /// The service.
        service: String,
        /// The link.
        link: String,
    },
    /// A selftest phase init does not know.
    UnknownPhase(String),
    /// A phase needs a service the profile does not start.
    PhaseNeeds {
        /// The phase.
        phase: &'static str,
        /// The missing service.
        service: &'static str,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::NotFound(n) => write!(f, "no boot profile named '{n}'"),
            ProfileError::Syntax(e) => write!(f, "profile does not parse: {e}"),
            ProfileError::UnknownService(s) => write!(f, "unknown service '{s}'"),
            ProfileError::Duplicate(s) => write!(f, "'{s}' is listed twice"),
            ProfileError::UnknownRegion { service, region } => {
                write!(f, "service '{service}' uses undeclared region '{region}'")
            }
            ProfileError::SharedRegion(r) => write!(f, "region '{r}' is used by two services"),
            ProfileError::UnknownLink { service, link } => {
                write!(
                    f,
                    "service '{service}' links to '{link}', which this profile does not start"
                )
            }
            ProfileError::UnknownPhase(p) => write!(f, "unknown selftest phase '{p}'"),
            ProfileError::PhaseNeeds { phase, service } => {
                write!(f, "selftest phase '{phase}' needs service '{service}'")
            }
        }
    }
}

impl Profile {
    /// The built-in profile `name`.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let text = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| ProfileError::NotFound(String::from(name)))?;
        Profile::parse(text)
    }

    /// Parses and checks a profile.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| ProfileError::Syntax(format!("{e}")))?;
        let mut names: Vec<&str> = Vec::new();
        for r in &raw.regions {
            if names.contains(&r.name.as_str()) {
                return Err(ProfileError::Duplicate(r.name.clone()));
            }
            names.push(&r.name);
        }
        let mut used: Vec<&str> = Vec::new();
        let mut started: Vec<&str> = Vec::new();
        for s in &raw.services {
            if !SERVICES.contains(&s.name.as_str()) {
                return Err(ProfileError::UnknownService(s.name.clone()));
            }
            if started.contains(&s.name.as_str()) {
                return Err(ProfileError::Duplicate(s.name.clone()));
            }
            started.push(&s.name);
            if let Some(region) = &s.region {
                if !names.contains(&region.as_str()) {
                    return Err(ProfileError::UnknownRegion {
                        service: s.name.clone(),
                        region: region.clone(),
                    });
                }
                if used.contains(&region.as_str()) {
                    return Err(ProfileError::SharedRegion(region.clone()));
                }
                used.push(region);
            }
        }
        for s in &raw.services {
            for link in &s.links {
                if *link == s.name || !started.contains(&link.as_str()) {
                    return Err(ProfileError::UnknownLink {
                        service: s.name.clone(),
                        link: link.clone(),
                    });
                }
            }
        }
        let mut phases = Vec::new();
        for p in &raw.selftest.phases {
            let phase = Phase::parse(p).ok_or_else(|| ProfileError::UnknownPhase(p.clone()))?;
            if let Some(missing) = phase.needs().iter().find(|n| !started.contains(n)) {
                return Err(ProfileError::PhaseNeeds {
                    phase: phase.as_str(),
                    service: missing,
                });
            }
            phases.push(phase);
        }
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            regions: raw.regions,
            services: raw.services,
            phases,
            then_serve: raw.selftest.then_serve,
        })
    }
}
