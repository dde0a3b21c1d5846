//! The open window: every key's live aggregate, indexed by dense id or by hash (the per-span
//! hot path of every windowed operator). It must not know about emission or lateness.

use super::{WindowAggregate, WindowKey, DENSE_IDS};
use hashbrown::HashMap;

/// A window not emitted yet: every key's live aggregate (the per-span hot path).
#[derive(Debug)]
pub(super) struct OpenWindow<K, A> {
    /// Dense id → position in `aggs` + 1 (0: not in this window), for keys with a dense id.
    pub(super) dense: Vec<u32>,
    /// Any other key → position in `aggs`.
    pub(super) hashed: HashMap<K, u32>,
    /// Position → key, so the window drains in insertion order.
    pub(super) keys: Vec<K>,
    pub(super) aggs: Vec<A>,
    /// Updated since the last advance.
    pub(super) touched: bool,
}

impl<K, A> Default for OpenWindow<K, A> {
    fn default() -> Self {
        OpenWindow {
            dense: Vec::new(),
            hashed: HashMap::new(),
            keys: Vec::new(),
            aggs: Vec::new(),
            touched: false,
        }
    }
}

/// `key`'s dense id when it indexes the dense table.
#[inline]
pub(super) fn dense_index<K: WindowKey>(key: &K) -> Option<usize> {
    key.dense_id()
        .filter(|&id| id < DENSE_IDS)
        .map(|id| id as usize)
}

impl<K: WindowKey, A: WindowAggregate> OpenWindow<K, A> {
    pub(super) fn with_capacity(keys: usize) -> Self {
        OpenWindow {
            keys: Vec::with_capacity(keys),
            aggs: Vec::with_capacity(keys),
            ..OpenWindow::default()
        }
    }

    /// Position of `key`'s aggregate in `aggs`.
    #[inline]
    pub(super) fn position(&self, key: &K) -> Option<usize> {
        match dense_index(key) {
            Some(id) => match self.dense.get(id) {
                Some(&p) if p > 0 => Some(p as usize - 1),
                _ => None,
            },
            None => self.hashed.get(key).map(|&p| p as usize),
        }
    }

    /// The key's aggregate, created empty when new.
    #[inline]
    pub(super) fn get_or_insert(&mut self, key: &K) -> &mut A {
        self.touched = true;
        let i = match self.position(key) {
            Some(i) => i,
            None => self.insert(key),
        };
        &mut self.aggs[i]
    }

    #[cold]
    pub(super) fn insert(&mut self, key: &K) -> usize {
        let i = self.aggs.len();
        if i == self.aggs.capacity() {
            // By a quarter, not doubling: the aggregates are most of an open window's bytes.
            let more = (i / 4).max(16);
            self.aggs.reserve_exact(more);
            self.keys.reserve_exact(more);
        }
        self.aggs.push(A::default());
        self.keys.push(key.clone());
        match dense_index(key) {
            Some(id) => {
                if id >= self.dense.len() {
                    let len = (id + 1).max(self.dense.len() + self.dense.len() / 4);
                    self.dense.resize(len, 0);
                }
                self.dense[id] = i as u32 + 1;
            }
            None => {
                self.hashed.insert(key.clone(), i as u32);
            }
        }
        i
    }

    pub(super) fn len(&self) -> usize {
        self.aggs.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &A)> {
        self.keys.iter().zip(&self.aggs)
    }

    /// Every key with its aggregate, in insertion order.
    pub(super) fn into_entries(self) -> impl Iterator<Item = (K, A)> {
        self.keys.into_iter().zip(self.aggs)
    }

    pub(super) fn state_bytes(&self) -> usize {
        self.dense.capacity() * std::mem::size_of::<u32>()
            + self.hashed.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
            + self.keys.capacity() * std::mem::size_of::<K>()
            + self.aggs.capacity() * std::mem::size_of::<A>()
            + self.aggs.iter().map(A::heap_bytes).sum::<usize>()
    }
}
