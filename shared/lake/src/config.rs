//! Workspaces: which datasets feed a workspace and which monitoring elements it keeps.
//!
//! A JSON file (local path or an object in the lake bucket):
//! `{"default": "tracker", "workspaces": [{"name": "tracker", "datasets": ["/ZeroBias/*Run202*/DQMIO"],
//!   "me_prefixes": ["PixelPhase1/"], "me_names": ["OfflinePV/..."],
//!   "roles": ["cms-dqm-runregistry-offline-tracker-certifiers"]}]}`.
//! Dataset patterns use `*` as "any characters" over the whole name. Without a config there is one
//! workspace, `default`, that keeps everything.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workspace {
    /// Name (folder under the lake, value of the `Workspace` header).
    pub name: String,
    /// Dataset patterns (`*` wildcards); empty = every dataset.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// ME name prefixes kept; empty together with `me_names` = every ME.
    #[serde(default)]
    pub me_prefixes: Vec<String>,
    /// Exact ME names kept in addition to the prefixes.
    #[serde(default)]
    pub me_names: Vec<String>,
    /// Roles (or groups) of the token's roles claim that may read this workspace when the API
    /// checks tokens (docs/auth.md); `"*"` is any authenticated caller. Empty: nobody, once auth
    /// is on (ingest ignores it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The workspaces configuration. Every way of building one from JSON goes through
/// [`Workspaces::validate`] (serde's `try_from`), so no unchecked config reaches ingest or the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawWorkspaces")]
pub struct Workspaces {
    /// Workspace used when a request names none.
    pub default: String,
    /// All workspaces.
    pub workspaces: Vec<Workspace>,
}

/// The JSON shape before validation.
#[derive(Deserialize)]
struct RawWorkspaces {
    default: String,
    workspaces: Vec<Workspace>,
}

impl TryFrom<RawWorkspaces> for Workspaces {
    type Error = ConfigError;
    fn try_from(raw: RawWorkspaces) -> Result<Self, ConfigError> {
        let w = Workspaces {
            default: raw.default,
            workspaces: raw.workspaces,
        };
        w.validate()?;
        Ok(w)
    }
}

impl Default for Workspaces {
    fn default() -> Self {
        Workspaces {
            default: "default".into(),
            workspaces: vec![Workspace {
                name: "default".into(),
                datasets: vec![],
                me_prefixes: vec![],
                me_names: vec![],
                roles: vec![],
            }],
        }
    }
}

/// Errors in a workspaces file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid JSON of the expected shape.
    #[error("workspaces config: {0}")]
    Json(#[from] serde_json::Error),
    /// A semantic problem.
    #[error("workspaces config: {0}")]
    Invalid(String),
}

impl Workspaces {
    /// Parses and validates a config.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The one place a config is checked. A name is a folder of the lake and the value of the
    /// `Workspace` header, which is matched case-insensitively (as DIALS did): names must be
    /// `[A-Za-z0-9_-]+` and distinct ignoring case, or a header and a folder would be ambiguous.
    /// Names that differ only by `-`/`_` are distinct workspaces (the engine quotes them, never
    /// rewrites them).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workspaces.is_empty() {
            return Err(ConfigError::Invalid("no workspaces".into()));
        }
        let mut seen: Vec<&str> = Vec::with_capacity(self.workspaces.len());
        for ws in &self.workspaces {
            if ws.name.is_empty()
                || !ws
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Invalid(format!(
                    "workspace name '{}' must be [A-Za-z0-9_-]+",
                    ws.name
                )));
            }
            if let Some(other) = seen.iter().find(|o| o.eq_ignore_ascii_case(&ws.name)) {
                return Err(ConfigError::Invalid(format!(
                    "workspace names '{other}' and '{}' differ only by case (the Workspace header is case-insensitive)",
                    ws.name
                )));
            }
            seen.push(&ws.name);
            if let Some(r) = ws
                .roles
                .iter()
                .find(|r| r.trim().is_empty() || r.trim() != r.as_str())
            {
                return Err(ConfigError::Invalid(format!(
                    "workspace '{}': role {r:?} is empty or has surrounding spaces",
                    ws.name
                )));
            }
        }
        if !self.workspaces.iter().any(|x| x.name == self.default) {
            return Err(ConfigError::Invalid(format!(
                "default workspace '{}' is not defined",
                self.default
            )));
        }
        Ok(())
    }

    /// Workspaces fed by `dataset`.
    pub fn for_dataset(&self, dataset: &str) -> Vec<&Workspace> {
        self.workspaces
            .iter()
            .filter(|w| w.wants_dataset(dataset))
            .collect()
    }

    /// The workspaces a caller holding `roles` may read, in configuration order (the first is the
    /// caller's default, as DIALS picked it).
    pub fn readable_by<'a>(
        &'a self,
        roles: &'a [String],
    ) -> impl Iterator<Item = &'a Workspace> + 'a {
        self.workspaces.iter().filter(move |w| w.readable_by(roles))
    }

    /// A workspace by name (case-insensitive, as DIALS's header handling).
    pub fn get(&self, name: &str) -> Option<&Workspace> {
        self.workspaces
            .iter()
            .find(|w| w.name.eq_ignore_ascii_case(name))
    }
}

impl Workspace {
    /// True if this workspace is fed by `dataset`.
    pub fn wants_dataset(&self, dataset: &str) -> bool {
        self.datasets.is_empty() || self.datasets.iter().any(|p| glob_match(p, dataset))
    }

    /// True if a caller holding `roles` may read this workspace (one shared role, or `"*"`).
    pub fn readable_by(&self, roles: &[String]) -> bool {
        self.roles
            .iter()
            .any(|r| r == "*" || roles.iter().any(|c| c == r))
    }

    /// True if this workspace keeps the ME named `me`.
    pub fn wants_me(&self, me: &str) -> bool {
        (self.me_prefixes.is_empty() && self.me_names.is_empty())
            || self.me_prefixes.iter().any(|p| me.starts_with(p.as_str()))
            || self.me_names.iter().any(|n| n == me)
    }
}

/// Loads a workspaces config from a local path or an `s3://bucket/key` URL.
pub async fn load(spec: &str) -> Result<Workspaces, ConfigError> {
    use object_store::ObjectStoreExt;
    let text = if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| ConfigError::Invalid(format!("{spec}: no key")))?;
        let store = crate::store::s3_store(bucket)
            .map_err(|e| ConfigError::Invalid(format!("{spec}: {e}")))?;
        let got = store
            .get(&object_store::path::Path::from(key))
            .await
            .map_err(|e| ConfigError::Invalid(format!("{spec}: {e}")))?;
        let b = got
            .bytes()
            .await
            .map_err(|e| ConfigError::Invalid(format!("{spec}: {e}")))?;
        String::from_utf8_lossy(&b).into_owned()
    } else {
        std::fs::read_to_string(spec).map_err(|e| ConfigError::Invalid(format!("{spec}: {e}")))?
    };
    Workspaces::from_json(&text)
}

/// The workspaces named by `DIALS_WORKSPACES` (path or s3:// URL), or the default workspace.
pub async fn from_env() -> Result<Workspaces, ConfigError> {
    match std::env::var("DIALS_WORKSPACES") {
        Ok(spec) => load(&spec).await,
        Err(_) => Ok(Workspaces::default()),
    }
}

/// `*` matches any run of characters; everything else is literal; the whole string must match.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let re = format!(
        "^{}$",
        pattern
            .split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*")
    );
    Regex::new(&re).map(|r| r.is_match(s)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_style_config() {
        let w = Workspaces::from_json(
            r#"{"default":"tracker","workspaces":[
              {"name":"tracker","datasets":["/ZeroBias/*Run202*/DQMIO","/StreamExpress/*Run202*/DQMIO"],"me_prefixes":["PixelPhase1/","SiStrip/"],"me_names":["OfflinePV/offlinePrimaryVertices/tagVtxProb"]},
              {"name":"ecal","datasets":["/ZeroBias/*Run202*/DQMIO"],"me_prefixes":["EcalBarrel/","EcalEndcap/"]}]}"#,
        )
        .unwrap();
        let names: Vec<_> = w
            .for_dataset("/ZeroBias/Run2024C-PromptReco-v1/DQMIO")
            .iter()
            .map(|x| x.name.as_str())
            .collect();
        assert_eq!(names, ["tracker", "ecal"]);
        assert!(w
            .for_dataset("/JetMET0/Run2024C-PromptReco-v1/DQMIO")
            .is_empty());
        let t = w.get("TRACKER").unwrap();
        assert!(t.wants_me("PixelPhase1/Tracks/x"));
        assert!(t.wants_me("OfflinePV/offlinePrimaryVertices/tagVtxProb"));
        assert!(!t.wants_me("EcalBarrel/x"));
        assert!(Workspaces::from_json(r#"{"default":"x","workspaces":[]}"#).is_err());
        assert!(
            Workspaces::from_json(r#"{"default":"x","workspaces":[{"name":"../x"}]}"#).is_err()
        );
    }

    #[test]
    fn names_equal_ignoring_case_are_rejected_wherever_a_config_is_parsed() {
        let twice = r#"{"default":"tracker","workspaces":[{"name":"tracker"},{"name":"Tracker"}]}"#;
        let e = Workspaces::from_json(twice).unwrap_err().to_string();
        assert!(
            e.contains("'tracker' and 'Tracker' differ only by case"),
            "{e}"
        );
        // Any serde path validates too (e.g. a config embedded in another document).
        assert!(serde_json::from_str::<Workspaces>(twice).is_err());
        let same = r#"{"default":"a","workspaces":[{"name":"a"},{"name":"a"}]}"#;
        assert!(Workspaces::from_json(same).is_err());
        // `-` and `_` are different characters: two workspaces.
        let w = Workspaces::from_json(
            r#"{"default":"trk-a","workspaces":[{"name":"trk-a"},{"name":"trk_a"}]}"#,
        )
        .unwrap();
        assert_eq!(w.get("TRK_A").map(|x| x.name.as_str()), Some("trk_a"));
        assert_eq!(w.get("trk-a").map(|x| x.name.as_str()), Some("trk-a"));
    }

    #[test]
    fn roles_pick_the_readable_workspaces_in_config_order() {
        let w = Workspaces::from_json(
            r#"{"default":"all","workspaces":[{"name":"all","roles":["admins"]},{"name":"tracker","roles":["trk","admins"]},
               {"name":"open","roles":["*"]},{"name":"closed"}]}"#,
        )
        .unwrap();
        let names = |roles: &[&str]| {
            let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
            w.readable_by(&roles)
                .map(|x| x.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["trk"]), ["tracker", "open"]);
        assert_eq!(names(&["admins", "x"]), ["all", "tracker", "open"]);
        assert_eq!(names(&[]), ["open"]);
        // A role matches exactly (no case folding, no prefix).
        assert_eq!(names(&["TRK", "trk-x"]), ["open"]);
        assert!(Workspaces::from_json(
            r#"{"default":"a","workspaces":[{"name":"a","roles":[" x"]}]}"#
        )
        .is_err());
        assert!(Workspaces::from_json(
            r#"{"default":"a","workspaces":[{"name":"a","roles":[""]}]}"#
        )
        .is_err());
    }
}
