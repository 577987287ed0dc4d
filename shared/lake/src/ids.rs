//! Stable identities: the same name gives the same id on every ingest, on every machine.
//!
//! DIALS took dataset and file ids from CMS DBS and ME ids from a database sequence. Without a
//! database, ids are hashes of the names (xxh64, seed 0), kept to 53 bits so JavaScript clients
//! read them exactly and non-negative so every tool agrees on their order.

use xxhash_rust::xxh64::xxh64;

const MASK_53: u64 = (1 << 53) - 1;

/// A stable id in `0..2^53` for `name` within a namespace (`"dataset"`, `"file"`, `"me"`).
pub fn stable_id(namespace: &str, name: &str) -> i64 {
    let mut buf = Vec::with_capacity(namespace.len() + 1 + name.len());
    buf.extend_from_slice(namespace.as_bytes());
    buf.push(0);
    buf.extend_from_slice(name.as_bytes());
    (xxh64(&buf, 0) & MASK_53) as i64
}

/// Id of a dataset name (`/ZeroBias/Run2024C-PromptReco-v1/DQMIO`).
pub fn dataset_id(dataset: &str) -> i64 {
    stable_id("dataset", dataset)
}

/// Id of a logical file name.
pub fn file_id(logical_file_name: &str) -> i64 {
    stable_id("file", logical_file_name)
}

/// Id of a monitoring-element name.
pub fn me_id(me: &str) -> i64 {
    stable_id("me", me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_pinned_literals() {
        // Literal values (computed independently with Python's `xxhash`: xxh64(namespace + b"\0" +
        // name, seed 0) & (2^53 - 1)). Changing the hash or the namespacing would silently re-key
        // every lake, so this must fail then.
        assert_eq!(
            me_id("PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"),
            7_319_298_470_217_249
        );
        assert_eq!(
            dataset_id("/ZeroBias/Run2024C-PromptReco-v1/DQMIO"),
            2_330_948_771_748_722
        );
        assert_eq!(
            file_id("/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/379/416/00000/A.root"),
            2_190_000_921_113_498
        );
        assert_eq!(dataset_id(""), 4_118_838_262_418_725);
        assert_eq!(me_id("abc"), 2_935_419_096_999_809);
    }

    #[test]
    fn ids_are_53_bit_and_namespaced() {
        assert_ne!(dataset_id("x"), file_id("x"));
        assert_ne!(me_id("x"), file_id("x"));
        for n in ["", "a", "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"] {
            assert!((0..1 << 53).contains(&dataset_id(n)));
        }
    }
}
