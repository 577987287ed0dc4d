//! Selective reads: the name filter runs before any flag or value basket is fetched, and planned
//! baskets arrive through `read_ranges` (concurrent on object stores) with the same values as a
//! plain read.

mod common;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dials_dqmio::{ByteSource, DqmioFile, LocalFile, MeKind, Selection};

/// Records every byte range read and how many `read_ranges` calls were made.
struct Recording {
    inner: LocalFile,
    reads: Mutex<Vec<Range<u64>>>,
    batches: Mutex<usize>,
}

impl ByteSource for Recording {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, len: usize) -> dials_dqmio::Result<Bytes> {
        self.reads.lock().unwrap().push(offset..offset + len as u64);
        self.inner.read_at(offset, len)
    }
    fn read_ranges(&self, ranges: &[Range<u64>]) -> dials_dqmio::Result<Vec<Bytes>> {
        *self.batches.lock().unwrap() += 1;
        ranges
            .iter()
            .map(|r| self.read_at(r.start, (r.end - r.start) as usize))
            .collect()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

fn open(name: &str) -> (Arc<Recording>, DqmioFile) {
    let src = Arc::new(Recording {
        inner: LocalFile::open(common::fixtures().join(name)).expect("fixture"),
        reads: Mutex::default(),
        batches: Mutex::default(),
    });
    let file = DqmioFile::open(src.clone()).expect("open");
    src.reads.lock().unwrap().clear();
    (src, file)
}

/// Byte ranges of the `Value` and `Flags` baskets of every tree, with the tree's kind.
fn value_baskets(file: &DqmioFile) -> Vec<(MeKind, Range<u64>)> {
    let mut out = Vec::new();
    for (kind, t) in file.trees() {
        for b in ["Value", "Flags"] {
            for loc in &t.tree.branch(b).expect("branch").baskets {
                out.push((*kind, loc.seek..loc.seek + u64::from(loc.bytes)));
            }
        }
    }
    out
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

#[test]
fn nothing_wanted_fetches_no_value_or_flag_basket() {
    let (src, file) = open("small_zlib.root");
    let baskets = value_baskets(&file);
    assert!(!baskets.is_empty());
    let mut seen = 0;
    file.for_each_filtered(&Selection::default(), Some(&|_| false), |_| {
        seen += 1;
        Ok(())
    })
    .expect("read");
    assert_eq!(seen, 0);
    let reads = src.reads.lock().unwrap();
    assert!(!reads.is_empty(), "names are read");
    for r in reads.iter() {
        for (kind, b) in &baskets {
            assert!(
                !overlaps(r, b),
                "read {r:?} touches a {kind:?} value/flag basket {b:?}"
            );
        }
    }
}

#[test]
fn only_the_wanted_kinds_baskets_are_fetched_and_values_match_a_full_read() {
    let (src, file) = open("small_zstd.root");
    let want = |n: &str| n.starts_with("PixelPhase1/");
    let mut all = Vec::new();
    let (_, full) = open("small_zstd.root");
    full.for_each(&Selection::default(), |me| {
        if want(&me.name) {
            all.push(me);
        }
        Ok(())
    })
    .expect("full read");
    assert!(!all.is_empty());
    let mut got = Vec::new();
    file.for_each_filtered(&Selection::default(), Some(&want), |me| {
        got.push(me);
        Ok(())
    })
    .expect("filtered read");
    assert_eq!(got, all, "same elements, same order, same values");
    assert!(
        *src.batches.lock().unwrap() >= 2,
        "names and values come through planned read_ranges batches"
    );
    // Kinds without any wanted element: none of their value or flag baskets is fetched.
    let wanted_kinds: Vec<MeKind> = got.iter().map(|m| m.kind).collect();
    let reads = src.reads.lock().unwrap();
    for (kind, b) in value_baskets(&file)
        .iter()
        .filter(|(k, _)| !wanted_kinds.contains(k))
    {
        assert!(
            !reads.iter().any(|r| overlaps(r, b)),
            "{kind:?} basket {b:?} was fetched"
        );
    }
}

#[test]
fn tree_order_visits_the_same_elements_kind_by_kind() {
    let (_, file) = open("small_lz4.root");
    let mut indexed = Vec::new();
    file.for_each(&Selection::default(), |me| {
        indexed.push(me);
        Ok(())
    })
    .expect("index order");
    let mut by_tree = Vec::new();
    file.for_each(
        &Selection {
            order: dials_dqmio::Order::Tree,
            ..Default::default()
        },
        |me| {
            by_tree.push(me);
            Ok(())
        },
    )
    .expect("tree order");
    assert_eq!(by_tree.len(), indexed.len());
    // Kind by kind, each kind in entry (= Indices) order.
    let kinds: Vec<MeKind> = by_tree.iter().map(|m| m.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted, "one kind after the other");
    for kind in MeKind::ALL {
        let a: Vec<_> = indexed.iter().filter(|m| m.kind == kind).collect();
        let b: Vec<_> = by_tree.iter().filter(|m| m.kind == kind).collect();
        assert_eq!(a, b, "{kind:?}");
    }
}

/// Every element of `file`, visited in `order`.
fn read_all(file: &DqmioFile, order: dials_dqmio::Order) -> Vec<dials_dqmio::MonitorElement> {
    let mut v = Vec::new();
    file.for_each(
        &Selection {
            order,
            ..Default::default()
        },
        |me| {
            v.push(me);
            Ok(())
        },
    )
    .expect("read");
    v
}

#[test]
fn auto_order_reads_small_files_in_index_order() {
    let (_, file) = open("small_zlib.root");
    let kinds: Vec<MeKind> = file.trees().keys().copied().collect();
    let live = file.live_basket_bytes(&kinds);
    assert!(
        live > 0 && live < dials_dqmio::dqmio::AUTO_LIVE_BASKET_BYTES,
        "{live}"
    );
    assert_eq!(
        read_all(&file, dials_dqmio::Order::Auto),
        read_all(&file, dials_dqmio::Order::Index)
    );
}

#[test]
fn bounded_order_reads_small_baskets_in_index_order_then_large_ones_tree_by_tree() {
    // The big fixture: its TH2D tree holds a per-run 1500×1500 histogram in a basket of its own.
    let (_, file) = open("../big/big_zlib.root");
    let kinds: Vec<MeKind> = file.trees().keys().copied().collect();
    let live = file.live_basket_bytes(&kinds);
    // A budget under which some kinds are read tree by tree (from their first large basket on)
    // and others in Indices order.
    let (budget, split) = (2..400u64)
        .map(|k| live / k)
        .map(|b| {
            (
                b,
                file.split_entries(&kinds, dials_dqmio::Order::Bounded(b)),
            )
        })
        .find(|(_, s)| s.iter().any(|e| *e != u64::MAX) && s.iter().any(|e| *e > 0))
        .expect("a budget that splits the kinds");
    let indexed = read_all(&file, dials_dqmio::Order::Index);
    // Expected: rows wholly before their kind's split entry in Indices order, then the others
    // sorted by (kind, first entry); within a row, entries in order.
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut next = indexed.iter();
    for row in file.indices() {
        let Some(kind) = row.kind else { continue };
        let slot = kinds.iter().position(|k| *k == kind).expect("kind");
        let elems: Vec<_> = next
            .by_ref()
            .take((row.last - row.first + 1) as usize)
            .cloned()
            .collect();
        if row.last < split[slot] {
            early.extend(elems);
        } else {
            late.push(((kind, row.first), elems));
        }
    }
    assert!(next.next().is_none(), "every element belongs to a row");
    assert!(
        !early.is_empty() && !late.is_empty(),
        "budget {budget}: both parts used"
    );
    late.sort_by_key(|(k, _)| *k);
    early.extend(late.into_iter().flat_map(|(_, e)| e));
    assert_eq!(read_all(&file, dials_dqmio::Order::Bounded(budget)), early);
}
