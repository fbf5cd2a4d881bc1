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

/// The default pool size: RAYON_NUM_THREADS, else OMP_NUM_THREADS (what torch and the
/// distributed schedulers set, e.g. Dask's nanny sets 1 per worker; only its first,
/// outermost level counts), else 0 = one per logical CPU.
fn default_threads() -> usize {
    for var in ["RAYON_NUM_THREADS", "OMP_NUM_THREADS"] {
        if let Ok(value) = std::env::var(var) {
            if let Some(n) = value
                .split(',')
                .next()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                if n > 0 {
                    return n;
                }
            }
        }
    }
    0
}

fn build(threads: usize) -> Arc<ThreadPool> {
    let threads = if threads == 0 {
        default_threads()
    } else {
        threads
    };
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
/// out a busy or oversubscribed machine; and for small inputs at least four tasks per thread,
/// so that every thread gets work. Always a multiple of `lanes`.
pub(crate) fn rows_per_task(rows: usize, row_bytes: usize, threads: usize, lanes: usize) -> usize {
    const TASK_BYTES: usize = 512 * 1024;
    let by_size = TASK_BYTES / row_bytes.max(1);
    let by_count = rows.div_ceil(4 * threads.max(1));
    by_size.min(by_count).max(lanes).div_ceil(lanes) * lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_cache_sized_and_plentiful() {
        // L = 40 float64 rows are 12.8 kB: 40 rows (five 8-row blocks) per 512 KiB.
        assert_eq!(rows_per_task(1_000_000, 12_800, 2, 8), 40);
        // L = 10 float32 rows are 400 B: 1310 rows, rounded up to whole blocks.
        assert_eq!(rows_per_task(1_000_000, 400, 2, 8), 1312);
        // Small inputs are still split four ways per thread.
        assert_eq!(rows_per_task(2000, 800, 2, 8), 256);
        assert_eq!(rows_per_task(3, 800, 2, 8), 8);
    }
}
