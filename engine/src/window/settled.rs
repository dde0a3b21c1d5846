//! The keys of a settled window: emitted and waiting for rare late data (or, in a
//! [`WindowStore::packing_open_windows`](super::WindowStore::packing_open_windows) store, open
//! but updated only in bulk).
//!
//! Packed aggregates lie back to back in one byte arena, each behind a varint length, and a small
//! index maps a key to its offset: a few bytes per key besides its packed bytes, no allocation
//! per key. Keys with late data (and aggregates that do not pack) are held live in a second map
//! until the next re-emission packs them again; the bytes they left in the arena are reclaimed
//! once they are a quarter of it.

use super::{LateEntry, WindowAggregate};
use hashbrown::HashMap;
use std::hash::Hash;

/// A key held live in a settled window.
#[derive(Debug)]
pub(super) enum Live<A> {
    /// Unchanged since emitted, for aggregates that do not pack.
    Boxed(Box<A>),
    /// Has late data not emitted yet (or arrived only late), or, in an open window, an update
    /// not packed yet.
    Late(Box<LateEntry<A>>),
}

#[derive(Debug)]
pub(super) struct SettledWindow<K, A> {
    /// Keys whose total is packed in `arena` → offset of its length-prefixed bytes.
    packed: HashMap<K, u32>,
    arena: Vec<u8>,
    /// Arena bytes no key refers to any more.
    garbage: usize,
    live: HashMap<K, Live<A>>,
}

impl<K, A> Default for SettledWindow<K, A> {
    fn default() -> Self {
        SettledWindow {
            packed: HashMap::new(),
            arena: Vec::new(),
            garbage: 0,
            live: HashMap::new(),
        }
    }
}

fn put_len(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The bytes at `off` and how many arena bytes they take, length prefix included.
fn entry_at(arena: &[u8], off: u32) -> (&[u8], usize) {
    let start = off as usize;
    let (mut len, mut shift, mut pos) = (0usize, 0, start);
    while let Some(&b) = arena.get(pos) {
        pos += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = (pos + len).min(arena.len());
    (&arena[pos..end], end - start)
}

impl<K: Hash + Eq + Clone, A: WindowAggregate> SettledWindow<K, A> {
    pub(super) fn with_capacity(keys: usize) -> Self {
        SettledWindow {
            packed: HashMap::with_capacity(keys),
            ..SettledWindow::default()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.packed.len() + self.live.len()
    }

    /// Holds `total` as `key`'s settled state, packed when the aggregate packs.
    pub(super) fn settle(&mut self, key: K, mut total: A) {
        match total.pack() {
            Some(bytes) if self.arena.len() < u32::MAX as usize - bytes.len() - 10 => {
                let off = self.arena.len() as u32;
                put_len(&mut self.arena, bytes.len());
                self.arena.extend_from_slice(&bytes);
                self.packed.insert(key, off);
            }
            _ => {
                total.shrink_to_fit();
                self.live.insert(key, Live::Boxed(Box::new(total)));
            }
        }
    }

    /// `key`'s live entry, unpacked (or created empty, not emitted) if needed.
    pub(super) fn late_mut(&mut self, key: &K) -> &mut LateEntry<A> {
        if !self.live.contains_key(key) {
            let entry = match self.packed.remove(key) {
                Some(off) => {
                    let (bytes, used) = entry_at(&self.arena, off);
                    self.garbage += used;
                    LateEntry {
                        total: A::unpack(bytes),
                        pending: A::default(),
                        emitted: true,
                    }
                }
                // A key new to the window: not emitted yet, everything is pending.
                None => LateEntry::default(),
            };
            self.live.insert(key.clone(), Live::Late(Box::new(entry)));
        }
        let live = self.live.get_mut(key).expect("inserted above when missing");
        if let Live::Boxed(b) = live {
            let total = std::mem::take(&mut **b);
            *live = Live::Late(Box::new(LateEntry {
                total,
                pending: A::default(),
                emitted: true,
            }));
        }
        match live {
            Live::Late(l) => l,
            Live::Boxed(_) => unreachable!("made late above"),
        }
    }

    /// Consumes the window, handing every key's total to `f`.
    pub(super) fn drain_totals(self, mut f: impl FnMut(K, A)) {
        let SettledWindow {
            packed,
            arena,
            live,
            ..
        } = self;
        for (key, off) in packed {
            f(key, A::unpack(entry_at(&arena, off).0));
        }
        for (key, e) in live {
            match e {
                Live::Boxed(b) => f(key, *b),
                Live::Late(l) => f(key, l.total),
            }
        }
    }

    /// Calls `f` with every late key, then settles it again (packs its total; the pending delta
    /// has been emitted or, in an open window, is not used).
    pub(super) fn resettle_late(&mut self, mut f: impl FnMut(&K, &LateEntry<A>)) {
        let live = std::mem::take(&mut self.live);
        for (key, e) in live {
            match e {
                Live::Late(l) => {
                    f(&key, &l);
                    self.settle(key, l.total);
                }
                boxed @ Live::Boxed(_) => {
                    self.live.insert(key, boxed);
                }
            }
        }
        if self.garbage > self.arena.len() / 4 {
            self.compact();
        } else {
            self.trim();
        }
    }

    /// Drops the arena's spare capacity once it is more than a quarter of what it holds (call
    /// after settling many keys: growth by doubling would otherwise cost up to 2×).
    pub(super) fn trim(&mut self) {
        if self.arena.capacity() > self.arena.len() + self.arena.len() / 4 {
            self.arena.shrink_to_fit();
        }
    }

    /// Drops the arena bytes no key refers to.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for off in self.packed.values_mut() {
            let start = *off as usize;
            let (_, used) = entry_at(&self.arena, *off);
            *off = arena.len() as u32;
            arena.extend_from_slice(&self.arena[start..start + used]);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Calls `f` with `key`'s total (unpacked into a temporary when packed); false when the
    /// window does not hold the key.
    pub(super) fn with_total(&self, key: &K, f: impl FnOnce(&A)) -> bool {
        if let Some(&off) = self.packed.get(key) {
            f(&A::unpack(entry_at(&self.arena, off).0));
            return true;
        }
        match self.live.get(key) {
            Some(Live::Boxed(b)) => f(b),
            Some(Live::Late(l)) => f(&l.total),
            None => return false,
        }
        true
    }

    /// Calls `f` with every key the window holds.
    pub(super) fn for_each_key(&self, mut f: impl FnMut(&K)) {
        self.packed.keys().chain(self.live.keys()).for_each(&mut f);
    }

    /// Forgets every key `keep` refuses (a dropped share, see `WindowStore::retain_keys`).
    pub(super) fn retain_keys(&mut self, keep: &impl Fn(&K) -> bool) {
        let arena = &self.arena;
        let mut garbage = 0;
        self.packed.retain(|k, off| {
            let kept = keep(k);
            if !kept {
                garbage += entry_at(arena, *off).1;
            }
            kept
        });
        self.garbage += garbage;
        self.live.retain(|k, _| keep(k));
        if self.garbage > self.arena.len() / 4 {
            self.compact();
        }
    }

    /// Calls `f` with every key's total (packed ones unpacked into a temporary).
    pub(super) fn for_each(&self, mut f: impl FnMut(&K, &A)) {
        for (key, &off) in &self.packed {
            f(key, &A::unpack(entry_at(&self.arena, off).0));
        }
        for (key, e) in &self.live {
            match e {
                Live::Boxed(b) => f(key, b),
                Live::Late(l) => f(key, &l.total),
            }
        }
    }

    /// Index slots' bytes (capacity, plus a control byte each).
    #[cfg(test)]
    pub(super) fn index_bytes(&self) -> usize {
        self.packed.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
    }

    /// Bytes of the live map and its entries.
    #[cfg(test)]
    pub(super) fn live_bytes(&self) -> usize {
        self.state_bytes() - self.index_bytes() - self.arena.capacity()
    }

    #[cfg(test)]
    pub(super) fn arena_len(&self) -> usize {
        self.arena.len()
    }

    #[cfg(test)]
    pub(super) fn arena_capacity(&self) -> usize {
        self.arena.capacity()
    }

    /// Bytes held: index slots (capacity, plus a control byte each), the arena, live entries.
    pub(super) fn state_bytes(&self) -> usize {
        let live_entry = |e: &Live<A>| match e {
            Live::Boxed(b) => std::mem::size_of::<A>() + b.heap_bytes(),
            Live::Late(l) => {
                std::mem::size_of::<LateEntry<A>>() + l.total.heap_bytes() + l.pending.heap_bytes()
            }
        };
        self.packed.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
            + self.arena.capacity()
            + self.live.capacity() * (std::mem::size_of::<(K, Live<A>)>() + 1)
            + self.live.values().map(live_entry).sum::<usize>()
    }
}
