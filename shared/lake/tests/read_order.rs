//! The lake does not depend on the order the reader visits elements in: a file read tree by tree
//! (how large files are read from their first multi-MB basket on) lands the same rows, equal to what
//! ROOT reports, as one read in `Indices` order. Its own test binary: the order comes from the
//! environment (`DIALS_READ_ORDER`), set here before any thread starts.

mod common;

use common::{expected, ingest_small_fixture_blocking, rows};

#[test]
fn tree_order_lands_the_same_rows_as_index_order() {
    // Two runs: in tree order each run's writers get rows again after other runs' (flushes between).
    std::env::set_var("DIALS_READ_ORDER", "tree");
    let dir = ingest_small_fixture_blocking("tree-order");
    for dim in [1u8, 2] {
        let table = if dim == 1 { "th1" } else { "th2" };
        let got = rows(&dir.join("default").join(table), dim);
        let want = expected(dim);
        assert!(
            want.keys()
                .map(|k| k.0)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 2,
            "fixture has several runs"
        );
        assert_eq!(got, want, "{table}");
    }
}
