//! The sessions of one spec: per key value a short list of sessions, a time index of when each
//! is due (final at its end, purged at end + lateness), and the merge rules.
//!
//! Owns the session semantics (see the module above); knows nothing about spans, config or
//! sinks — the operator feeds it [`Item`]s and turns what it reports into rows.

use super::key::{KeyRef, KeyValue};
use super::{SessionRetraction, MAX_SERVICES};
use hashbrown::HashMap;
use redwatch_engine::model::UnixNanos;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One span as the sessions see it (strings already interned by the operator).
#[derive(Debug, Clone)]
pub struct Item {
    /// Event time (span end).
    pub event: UnixNanos,
    pub start: UnixNanos,
    pub weight: f64,
    pub error: bool,
    pub service: Arc<str>,
    pub name: Arc<str>,
    pub is_root: bool,
}

/// The name a session reports: a root span's beats any other; among equals the earliest start.
#[derive(Debug, Clone, PartialEq)]
pub struct RootName {
    pub is_root: bool,
    pub start: UnixNanos,
    pub name: Arc<str>,
}

impl RootName {
    fn better_than(&self, other: &RootName) -> bool {
        (self.is_root && !other.is_root)
            || (self.is_root == other.is_root && self.start < other.start)
    }
}

/// One session's state (fixed size plus at most [`MAX_SERVICES`] names).
#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub first_event: UnixNanos,
    pub last_event: UnixNanos,
    /// Earliest span start (or event time, if a span starts after it ends).
    pub first_start: UnixNanos,
    pub spans: f64,
    pub errors: f64,
    pub services: Vec<Arc<str>>,
    pub services_truncated: bool,
    pub root: Option<RootName>,
    /// A final row of it is out (and not retracted).
    pub emitted: bool,
    /// Changed since its final row went out: re-emit on the next advance.
    pub dirty: bool,
    /// Reached `max_duration`: takes no span that would make it longer.
    pub sealed: bool,
}

impl Session {
    fn new(id: u64, it: &Item) -> Session {
        let mut s = Session {
            id,
            first_event: it.event,
            last_event: it.event,
            first_start: it.start.min(it.event),
            spans: 0.0,
            errors: 0.0,
            services: Vec::new(),
            services_truncated: false,
            root: None,
            emitted: false,
            dirty: false,
            sealed: false,
        };
        s.add(it);
        s
    }

    pub fn end(&self, gap: u64) -> UnixNanos {
        self.last_event.saturating_add(gap)
    }

    fn add_service(&mut self, s: &Arc<str>) {
        if self.services.iter().any(|x| **x == **s) {
            return;
        }
        if self.services.len() < MAX_SERVICES {
            self.services.push(s.clone());
        } else {
            self.services_truncated = true;
        }
    }

    fn offer_root(&mut self, r: RootName) {
        match &self.root {
            Some(old) if !r.better_than(old) => {}
            _ => self.root = Some(r),
        }
    }

    fn add(&mut self, it: &Item) {
        self.first_event = self.first_event.min(it.event);
        self.last_event = self.last_event.max(it.event);
        self.first_start = self.first_start.min(it.start.min(it.event));
        self.spans += it.weight;
        if it.error {
            self.errors += it.weight;
        }
        self.add_service(&it.service);
        let better = match &self.root {
            None => true,
            Some(old) => {
                (it.is_root && !old.is_root) || (it.is_root == old.is_root && it.start < old.start)
            }
        };
        if better {
            self.root = Some(RootName {
                is_root: it.is_root,
                start: it.start,
                name: it.name.clone(),
            });
        }
    }

    fn absorb(&mut self, o: Session) {
        self.first_event = self.first_event.min(o.first_event);
        self.last_event = self.last_event.max(o.last_event);
        self.first_start = self.first_start.min(o.first_start);
        self.spans += o.spans;
        self.errors += o.errors;
        for s in &o.services {
            self.add_service(s);
        }
        self.services_truncated |= o.services_truncated;
        if let Some(r) = o.root {
            self.offer_root(r);
        }
    }

    pub fn duration_ms(&self) -> f64 {
        self.last_event.saturating_sub(self.first_start) as f64 / 1e6
    }

    fn heap_bytes(&self) -> usize {
        self.services.capacity() * std::mem::size_of::<Arc<str>>()
    }
}

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Added to an existing session (possibly merging `absorbed` others into it).
    Joined { absorbed: usize },
    /// Opened a new session.
    Opened,
    /// Opened a new session because joining would have made one longer than `max_duration`.
    Split,
    /// Its session would already be purged: dropped.
    Late,
    /// `max_sessions` are open: dropped.
    Overflow,
}

/// Bounds and times of one spec.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub gap: u64,
    pub lateness: u64,
    pub max_duration: u64,
    pub max_sessions: usize,
}

/// The sessions of one spec.
#[derive(Debug)]
pub struct SpecSessions {
    pub limits: Limits,
    keys: HashMap<KeyValue, Vec<Session>>,
    /// `(due time, id)` → key: a session not emitted is due at its end (final), an emitted one
    /// at end + lateness (purged).
    due: BTreeMap<(UnixNanos, u64), KeyValue>,
    /// Emitted sessions changed since (re-emitted on the next advance).
    dirty: Vec<(KeyValue, u64)>,
    /// Retractions not handed out yet.
    retracted: Vec<SessionRetraction>,
    sessions: usize,
    watermark: UnixNanos,
}

/// What one advance produced: the final sessions (key, a copy of the session) and the ids purged.
#[derive(Debug, Default)]
pub struct Advanced {
    pub retracted: Vec<SessionRetraction>,
    pub finals: Vec<(KeyValue, Session)>,
    pub purged: Vec<u64>,
}

impl SpecSessions {
    pub fn new(limits: Limits) -> Self {
        SpecSessions {
            limits,
            keys: HashMap::new(),
            due: BTreeMap::new(),
            dirty: Vec::new(),
            retracted: Vec::new(),
            sessions: 0,
            watermark: 0,
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions
    }

    /// Key values held.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Adds one item of key `key`; `next_id` hands out ids for new sessions.
    pub fn offer(&mut self, key: KeyRef<'_>, it: &Item, next_id: &mut u64) -> Offer {
        let l = self.limits;
        let (lo, hi) = (it.event, it.event.saturating_add(l.gap));
        let wm = self.watermark;
        let new_is_late = hi.saturating_add(l.lateness) <= wm;
        let Some((owned, list)) = self.keys.get_key_value_mut(&key) else {
            if new_is_late {
                return Offer::Late;
            }
            if self.sessions >= l.max_sessions {
                return Offer::Overflow;
            }
            let owned = key.to_key();
            let s = Session::new(take_id(next_id), it);
            self.due.insert((s.end(l.gap), s.id), owned.clone());
            self.keys.insert(owned, vec![s]);
            self.sessions += 1;
            return Offer::Opened;
        };
        // 1. A session (sealed or not) whose range already covers the item's window takes it
        //    without growing.
        // Only sessions starting in [lo - max_duration, hi] can touch the item (no session is
        // longer than max_duration, the list is sorted by start): a key with many sessions
        // costs two binary searches, not a scan.
        let range = candidates(list, lo, hi, l.max_duration);
        if let Some(i) = list[range.clone()]
            .iter()
            .position(|s| s.first_event <= lo && hi <= s.end(l.gap))
        {
            let s = &mut list[range.start + i];
            s.add(it);
            if s.emitted && !s.dirty {
                s.dirty = true;
                self.dirty.push((owned.clone(), s.id));
            }
            return Offer::Joined { absorbed: 0 };
        }
        // 2. Unsealed sessions the item's window touches merge with it, unless the result
        //    would be longer than max_duration.
        let owned = owned.clone();
        let touches = |s: &Session| !s.sealed && s.first_event <= hi && lo <= s.end(l.gap);
        let (mut touching, mut start, mut end) = (0usize, lo, hi);
        for s in list[range.clone()].iter().filter(|s| touches(s)) {
            touching += 1;
            start = start.min(s.first_event);
            end = end.max(s.end(l.gap));
        }
        if touching > 0 && end - start <= l.max_duration {
            return self.merge_into(owned, lo, hi, it);
        }
        // 3. A session of its own.
        if new_is_late {
            return Offer::Late;
        }
        if self.sessions >= l.max_sessions {
            return Offer::Overflow;
        }
        let split = touching > 0;
        let list = match self.keys.get_mut(&owned) {
            Some(l) => l,
            None => return Offer::Late, // unreachable: the key was found above
        };
        for s in list[range].iter_mut().filter(|s| touches(s)) {
            s.sealed = true;
        }
        let s = Session::new(take_id(next_id), it);
        self.due.insert((s.end(l.gap), s.id), owned);
        let pos = list.partition_point(|x| x.first_event <= s.first_event);
        list.insert(pos, s);
        self.sessions += 1;
        if split {
            Offer::Split
        } else {
            Offer::Opened
        }
    }

    /// Merges the unsealed sessions of `key` touching `[lo, hi]` and the item into one.
    fn merge_into(&mut self, key: KeyValue, lo: UnixNanos, hi: UnixNanos, it: &Item) -> Offer {
        let wm = self.watermark;
        let limits = self.limits;
        let Some(list) = self.keys.get_mut(&key) else {
            return Offer::Late;
        };
        let Some((survivor, absorbed)) = take_touching(list, lo, hi, limits) else {
            return Offer::Late;
        };
        let Some(survivor_pos) = list.iter().position(|s| s.id == survivor) else {
            return Offer::Late;
        };
        let s = &mut list[survivor_pos];
        let old_due = due_at(limits, s);
        let n_absorbed = absorbed.len();
        let Merged {
            retract: out_retract,
            old_dues,
            reemit,
        } = merge(s, absorbed, it, limits, wm);
        let id = s.id;
        if n_absorbed > 0 || list.len() > 1 {
            list.sort_by_key(|x| x.first_event);
        }
        let new_due = list
            .iter()
            .find(|x| x.id == id)
            .map(|s| due_at(limits, s))
            .unwrap_or(old_due);
        for d in old_dues {
            self.due.remove(&d);
        }
        if new_due != old_due {
            self.due.remove(&(old_due, id));
            self.due.insert((new_due, id), key.clone());
        }
        if reemit {
            self.dirty.push((key, id));
        }
        self.sessions -= n_absorbed;
        self.retracted.extend(out_retract);
        Offer::Joined {
            absorbed: n_absorbed,
        }
    }

    /// Moves to watermark `wm`: re-emits changed final sessions, emits sessions whose end it
    /// reached and purges those `allowed_lateness` past their end.
    pub fn advance(&mut self, wm: UnixNanos) -> Advanced {
        self.watermark = self.watermark.max(wm);
        let wm = self.watermark;
        let gap = self.limits.gap;
        let lateness = self.limits.lateness;
        let mut out = Advanced {
            retracted: std::mem::take(&mut self.retracted),
            ..Default::default()
        };
        for (k, id) in std::mem::take(&mut self.dirty) {
            if let Some(s) = self
                .keys
                .get_mut(&k)
                .and_then(|l| l.iter_mut().find(|s| s.id == id))
            {
                if s.emitted && s.dirty {
                    s.dirty = false;
                    out.finals.push((k, s.clone()));
                }
            }
        }
        while let Some(entry) = self.due.first_entry() {
            let (due, id) = *entry.key();
            if due > wm {
                break;
            }
            let key = entry.remove();
            let Some(list) = self.keys.get_mut(&key) else {
                continue;
            };
            let Some(i) = list.iter().position(|s| s.id == id) else {
                continue;
            };
            let s = &mut list[i];
            let end = s.end(gap);
            if !s.emitted {
                s.emitted = true;
                s.dirty = false;
                out.finals.push((key.clone(), s.clone()));
                let purge_at = end.saturating_add(lateness);
                if purge_at > wm {
                    self.due.insert((purge_at, id), key);
                    continue;
                }
            }
            list.remove(i);
            self.sessions -= 1;
            out.purged.push(id);
            if list.is_empty() {
                self.keys.remove(&key);
            }
        }
        out
    }

    /// Every open (not yet final) session.
    pub fn for_each_open(&self, mut f: impl FnMut(&KeyValue, &Session)) {
        for (k, list) in &self.keys {
            for s in list.iter().filter(|s| !s.emitted) {
                f(k, s);
            }
        }
    }

    /// Approximate bytes of the state.
    pub fn state_bytes(&self) -> usize {
        let per_key = std::mem::size_of::<(KeyValue, Vec<Session>)>() + 8;
        let keys: usize = self
            .keys
            .iter()
            .map(|(k, l)| {
                per_key
                    + k.heap_bytes()
                    + l.capacity() * std::mem::size_of::<Session>()
                    + l.iter().map(Session::heap_bytes).sum::<usize>()
            })
            .sum();
        keys + self.due.len() * (std::mem::size_of::<((u64, u64), KeyValue)>() + 16)
    }
}

/// The unsealed sessions of `list` touching `[lo, hi]`: the survivor's id — an open session if
/// there is one (so a merge never reopens a final row needlessly), else the earliest — and
/// the others, taken out of the list. `None` if none touches.
fn take_touching(
    list: &mut Vec<Session>,
    lo: UnixNanos,
    hi: UnixNanos,
    limits: Limits,
) -> Option<(u64, Vec<Session>)> {
    let gap = limits.gap;
    let touches = |s: &Session| !s.sealed && s.first_event <= hi && lo <= s.end(gap);
    let range = candidates(list, lo, hi, limits.max_duration);
    let survivor = list[range.clone()]
        .iter()
        .filter(|s| touches(s))
        .find(|s| !s.emitted)
        .or_else(|| list[range.clone()].iter().find(|s| touches(s)))
        .map(|s| s.id)?;
    // Allocates only when sessions are really merged (rare: late data bridging them).
    let mut absorbed: Vec<Session> = Vec::new();
    let (mut i, mut end) = (range.start, range.end);
    while i < end {
        if list[i].id != survivor && touches(&list[i]) {
            absorbed.push(list.remove(i));
            end -= 1;
        } else {
            i += 1;
        }
    }
    Some((survivor, absorbed))
}

/// What merging sessions and an item into a survivor changed.
struct Merged {
    /// Retractions: absorbed sessions that had been emitted, and the survivor if it is open
    /// again.
    retract: Vec<SessionRetraction>,
    /// `(due time, id)` of the absorbed sessions.
    old_dues: Vec<(UnixNanos, u64)>,
    /// The survivor is final and changed: re-emit it.
    reemit: bool,
}

/// Merges `absorbed` and the item into `s` at watermark `wm`.
fn merge(
    s: &mut Session,
    absorbed: Vec<Session>,
    it: &Item,
    limits: Limits,
    wm: UnixNanos,
) -> Merged {
    let mut out_retract = Vec::new();
    let mut old_dues = Vec::new();
    for a in absorbed {
        old_dues.push((due_at(limits, &a), a.id));
        if a.emitted {
            out_retract.push(SessionRetraction {
                session_id: a.id,
                merged_into: Some(s.id),
            });
        }
        s.absorb(a);
    }
    s.add(it);
    let id = s.id;
    let mut reemit = false;
    if s.emitted {
        if s.end(limits.gap) > wm {
            // Open again: withdraw its final row; it is emitted anew at its new end.
            s.emitted = false;
            s.dirty = false;
            out_retract.push(SessionRetraction {
                session_id: id,
                merged_into: None,
            });
        } else if !s.dirty {
            s.dirty = true;
            reemit = true;
        }
    }
    Merged {
        retract: out_retract,
        old_dues,
        reemit,
    }
}

/// The positions of the sessions (sorted by start) that may touch `[lo, hi]`: those starting
/// in `[lo - max_duration, hi]`.
fn candidates(
    list: &[Session],
    lo: UnixNanos,
    hi: UnixNanos,
    max_duration: u64,
) -> std::ops::Range<usize> {
    let from = lo.saturating_sub(max_duration);
    let a = list.partition_point(|s| s.first_event < from);
    let b = list.partition_point(|s| s.first_event <= hi);
    a..b.max(a)
}

/// When a session is next due: final at its end, purged `lateness` after it once emitted.
fn due_at(l: Limits, s: &Session) -> UnixNanos {
    let end = s.end(l.gap);
    if s.emitted {
        end.saturating_add(l.lateness)
    } else {
        end
    }
}

fn take_id(next: &mut u64) -> u64 {
    let id = *next;
    *next += 1;
    id
}
