//! The thread pool satclip computes on, and how work is cut into tasks.
//!
//! satclip owns its pool (instead of rayon's global one) so that `set_num_threads` can resize it
//! at any time, the way `torch.set_num_threads` works, and so that it survives `fork`: a forked
//! child (a PyTorch DataLoader worker, a multiprocessing pool) inherits the pool object but none
//! of its threads, and work sent there would wait forever. The pool remembers the process that
//! started it and is rebuilt in any other.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

struct Owned {
    pool: Arc<ThreadPool>,
    /// Process id of the process whose threads these are.
    pid: u32,
}

fn slot() -> &'static Mutex<Option<Owned>> {
    static POOL: OnceLock<Mutex<Option<Owned>>> = OnceLock::new();
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

/// The pool, started on first use (and again after a fork, with the same size).
pub fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut guard = slot().lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(owned) if owned.pid == pid => owned.pool.clone(),
        inherited => {
            let threads = inherited.map_or(0, |o| o.pool.current_num_threads());
            install(&mut guard, threads, pid)
        }
    }
}

/// Replaces the pool with one of `threads` workers (0 = default). Work already running on the
/// old pool finishes there.
pub fn set_num_threads(threads: usize) {
    let mut guard = slot().lock().unwrap_or_else(|e| e.into_inner());
    install(&mut guard, threads, std::process::id());
}

fn install(slot: &mut Option<Owned>, threads: usize, pid: u32) -> Arc<ThreadPool> {
    let pool = build(threads);
    if let Some(old) = slot.replace(Owned {
        pool: pool.clone(),
        pid,
    }) {
        if old.pid != pid {
            // Inherited across fork: its threads do not exist here, so dropping it (which
            // signals them) is pointless at best. Let it go without running its destructor.
            std::mem::forget(old);
        }
    }
    pool
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
