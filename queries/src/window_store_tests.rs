//! Unit tests of the window store (queries/src/window_store.rs).

use super::*;

impl Weighed for usize {
    fn weight(&self) -> usize {
        *self
    }
}

#[test]
fn retention_drops_by_age_then_oldest_first_over_the_cap() {
    let mut r: Retained<(u64, u64), usize> = Retained::default();
    // (size, start) keys: the cap goes by start, whatever the size.
    r.insert((20, 0), 0, 20, 5);
    r.insert((10, 10), 10, 20, 5);
    r.insert((10, 30), 30, 40, 5);
    r.insert((20, 40), 40, 60, 5);
    assert_eq!(r.weight(), 20);
    r.insert((20, 40), 40, 60, 7);
    assert_eq!(r.weight(), 22);
    r.expire(15, usize::MAX);
    assert_eq!(r.len(), 4, "ends at 20 are within a horizon of 15");
    r.expire(0, 12);
    let left: Vec<(u64, u64)> = r.iter().map(|(k, _)| *k).collect();
    assert_eq!(left, vec![(10, 30), (20, 40)], "starts 0 and 10 went first");
    assert_eq!(r.weight(), 12);
    r.update(&(20, 40), |w| *w = 1);
    assert_eq!(r.weight(), 6);
    r.expire(61, usize::MAX);
    assert!(r.is_empty());
    assert_eq!(r.weight(), 0);
}
