use super::*;

#[derive(Debug, Default, Clone, PartialEq)]
struct Count(u64);
impl WindowAggregate for Count {
    fn merge(&mut self, o: &Self) {
        self.0 += o.0;
    }
}

type Rows = Vec<(u64, &'static str, bool, u64, u64)>;

/// A counting aggregate's count (`Count` and `PackedCount`).
trait Counted: WindowAggregate {
    fn count(&self) -> u64;
}

impl Counted for Count {
    fn count(&self) -> u64 {
        self.0
    }
}

/// Advances `s` to `wm` and returns what it emitted as (start, key, first, total, delta), sorted.
fn drain<A: Counted>(s: &mut WindowStore<&'static str, A>, wm: u64) -> Rows {
    let mut out = Vec::new();
    s.advance(wm, |e| {
        out.push((e.start, *e.key, e.first, e.total.count(), e.delta.count()))
    });
    out.sort();
    out
}

#[test]
fn retained_keys_stay_and_dropped_keys_vanish_from_open_and_emitted_windows() {
    let mut s: WindowStore<&'static str, Count> = WindowStore::new(10, 30);
    for (ts, k) in [(1, "a"), (2, "b"), (15, "a"), (16, "b")] {
        s.update(ts, &k, |c| c.0 += 1).unwrap();
    }
    // [0,10) emitted, [10,20) open.
    assert_eq!(
        drain(&mut s, 10),
        vec![(0, "a", true, 1, 1), (0, "b", true, 1, 1)]
    );
    s.update(3, &"b", |c| c.0 += 1).unwrap();
    s.retain_keys(|k| *k != "b");
    let mut seen = 0;
    assert!(s.with_total(0, &"a", |c| seen = c.0));
    assert_eq!(seen, 1);
    assert!(!s.with_total(0, &"b", |_| {}));
    assert!(s.with_total(10, &"a", |c| seen = c.0));
    assert!(!s.with_total(10, &"b", |_| {}));
    let mut emitted = Vec::new();
    s.for_each_emitted_key(|start, end, k| emitted.push((start, end, *k)));
    assert_eq!(emitted, vec![(0, 10, "a")]);
    // The dropped key's late update is not re-emitted, and its open window is gone.
    assert_eq!(drain(&mut s, 20), vec![(10, "a", true, 1, 1)]);
}

#[test]
fn dense_and_hashed_ids_hold_the_same_state_and_drain_in_insertion_order() {
    // Small ids index the dense table, ids from DENSE_IDS up are hashed; a peek sees both.
    let keys = [7u32, DENSE_IDS + 3, 0, u32::MAX, 7, DENSE_IDS - 1, 0];
    let mut s: WindowStore<u32, Count> = WindowStore::new(10, 0);
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(
            s.peek(4, k).map(|c| c.0),
            keys[..n]
                .contains(k)
                .then(|| { keys[..n].iter().filter(|x| *x == k).count() as u64 })
        );
        s.prefetch(4, k);
        s.update(4, k, |c| c.0 += 1).unwrap();
    }
    assert_eq!(s.peek(4, &1), None, "never updated");
    assert_eq!(s.peek(14, &7), None, "another window");
    let mut rows = Vec::new();
    s.advance(10, |e| rows.push((*e.key, e.total.0)));
    assert_eq!(
        rows,
        [
            (7, 2),
            (DENSE_IDS + 3, 1),
            (0, 2),
            (u32::MAX, 1),
            (DENSE_IDS - 1, 1)
        ]
    );
    assert_eq!(s.peek(4, &7), None, "emitted windows are not peeked");
}

/// `update_batch` over 60 updates in three windows (the first purged: late), dense and
/// hashed keys, after `filler` other keys were put in an open window, against `update`.
fn batch_update_matches_single_updates(filler: u32) {
    let updates: Vec<(u64, u32)> = (0..60u64)
        .map(|i| {
            let key = (i * 13 % 5) as u32 + if i % 3 == 0 { DENSE_IDS } else { 0 };
            (i * 7 % 40, key)
        })
        .collect();
    let mut batch: WindowStore<u32, Count> = WindowStore::new(10, 0);
    let mut single: WindowStore<u32, Count> = WindowStore::new(10, 0);
    for s in [&mut batch, &mut single] {
        s.advance(10, |_| {});
        for k in 0..filler {
            s.update(35, &(100 + k), |c| c.0 += 1).unwrap();
        }
    }
    let (mut got, mut prefetched) = (Vec::new(), 0);
    batch.update_batch(
        &updates,
        |u| (u.0, &u.1),
        |_, _| prefetched += 1,
        |u, c| c.0 += u.0 + 1,
        |u, outcome| got.push((u.0, u.1, outcome)),
    );
    let expected: Vec<_> = updates
        .iter()
        .map(|u| (u.0, u.1, single.update(u.0, &u.1, |c| c.0 += u.0 + 1)))
        .collect();
    assert_eq!(got, expected);
    assert!(got.iter().any(|g| g.2.is_err()) && got.iter().any(|g| g.2.is_ok()));
    // Prefetching only past PREFETCH_MIN_ENTRIES open aggregates.
    assert_eq!(prefetched > 0, filler as usize >= PREFETCH_MIN_ENTRIES);
    let rows = |s: &mut WindowStore<u32, Count>| {
        let mut out = Vec::new();
        s.advance(100, |e| out.push((e.start, *e.key, e.total.0)));
        out.sort();
        out
    };
    assert_eq!(rows(&mut batch), rows(&mut single));
}

#[test]
fn a_batch_update_equals_the_same_updates_one_by_one() {
    batch_update_matches_single_updates(0);
    batch_update_matches_single_updates(PREFETCH_MIN_ENTRIES as u32);
}

#[test]
fn emits_when_watermark_passes_end_then_reemits_late_deltas_then_purges() {
    let mut s: WindowStore<&str, Count> = WindowStore::new(10, 20);
    s.update(3, &"a", |c| c.0 += 1).unwrap();
    s.update(7, &"a", |c| c.0 += 1).unwrap();
    s.update(12, &"b", |c| c.0 += 1).unwrap();
    assert_eq!(drain(&mut s, 9), vec![]);
    assert_eq!(drain(&mut s, 10), vec![(0, "a", true, 2, 2)]);
    // late but within lateness: re-emitted with its delta only.
    s.update(5, &"a", |c| c.0 += 1).unwrap();
    assert_eq!(drain(&mut s, 11), vec![(0, "a", false, 3, 1)]);
    assert_eq!(drain(&mut s, 12), vec![]);
    // a key new to an emitted window: its first row, carrying everything it has.
    s.update(6, &"c", |c| c.0 += 2).unwrap();
    assert_eq!(drain(&mut s, 12), vec![(0, "c", true, 2, 2)]);
    assert_eq!(drain(&mut s, 20), vec![(10, "b", true, 1, 1)]);
    // window [0,10) purged at 10 + 20.
    assert_eq!(drain(&mut s, 30), vec![]);
    assert_eq!(s.update(1, &"a", |c| c.0 += 1), Err(Late));
    assert_eq!(s.window_count(), 1);
}

#[test]
fn first_data_for_a_passed_but_unpurged_window_is_emitted_as_first() {
    let mut s: WindowStore<&str, Count> = WindowStore::new(10, 20);
    assert_eq!(drain(&mut s, 25), vec![]);
    s.update(4, &"x", |c| c.0 += 5).unwrap();
    assert_eq!(drain(&mut s, 25), vec![(0, "x", true, 5, 5)]);
}

/// A count that packs into its 8 LE bytes and counts its unpacks.
#[derive(Debug, Default, Clone, PartialEq)]
struct PackedCount(u64);
impl WindowAggregate for PackedCount {
    fn merge(&mut self, o: &Self) {
        self.0 += o.0;
    }
    fn pack(&self) -> Option<Packed> {
        Some(Box::new(self.0.to_le_bytes()))
    }
    fn unpack(packed: &[u8]) -> Self {
        PackedCount(u64::from_le_bytes(packed.try_into().expect("8 bytes")))
    }
}

impl Counted for PackedCount {
    fn count(&self) -> u64 {
        self.0
    }
}

#[test]
fn packed_windows_emit_exactly_what_live_ones_do() {
    // Same updates and watermarks into a packing and a plain store, late data included.
    // (Some(event time, key, count to add)) or (None, watermark to advance to).
    type Step = (Option<(u64, &'static str, u64)>, u64);
    let steps: &[Step] = &[
        (Some((3, "a", 1)), 0),
        (Some((7, "a", 2)), 0),
        (Some((12, "b", 1)), 0),
        (None, 10),
        (Some((5, "a", 4)), 0),
        (Some((6, "c", 2)), 0),
        (Some((15, "b", 1)), 0),
        (None, 21),
        (Some((1, "a", 1)), 0),
        (Some((2, "a", 1)), 0),
        (None, 25),
        (None, 30),
        (Some((4, "a", 1)), 0),
        (Some((35, "d", 3)), 0),
        (None, 60),
    ];
    let mut packed: WindowStore<&str, PackedCount> = WindowStore::new(10, 20);
    let mut plain: WindowStore<&str, Count> = WindowStore::new(10, 20);
    let mut rows = 0;
    for (update, wm) in steps {
        match update {
            Some((ts, k, n)) => assert_eq!(
                packed.update(*ts, k, |c| c.0 += n),
                plain.update(*ts, k, |c| c.0 += n)
            ),
            None => {
                let a = drain(&mut packed, *wm);
                assert_eq!(a, drain(&mut plain, *wm), "at watermark {wm}");
                rows += a.len();
            }
        }
        assert_eq!(packed.entry_count(), plain.entry_count());
    }
    assert_eq!(rows, 6);
}

#[test]
fn state_bytes_count_packed_entries() {
    let mut s: WindowStore<u32, PackedCount> = WindowStore::new(10, 100);
    for k in 0..50u32 {
        s.update(5, &k, |c| c.0 += 1).unwrap();
    }
    let open = s.state_bytes();
    assert!(open >= 50 * std::mem::size_of::<(u32, PackedCount)>());
    s.advance(10, |_| {});
    // Emitted: an index slot (key, offset) per key plus its 8 packed bytes and their
    // length byte, back to back.
    let index = settled_index_bytes(&s);
    assert!((50 * 9..4 * 50 * 9).contains(&index), "{index}");
    let (len, cap) = settled_arena(&s);
    assert!(len == 50 * 9 && cap <= len + len / 4, "{len} {cap}");
    assert_eq!(s.state_bytes(), index + cap);
    // Late data unpacks one key (boxed total and pending) until it is re-emitted; its
    // bytes stay in the arena until they are half of it.
    s.update(5, &7, |c| c.0 += 1).unwrap();
    let live = settled_live_bytes(&s);
    assert!(live >= std::mem::size_of::<LateEntry<PackedCount>>());
    assert_eq!(s.state_bytes(), settled_index_bytes(&s) + cap + live);
    let mut rows = Vec::new();
    s.advance(11, |e| rows.push((*e.key, e.first, e.total.0, e.delta.0)));
    assert_eq!(rows, vec![(7, false, 2, 1)]);
    assert_eq!(settled_arena(&s).0, 51 * 9);
    // Every key late once: the arena is compacted back to one copy of each.
    for k in 0..50u32 {
        s.update(5, &k, |c| c.0 += 1).unwrap();
    }
    s.advance(12, |_| {});
    let (len, cap) = settled_arena(&s);
    assert_eq!(len, 50 * 9);
    assert_eq!(
        s.state_bytes(),
        settled_index_bytes(&s) + cap + settled_live_bytes(&s)
    );
}

fn settled_arena(s: &WindowStore<u32, PackedCount>) -> (usize, usize) {
    s.slots
        .values()
        .map(|x| match x {
            Slot::Settled { entries, .. } => (entries.arena_len(), entries.arena_capacity()),
            Slot::Open(_) => (0, 0),
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

fn settled_index_bytes(s: &WindowStore<u32, PackedCount>) -> usize {
    s.slots
        .values()
        .map(|x| match x {
            Slot::Settled { entries, .. } => entries.index_bytes(),
            Slot::Open(_) => 0,
        })
        .sum()
}

fn settled_live_bytes(s: &WindowStore<u32, PackedCount>) -> usize {
    s.slots
        .values()
        .map(|x| match x {
            Slot::Settled { entries, .. } => entries.live_bytes(),
            Slot::Open(_) => 0,
        })
        .sum()
}

#[test]
fn a_packing_open_store_packs_between_advances_and_reads_through() {
    let mut s: WindowStore<&str, PackedCount> = WindowStore::new(10, 20).packing_open_windows();
    fn open_rows(s: &WindowStore<&'static str, PackedCount>) -> Vec<(u64, &'static str, u64)> {
        let mut open = Vec::new();
        s.for_each_open(|st, _, k, a| open.push((st, *k, a.0)));
        open.sort();
        open
    }
    s.update(3, &"a", |c| c.0 += 2).unwrap();
    s.update(4, &"a", |c| c.0 += 1).unwrap();
    s.update(5, &"c", |c| c.0 += 1).unwrap();
    s.update(14, &"b", |c| c.0 += 1).unwrap();
    let expected = vec![(0, "a", 3), (0, "c", 1), (10, "b", 1)];
    assert_eq!(open_rows(&s), expected);
    assert_eq!(drain(&mut s, 5), vec![]);
    // Packed now: every open key takes its 8 bytes and a length byte besides its slot.
    let bytes_and_index = |s: &WindowStore<&'static str, PackedCount>| {
        s.slots
            .values()
            .map(|x| match x {
                Slot::Settled {
                    entries,
                    emitted: false,
                    dirty: false,
                } => (
                    entries.arena_len(),
                    entries.index_bytes(),
                    entries.live_bytes(),
                ),
                _ => panic!("open windows of a packing store are settled"),
            })
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    };
    assert_eq!(bytes_and_index(&s).0, 3 * 9);
    assert_eq!(bytes_and_index(&s).2, 0);
    assert_eq!(open_rows(&s), expected);
    // Updating one key of a packed window leaves the others as they were.
    s.update(6, &"a", |c| c.0 += 1).unwrap();
    assert_eq!(drain(&mut s, 6), vec![]);
    assert_eq!(bytes_and_index(&s).2, 0);
    // "a" was packed again; its old bytes are reclaimed once they are a quarter of the arena.
    assert!(bytes_and_index(&s).0 <= 4 * 9, "{:?}", bytes_and_index(&s));
    assert_eq!(open_rows(&s), vec![(0, "a", 4), (0, "c", 1), (10, "b", 1)]);
    assert_eq!(
        drain(&mut s, 10),
        vec![(0, "a", true, 4, 4), (0, "c", true, 1, 1)]
    );
    s.update(7, &"a", |c| c.0 += 1).unwrap();
    assert_eq!(
        drain(&mut s, 20),
        vec![(0, "a", false, 5, 1), (10, "b", true, 1, 1)]
    );
}

#[test]
fn an_idle_previous_window_is_packed_and_emits_the_same_rows() {
    let mut s: WindowStore<&str, PackedCount> = WindowStore::new(10, 20);
    let mut plain: WindowStore<&str, Count> = WindowStore::new(10, 20);
    let is_open = |s: &WindowStore<&str, PackedCount>, start: u64| {
        matches!(s.slots.get(start), Some(Slot::Open(_)))
    };
    for (ts, k) in [(3, "a"), (4, "b"), (12, "a")] {
        s.update(ts, &k, |c| c.0 += 1).unwrap();
        plain.update(ts, &k, |c| c.0 += 1).unwrap();
    }
    // Touched since the last advance: both stay live.
    assert_eq!(drain(&mut s, 5), drain(&mut plain, 5));
    assert!(is_open(&s, 0) && is_open(&s, 10));
    // [0,10) took nothing since: packed; [10,20) is the newest and stays live.
    s.update(13, &"b", |c| c.0 += 1).unwrap();
    plain.update(13, &"b", |c| c.0 += 1).unwrap();
    assert_eq!(drain(&mut s, 6), drain(&mut plain, 6));
    assert!(!is_open(&s, 0) && is_open(&s, 10));
    let mut open = Vec::new();
    s.for_each_open(|st, _, k, a| open.push((st, *k, a.0)));
    open.sort();
    assert_eq!(
        open,
        vec![(0, "a", 1), (0, "b", 1), (10, "a", 1), (10, "b", 1)]
    );
    // A straggler for the packed window, then its emission and a late update.
    s.update(7, &"a", |c| c.0 += 2).unwrap();
    plain.update(7, &"a", |c| c.0 += 2).unwrap();
    for wm in [7, 10, 12] {
        assert_eq!(drain(&mut s, wm), drain(&mut plain, wm), "at {wm}");
    }
    s.update(8, &"b", |c| c.0 += 1).unwrap();
    plain.update(8, &"b", |c| c.0 += 1).unwrap();
    for wm in [13, 20, 40] {
        assert_eq!(drain(&mut s, wm), drain(&mut plain, wm), "at {wm}");
    }
    assert_eq!(s.entry_count(), plain.entry_count());
}

#[test]
fn open_windows_are_visible_as_provisional() {
    let mut s: WindowStore<&str, Count> = WindowStore::new(10, 0);
    s.update(1, &"a", |c| c.0 += 1).unwrap();
    s.update(11, &"a", |c| c.0 += 1).unwrap();
    drain(&mut s, 10);
    let mut open = Vec::new();
    s.for_each_open(|st, en, k, a| open.push((st, en, *k, a.0)));
    assert_eq!(open, vec![(10, 20, "a", 1)]);
}
