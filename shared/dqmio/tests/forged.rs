//! Crafted files (`tests/fixtures/craft.py`: a ROOT-written uncompressed file with one length or
//! count field rewritten) end as errors that name the problem, without allocating what the forged
//! number asks for: entry counts bound nothing until baskets are decoded, and a payload's claimed
//! size is checked against what its branch holds and the reader's limits before decompressing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dials_dqmio::{DqmioFile, Error, LocalFile, MeKind, Selection};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Tests measure the largest allocation one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Largest single allocation, in bytes, a read of these ~100 kB files may make.
const ALLOWED: usize = 4 << 20;

fn crafted(name: &str) -> std::path::PathBuf {
    common::fixtures().join("crafted").join(name)
}

/// Every way of reading `path` (open, a full read, a filtered read, names, one kind) as results,
/// with the largest allocation made. Panics become test failures.
fn every_read(path: &std::path::Path) -> (Vec<Result<usize, Error>>, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    let out = catch_unwind(AssertUnwindSafe(|| {
        let file = match DqmioFile::open(Arc::new(LocalFile::open(path).expect("fixture"))) {
            Ok(f) => f,
            Err(e) => return vec![Err(e)],
        };
        let count = |sel: &Selection| {
            let mut n = 0;
            file.for_each(sel, |_| {
                n += 1;
                Ok(())
            })
            .map(|()| n)
        };
        let filtered = Selection {
            name: Some(regex::Regex::new("Pixel").expect("regex")),
            ..Default::default()
        };
        let mut kind_n = 0;
        let one_kind = file
            .for_each_of_kind(MeKind::TH1F, &Selection::default(), |_| {
                kind_n += 1;
                Ok(())
            })
            .map(|()| kind_n);
        vec![
            count(&Selection::default()),
            count(&filtered),
            file.names(MeKind::TH1F).map(|v| v.len()),
            one_kind,
        ]
    }));
    match out {
        Ok(r) => (r, LARGEST.load(Ordering::Relaxed)),
        Err(_) => panic!("reader panicked on {}", path.display()),
    }
}

#[test]
fn the_base_of_the_crafted_files_reads() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (results, largest) = every_read(&common::fixtures().join("tiny_none.root"));
    assert_eq!(results.len(), 4);
    for r in &results {
        assert!(r.as_ref().is_ok_and(|n| *n > 0), "{r:?}");
    }
    assert!(largest <= ALLOWED, "{largest}");
}

#[test]
fn forged_entry_counts_are_errors_not_allocations() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // fEntries = 2^62 in the TTree only: its branches say 1. Before: `dials scan` said OK and
    // `dials dump` aborted allocating 576 PB for a bitmap sized by the claim.
    // fEntries = 2^62 in the tree and its three branches: the one basket then claims 2^62 entries,
    // more than the bytes its branch holds.
    for (name, says) in [
        (
            "forged_tree_entries.root",
            "declares 4611686018427387904 entries, its branch",
        ),
        (
            "forged_entries.root",
            "claims entries 0..4611686018427387904, more than the",
        ),
    ] {
        let (results, largest) = every_read(&crafted(name));
        for r in &results {
            let e = r.as_ref().expect_err(name);
            assert!(e.to_string().contains(says), "{name}: {e}");
        }
        assert!(largest <= ALLOWED, "{name}: allocation of {largest} bytes");
    }
}

#[test]
fn decompression_bombs_fail_before_allocating() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A basket whose key claims 1.5 GiB (96 zstd blocks of 16 MiB of zeros, 51 kB on disk).
    // Before: every block was decompressed, 1.5 GiB resident, then the basket failed.
    let (results, largest) = every_read(&crafted("bomb.root"));
    let mut saw = 0;
    for r in &results {
        match r {
            Err(Error::TooLarge {
                claimed: 1_610_612_640,
                bound,
                ..
            }) => {
                assert!(bound.contains("its branch declares"), "{bound}");
                saw += 1;
            }
            // `names` reads only FullName: the bomb is the Value basket.
            Ok(_) => {}
            Err(e) => panic!("bomb.root: {e}"),
        }
    }
    assert_eq!(saw, 3, "{results:?}");
    assert!(
        largest <= ALLOWED,
        "bomb.root: allocation of {largest} bytes"
    );
    // The same with the branch's fTotBytes raised to 2^31 - 1: the per-object limit stops it.
    let (results, largest) = every_read(&crafted("bomb_declared.root"));
    let e = results[0].as_ref().expect_err("bomb_declared.root");
    assert!(
        matches!(e, Error::TooLarge { .. }) && e.to_string().contains("limit for one object"),
        "{e}"
    );
    assert!(
        largest <= ALLOWED,
        "bomb_declared.root: allocation of {largest} bytes"
    );
}
