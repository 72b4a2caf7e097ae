//! seal + open of 1400-byte packets do no heap allocation once warmed up, with every
//! ESP suite (AEADs, and AES-CBC with each HMAC).
//!
//! A counting global allocator (test-only, its own binary) delegates to `System` and
//! counts allocations made by the current thread while counting is switched on.
#![allow(unsafe_code)]

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: no panic if the thread is being torn down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System` upholds the `GlobalAlloc` contract; the counting touches only const-initialized
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(|a| a.get())
}

#[test]
fn seal_and_open_do_not_allocate() {
    for (suite, (inner, name)) in suites().into_iter().flat_map(|s| {
        [(ipv4("10.1.0.5", "10.2.0.9", 1400), "ipv4"), (ipv6("2001:db8:1::1", "2001:db8:2::1", 1400), "ipv6")]
            .map(|p| (s, p))
    }) {
        let (left, right) = pair(0x1000, |p| {
            p.key = suite_key(suite, 7);
            p.esn = name == "ipv6";
        });
        let mut wire = vec![0u8; 1400 + esp::MAX_OVERHEAD];
        let mut back = vec![0u8; 1400 + esp::MAX_OVERHEAD];
        let round = |wire: &mut [u8], back: &mut [u8]| {
            let len = match left.seal(NOW, &inner, wire) {
                esp::Sealed::Send { packet, .. } => packet.len(),
                esp::Sealed::Drop(r) => panic!("{r:?}"),
            };
            match right.open(NOW, &wire[..len], back) {
                esp::Opened::Deliver { packet, .. } => assert_eq!(packet.len(), 1400),
                esp::Opened::Drop(r) => panic!("{r:?}"),
            }
        };
        // Warm-up (lazy CPU feature detection in ring, etc.).
        round(&mut wire, &mut back);
        let n = allocations_during(|| {
            for _ in 0..1000 {
                round(&mut wire, &mut back);
            }
        });
        assert_eq!(n, 0, "{suite:?} {name}: allocations in 1000 seal+open rounds");
        // The counter works: an allocation in the window is seen.
        assert_eq!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
    }
}
