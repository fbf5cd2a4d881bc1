//! The thread pool satclip computes on, and how work is cut into tasks.
//!
//! satclip owns its pool (instead of rayon's global one) so that `set_num_threads` can resize it
//! at any time, the way `torch.set_num_threads` works.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

fn slot() -> &'static Mutex<Option<Arc<ThreadPool>>> {
    static POOL: OnceLock<Mutex<Option<Arc<ThreadPool>>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(None))
}

fn build(threads: usize) -> Arc<ThreadPool> {
    // `threads == 0` lets rayon decide (RAYON_NUM_THREADS, else one per logical CPU).
    Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("satclip-{i}"))
            .build()
            .expect("failed to start satclip's worker threads"),
    )
}

/// The pool, started on first use.
pub fn pool() -> Arc<ThreadPool> {
    let mut guard = slot().lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(|| build(0)).clone()
}

/// Replaces the pool with one of `threads` workers (0 = default). Work already running on the
/// old pool finishes there.
pub fn set_num_threads(threads: usize) {
    let fresh = build(threads);
    *slot().lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Rows per task: about 512 KiB of output, so a task is long enough to amortise scheduling
/// (a few microseconds) yet there are many more tasks than threads, so work stealing evens
/// out a busy or oversubscribed machine. Always a multiple of `lanes`.
pub(crate) fn rows_per_task(row_bytes: usize, lanes: usize) -> usize {
    const TASK_BYTES: usize = 512 * 1024;
    let rows = (TASK_BYTES / row_bytes.max(1)).max(lanes);
    rows.div_ceil(lanes) * lanes
}
