//! Dataset identity from CMS logical file names.

use serde::Serialize;

/// What a logical file name says about its dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetInfo {
    /// `/<primary>/<era>-<processing>-v<N>/<tier>`.
    pub dataset: String,
    /// Era, e.g. `Run2024C`.
    pub era: String,
    /// Data tier, e.g. `DQMIO`.
    pub data_tier: String,
    /// Primary dataset, e.g. `ZeroBias`.
    pub primary_ds_name: String,
    /// Processed dataset, e.g. `Run2024C-PromptReco-v1`.
    pub processed_ds_name: String,
    /// Processing version (the N of `-vN`).
    pub processing_version: i64,
}

/// Parses `/store/<data|mc|...>/<era>/<primary>/<tier>/<processing>-v<N>/...` (the CMS LFN
/// convention). Returns `None` when the name does not follow it: the caller must then be given the
/// dataset explicitly — we never guess.
pub fn from_lfn(lfn: &str) -> Option<DatasetInfo> {
    let idx = lfn.find("/store/")?;
    let parts: Vec<&str> = lfn[idx + 1..].split('/').collect();
    // store, data, era, primary, tier, processing-vN, ...
    let (era, primary, tier, processing) =
        (parts.get(2)?, parts.get(3)?, parts.get(4)?, parts.get(5)?);
    if [era, primary, tier, processing]
        .iter()
        .any(|s| s.is_empty())
        || parts.len() < 7
    {
        return None;
    }
    let (_, version) = processing.rsplit_once("-v")?;
    let processing_version: i64 = version.parse().ok()?;
    let processed = format!("{era}-{processing}");
    Some(DatasetInfo {
        dataset: format!("/{primary}/{processed}/{tier}"),
        era: era.to_string(),
        data_tier: tier.to_string(),
        primary_ds_name: primary.to_string(),
        processed_ds_name: processed,
        processing_version,
    })
}

/// Builds the info for an explicitly given dataset name `/<primary>/<processed>/<tier>`.
pub fn from_name(dataset: &str) -> Option<DatasetInfo> {
    let parts: Vec<&str> = dataset.split('/').collect();
    if parts.len() != 4 || !parts[0].is_empty() || parts[1..].iter().any(|s| s.is_empty()) {
        return None;
    }
    let processed = parts[2];
    let era = processed.split('-').next().unwrap_or_default().to_string();
    let processing_version = processed
        .rsplit_once("-v")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Some(DatasetInfo {
        dataset: dataset.to_string(),
        era,
        data_tier: parts[3].to_string(),
        primary_ds_name: parts[1].to_string(),
        processed_ds_name: processed.to_string(),
        processing_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfn_gives_the_dataset() {
        let d = from_lfn(
            "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/379/416/00000/ab-cd.root",
        )
        .unwrap();
        assert_eq!(d.dataset, "/ZeroBias/Run2024C-PromptReco-v1/DQMIO");
        assert_eq!(d.era, "Run2024C");
        assert_eq!(d.primary_ds_name, "ZeroBias");
        assert_eq!(d.processed_ds_name, "Run2024C-PromptReco-v1");
        assert_eq!(d.data_tier, "DQMIO");
        assert_eq!(d.processing_version, 1);
        // A bucket key with a prefix before /store/ works too.
        assert!(from_lfn(
            "raw/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v12/000/1/2/00000/x.root"
        )
        .is_some());
    }

    #[test]
    fn other_names_are_not_guessed() {
        assert_eq!(from_lfn("inbox/myfile.root"), None);
        assert_eq!(
            from_lfn("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco/000/x.root"),
            None
        );
        assert_eq!(
            from_name("/ZeroBias/Run2024C-PromptReco-v1/DQMIO")
                .unwrap()
                .processing_version,
            1
        );
        assert_eq!(from_name("ZeroBias"), None);
    }
}
