//! The key of a session: its value owned (held per session list) and borrowed from a batch (so
//! looking up a known key costs no allocation); both hash alike.

use hashbrown::Equivalent;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A key value, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Trace([u8; 16]),
    Text(Arc<str>),
}

/// A key value, borrowed from a batch (so a known key costs no allocation).
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    Trace([u8; 16]),
    Text(&'a str),
}

impl Hash for KeyValue {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            KeyValue::Trace(t) => {
                h.write_u8(0);
                t.hash(h);
            }
            KeyValue::Text(s) => {
                h.write_u8(1);
                (**s).hash(h);
            }
        }
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            KeyRef::Trace(t) => {
                h.write_u8(0);
                t.hash(h);
            }
            KeyRef::Text(s) => {
                h.write_u8(1);
                s.hash(h);
            }
        }
    }
}

impl Equivalent<KeyValue> for KeyRef<'_> {
    fn equivalent(&self, k: &KeyValue) -> bool {
        match (self, k) {
            (KeyRef::Trace(a), KeyValue::Trace(b)) => a == b,
            (KeyRef::Text(a), KeyValue::Text(b)) => *a == &**b,
            _ => false,
        }
    }
}

impl KeyRef<'_> {
    pub(super) fn to_key(self) -> KeyValue {
        match self {
            KeyRef::Trace(t) => KeyValue::Trace(t),
            KeyRef::Text(s) => KeyValue::Text(Arc::from(s)),
        }
    }
}

impl KeyValue {
    /// The value as shown in rows: trace ids in lowercase hex.
    pub fn display(&self) -> Arc<str> {
        match self {
            KeyValue::Trace(t) => {
                let mut s = String::with_capacity(32);
                for b in t {
                    s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                    s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
                }
                Arc::from(s)
            }
            KeyValue::Text(s) => s.clone(),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            KeyValue::Trace(_) => 0,
            KeyValue::Text(s) => s.len() + 16,
        }
    }
}
