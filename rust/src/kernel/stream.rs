//! Copying finished rows to the output with non-temporal (streaming) stores.
//!
//! An ordinary store to memory that is not in cache first reads the line (read for ownership),
//! doubling the memory traffic of a write-only job like filling a large feature matrix. Full
//! 64-byte streaming stores skip that read. They also skip the cache, which is wrong for
//! outputs that will be read again soon while still cached, so callers use them only for
//! large outputs.

/// Copies `src` to `dst` (same length), streaming the 64-byte-aligned middle of `dst` in
/// chunks of 64 bytes with `store64`; the unaligned head and tail use ordinary stores.
/// Call [`fence`] before the data is handed to another thread.
#[inline(always)]
fn copy_streaming_with<O: Copy>(src: &[O], dst: &mut [O], store64: impl Fn(*const u8, *mut u8)) {
    assert_eq!(src.len(), dst.len());
    let bytes = std::mem::size_of_val(src);
    let s = src.as_ptr() as *const u8;
    let d = dst.as_mut_ptr() as *mut u8;
    let head = (d as usize).wrapping_neg() % 64;
    if bytes < head + 64 || !head.is_multiple_of(std::mem::size_of::<O>()) {
        dst.copy_from_slice(src);
        return;
    }
    let body_end = head + (bytes - head) / 64 * 64;
    // SAFETY: every offset stays inside the two equally long slices, and the head and tail
    // are whole elements (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(s, d, head);
        let mut off = head;
        while off < body_end {
            store64(s.add(off), d.add(off));
            off += 64;
        }
        std::ptr::copy_nonoverlapping(s.add(off), d.add(off), bytes - off);
    }
}

/// [`copy_streaming_with`] using SSE2 (part of every x86-64) 16-byte streaming stores.
#[inline(always)]
pub(crate) fn copy_streaming_sse2<O: Copy>(src: &[O], dst: &mut [O]) {
    #[cfg(target_arch = "x86_64")]
    copy_streaming_with(src, dst, |s, d| {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        // SAFETY: `d` is 64-byte aligned and both point at 64 valid bytes.
        unsafe {
            for q in 0..4 {
                let v = _mm_loadu_si128(s.add(16 * q) as *const __m128i);
                _mm_stream_si128(d.add(16 * q) as *mut __m128i, v);
            }
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// [`copy_streaming_with`] using one 64-byte AVX-512 streaming store per cache line.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn copy_streaming_avx512<O: Copy>(src: &[O], dst: &mut [O]) {
    copy_streaming_with(src, dst, |s, d| {
        use std::arch::x86_64::{__m512i, _mm512_loadu_si512, _mm512_stream_si512};
        // SAFETY: as in `copy_streaming_sse2`; AVX-512F is the caller's promise.
        unsafe { _mm512_stream_si512(d as *mut __m512i, _mm512_loadu_si512(s as *const __m512i)) }
    });
}

/// Streaming stores are used only by kernels whose blocks (`LANES` output rows, staged in
/// row-major order before they are streamed) take at most this many bytes, the size of a
/// typical L1 data cache.
///
/// The staging copy is what streaming costs: the transposes write a block's image, then a
/// burst of streaming stores copies it out while the arithmetic waits. For a block that fits
/// in L1 that copy is nearly free and streaming halves the memory traffic of a large output;
/// for a larger block the copy reads its image back from L2 and the bursts get long, while
/// ordinary stores let the caches write back in the background as the next block is computed.
/// Measured on Zen 2 (32 KiB L1d, 1 thread, `out=` buffers of 64-384 MB, float64, ns per point
/// streaming vs ordinary): values at L = 14 (12.5 KB blocks) 167 vs 243, L = 18 (21 KB) 272 vs
/// 315, L = 22 (31 KB) 439 vs 395, L = 40 (102 KB) 1310-1480 vs 1120-1150; values with
/// gradients at L = 14 (37.5 KB) 530 vs 565, L = 18 (62 KB) 823 vs 780, L = 40 (410 KB)
/// 4350 vs 3350-3410. The limit sits where the two cross.
pub(crate) const STREAMED_BLOCK_BYTES: usize = 32 << 10;

/// Outputs of at least this many bytes are written with streaming stores when they go into
/// memory that is already mapped (see `harmonics::Destination`) and the kernel's blocks are at
/// most [`STREAMED_BLOCK_BYTES`]; smaller ones stay cached for
/// whatever reads them next (the matmul of `satclip.encode`).
///
/// The threshold is 45% of the last-level cache (read once from Linux's sysfs; 16 MiB where it
/// cannot be read): a caller that keeps its previous result while the next one is written
/// (`y = spherical_harmonics(p, L)` in a loop) has two outputs live, and once the two no longer
/// fit in that cache ordinary stores pay a read of every line. Measured on a 16 MiB L3 (1 thread,
/// previous result kept, medians of 60 calls): at 8.0 MB ordinary stores into the cold memory
/// the allocator handed back cost 2x the streaming ones (L = 10 float64, N = 1e4: 1.76 vs 0.87
/// ms), at 6.4 MB they were still faster (L = 40 float64, N = 500: 0.51 vs 0.72 ms).
pub(crate) fn streaming_threshold() -> usize {
    static THRESHOLD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THRESHOLD.get_or_init(|| match last_level_cache_bytes() {
        Some(bytes) => bytes / 20 * 9,
        None => 16 << 20,
    })
}

/// The largest cache of CPU 0 from `/sys/devices/system/cpu/cpu0/cache/index*/size`.
fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("size")).ok())
        .filter_map(|size| parse_cache_size(&size))
        .max()
}

/// `"16384K"`, `"32M"`, `"512"` (bytes) as sysfs writes cache sizes.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, scale) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1 << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(scale)
}

/// Whether the page holding `addr` is mapped into the process already (Linux `mincore`), i.e.
/// whether writing it will not first make the OS zero a new page. False where it cannot tell.
pub(crate) fn is_mapped(addr: *const u8) -> bool {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn mincore(addr: *mut std::ffi::c_void, length: usize, vec: *mut u8) -> i32;
        }
        // mincore wants a page-aligned address; 4 KiB alignment is enough on every page size
        // Linux uses on x86-64 and aarch64 (it rounds the length up to whole pages).
        let page = (addr as usize) & !4095;
        let mut resident = 0u8;
        // SAFETY: mincore only reads the process's page tables and writes one byte per page of
        // the (one-page) range into `resident`; an unmapped range is an error return, not a fault.
        let rc = unsafe { mincore(page as *mut std::ffi::c_void, 1, &mut resident) };
        rc == 0 && resident & 1 == 1
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = addr;
        false
    }
}

/// Orders earlier streaming stores before anything that follows (they are weakly ordered).
#[inline(always)]
pub(crate) fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions; SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("16384K\n"), Some(16 << 20));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("lots"), None);
        assert!(streaming_threshold() >= 1 << 20);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn new_pages_are_unmapped_until_written() {
        // 64 MiB of zeros: calloc maps new pages and leaves them untouched.
        let mut block = vec![0u8; 64 << 20];
        let middle = block.len() / 2;
        assert!(!is_mapped(block[middle..].as_ptr()));
        block[middle] = 1;
        assert!(is_mapped(block[middle..].as_ptr()));
        let x = 5u64;
        assert!(is_mapped(&x as *const u64 as *const u8));
    }

    #[test]
    fn copies_every_element_at_every_alignment() {
        let src: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        for offset in 0..20 {
            for len in [0, 1, 15, 16, 17, 63, 64, 100, 977] {
                let mut dst = vec![-1.0f32; 1000 + 20];
                copy_streaming_sse2(&src[..len], &mut dst[offset..offset + len]);
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx512f") {
                    let mut again = vec![-1.0f32; 1000 + 20];
                    // SAFETY: AVX-512F was detected just above; the slices have equal lengths.
                    unsafe { copy_streaming_avx512(&src[..len], &mut again[offset..offset + len]) };
                    assert_eq!(again, dst);
                }
                fence();
                assert_eq!(&dst[offset..offset + len], &src[..len]);
                assert!(dst[..offset].iter().all(|&x| x == -1.0));
                assert!(dst[offset + len..].iter().all(|&x| x == -1.0));
            }
        }
    }
}
