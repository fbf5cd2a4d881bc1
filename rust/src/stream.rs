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
