//! Bad input always ends as an `Err`, never a panic, and never asks for more memory than the file
//! could hold. A counting allocator records the largest single allocation made while reading.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Rng;
use dials_dqmio::{DqmioFile, Error, MemSource, Selection};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
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

/// Opens and fully decodes `bytes`; returns the outcome. Panics become test failures naming `label`.
fn read_all(label: &str, bytes: Vec<u8>) -> Result<usize, Error> {
    let out = catch_unwind(AssertUnwindSafe(|| {
        let file = DqmioFile::open(Arc::new(MemSource::new(label, bytes)))?;
        let mut n = 0;
        file.for_each(&Selection::default(), |_| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }));
    match out {
        Ok(r) => r,
        Err(_) => panic!("reader panicked on {label}"),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join(name)).expect("fixture")
}

#[test]
fn empty_text_and_random_bytes_are_errors() {
    assert!(matches!(
        read_all("empty", Vec::new()),
        Err(Error::NotRoot(_))
    ));
    assert!(matches!(
        read_all("text", b"hello, this is not a ROOT file\n".repeat(40)),
        Err(Error::NotRoot(_))
    ));
    let mut rng = Rng(7);
    for i in 0..200 {
        let len = rng.below(4096) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 2 == 0 && v.len() > 4 {
            v[..4].copy_from_slice(b"root"); // get past the magic check
        }
        assert!(read_all(&format!("random {i}"), v).is_err());
    }
}

#[test]
fn a_root_file_that_is_not_dqmio_says_so() {
    let e = read_all("nondqmio", fixture("nondqmio.root")).expect_err("not DQMIO");
    assert!(matches!(e, Error::NotDqmio(_)), "{e}");
}

#[test]
fn truncation_at_any_offset_is_an_error() {
    for name in ["small_zlib.root", "small_none.root"] {
        let full = fixture(name);
        let step = (full.len() / 400).max(1);
        for cut in (0..full.len()).step_by(step).chain([full.len() - 1]) {
            let r = read_all(&format!("{name} cut at {cut}"), full[..cut].to_vec());
            assert!(
                r.is_err(),
                "{name} truncated at {cut} of {} was accepted",
                full.len()
            );
        }
    }
}

#[test]
fn bit_flips_never_panic_and_compressed_data_is_verified() {
    let full = fixture("small_zlib.root");
    let reference = read_all("intact", full.clone()).expect("intact file reads");
    let mut rng = Rng(42);
    let (mut errors, mut ok) = (0, 0);
    for i in 0..3000 {
        let mut v = full.clone();
        let pos = rng.below(v.len() as u64) as usize;
        v[pos] ^= 1 << rng.below(8);
        match read_all(&format!("flip {i} at {pos}"), v) {
            Ok(n) => {
                ok += 1;
                // A flip in an unread or unchecked byte may go unnoticed, but never changes the count.
                assert_eq!(
                    n, reference,
                    "flip at {pos} changed the element count without an error"
                );
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 0 && ok + errors == 3000);
}

#[test]
fn lz4_and_zstd_flips_inside_baskets_are_detected() {
    for name in ["small_lz4.root", "small_zstd.root", "small_zlib.root"] {
        let full = fixture(name);
        let reference = read_all(name, full.clone()).expect("intact");
        let mut rng = Rng(9);
        for _ in 0..300 {
            let mut v = full.clone();
            let pos = rng.below(v.len() as u64) as usize;
            v[pos] ^= 0xFF;
            if let Ok(n) = read_all(name, v) {
                assert_eq!(n, reference);
            }
        }
    }
}

#[test]
fn absurd_lengths_do_not_allocate_what_the_file_cannot_hold() {
    let full = fixture("small_zlib.root");
    let mut rng = Rng(3);
    // Overwrite random aligned 4-byte words with huge values: lengths, counts, offsets.
    for i in 0..1500 {
        let mut v = full.clone();
        let pos = (rng.below(v.len() as u64 - 4) as usize) & !3;
        let val: u32 = [0x7FFF_FFFF, 0xFFFF_FFFF, 0x4FFF_FFFF, 0x00FF_FFFF][i % 4];
        v[pos..pos + 4].copy_from_slice(&val.to_be_bytes());
        LARGEST.store(0, Ordering::Relaxed);
        let _ = read_all(&format!("word {i} at {pos}"), v);
        let largest = LARGEST.load(Ordering::Relaxed);
        // The file is ~60 kB; one decompression block may legally claim up to 16 MiB.
        assert!(
            largest <= 17 << 20,
            "allocation of {largest} bytes after overwriting offset {pos}"
        );
    }
}
