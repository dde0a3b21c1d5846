//! Cache prefetch hints for hot loops.
//!
//! Owns: the one `unsafe` call of the whole workspace (every other module and crate forbids
//! `unsafe`), a prefetch. Batch loops (the RED operator's
//! per-span updates) name the memory of an update a few spans ahead so its cache misses overlap
//! instead of stalling one after another.

/// Starts loading the cache line at `p` into every cache level. Only a hint: it never faults,
/// whatever `p` is (dangling, null, unaligned), and does nothing on targets without one.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `prefetch_sse` only needs SSE, which every x86_64 target has (it is part of
        // the architecture's baseline). A prefetch does not access memory architecturally: any
        // address, valid or not, is allowed and never faults.
        unsafe { prefetch_sse(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Cache line size assumed for prefetching (x86_64 and most aarch64 cores).
const LINE: usize = 64;

/// Prefetches one address per cache line over `bytes` bytes from `start`.
#[inline(always)]
fn prefetch_bytes(start: *const u8, bytes: usize) {
    let mut offset = 0;
    while offset < bytes {
        prefetch(start.wrapping_add(offset));
        offset += LINE;
    }
}

/// Prefetches every cache line `value` covers (not what it points to).
#[inline(always)]
pub fn prefetch_value<T>(value: &T) {
    let (start, size) = ((value as *const T).cast::<u8>(), std::mem::size_of::<T>());
    prefetch_bytes(start, size);
    // The last byte, when `value` straddles one more line than its size suggests.
    if size > 1 {
        prefetch(start.wrapping_add(size - 1));
    }
}

/// Prefetches the cache lines of `items`, at most `max_lines` of them (from the start).
#[inline]
pub fn prefetch_slice<T>(items: &[T], max_lines: usize) {
    let bytes = std::mem::size_of_val(items).min(max_lines * LINE);
    prefetch_bytes(items.as_ptr().cast::<u8>(), bytes);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse")]
#[inline]
fn prefetch_sse(p: *const i8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    _mm_prefetch::<_MM_HINT_T0>(p);
}

#[cfg(test)]
mod tests {
    use super::{prefetch, prefetch_slice, prefetch_value};

    #[test]
    fn prefetching_any_address_is_harmless() {
        let v = vec![1u64, 2, 3];
        prefetch(v.as_ptr());
        prefetch(std::ptr::null::<u8>());
        prefetch(usize::MAX as *const u8);
        prefetch(v.as_slice() as *const [u64]);
        prefetch_value(&[0u8; 300]);
        prefetch_value(&());
        prefetch_slice(&v, 4);
        prefetch_slice::<u64>(&[], 4);
        assert_eq!(v, [1, 2, 3]);
    }
}
