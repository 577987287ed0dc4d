//! glibc `malloc` settings, applied once at process start by each binary.
//!
//! Both profiles pin the mmap threshold at 8 MiB. glibc otherwise raises it after the first large
//! free, multi-MB baskets then come from heap arenas that fragment, and ingest RSS grew with the
//! file (1 GB file: 262 MB; pinned at 8 MiB: 168 MB at the time). At 1 MiB the page faults of
//! re-mmapped Arrow/Parquet buffers cost 30 % of ingest time.
//!
//! Pinning the mmap threshold also switches off glibc's dynamic trim threshold, which then stays at
//! 128 KiB: every request's freed Parquet pages at the top of an arena go back to the kernel with
//! `madvise` and are faulted in again by the next request. Serving therefore also sets the trim
//! threshold to twice the mmap threshold (what glibc's own dynamic rule would reach): one
//! lumisection × all MEs went from 4.8 to 4.1 ms (A/B, same lake). Ingest keeps the low trim
//! threshold: 16 MiB raised the 1 GB file's peak RSS from ~268 to ~293 MB for no speed gain.
//!
//! Other allocators (musl, or glibc not on Linux) are left alone.

const MMAP_THRESHOLD: i32 = 8 << 20;

/// For ingest: large buffers mmapped so freeing them returns the memory.
pub fn tune_for_ingest() {
    tune(false);
}

/// For the query API (also `dials up`, which serves and ingests): as ingest, plus freed heap memory
/// kept for the next request instead of being handed back and faulted in again.
pub fn tune_for_serving() {
    tune(true);
}

/// Hands the free memory of every arena back to the kernel (`malloc_trim(0)`), for after a burst
/// of allocations that will not come again soon, such as a compaction. glibc keeps a thread's
/// arena at its high-water mark otherwise: a compaction run inside a long `dials ingest` left
/// ~80–90 KB per ingested file resident (docs/benchmarks.md, stop 29). Returns whether memory was
/// released. Costs one walk over the arenas' free lists (milliseconds).
pub fn release_free() -> bool {
    release()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() -> bool {
    // SAFETY: malloc_trim takes each arena's lock itself and only returns free pages; live
    // allocations of other threads are untouched.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune(keep_freed: bool) {
    // SAFETY: mallopt only tunes the allocator; it takes the allocator's own lock. A refused value
    // (return 0) leaves glibc's default in place, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        if keep_freed {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune(_keep_freed: bool) {}
