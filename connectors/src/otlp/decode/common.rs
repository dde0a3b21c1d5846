//! Messages of `opentelemetry.proto.common.v1` as the trace scanner reads them: attributes
//! (`KeyValue`, `AnyValue`, arrays and lists), instrumentation scopes, resources and entity
//! references.
//!
//! Owns the attribute value form the scanner keeps ([`Value`]) and the first-match lookup slot
//! ([`Slot`]); everything else here is only validated (framing, UTF-8, depth), as prost would, and
//! then dropped. Knows nothing about spans or metrics.

use super::sampling::Number;
use super::wire::{exact_varint, is_ascii, Fault, Reader, MAX_DEPTH};

/// What an attribute value is, as the decoder uses it (the last `AnyValue` oneof field seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// No oneof field (an empty `AnyValue`, or none at all).
    Unset,
    /// Array, key-value list, bytes or string index: not usable as a dimension or a number.
    Other,
    /// `bits` = the string's address in the request, `len` its length.
    Str,
    /// `bits` = 0 or 1.
    Bool,
    /// `bits` = the i64's bits.
    Int,
    /// `bits` = the f64's bits.
    Double,
}

/// An attribute value in 16 bytes, so it travels in registers (a Rust enum with a slice payload
/// was copied through memory at odd offsets, stalling store forwarding on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Value {
    pub(super) kind: Kind,
    /// Length of a `Str`.
    pub(super) len: u32,
    pub(super) bits: u64,
}

impl Value {
    pub(super) const UNSET: Value = Value::of(Kind::Unset, 0);
    pub(super) const OTHER: Value = Value::of(Kind::Other, 0);

    pub(super) const fn of(kind: Kind, bits: u64) -> Value {
        Value { kind, len: 0, bits }
    }

    pub(super) fn string(s: &[u8]) -> Value {
        Value {
            kind: Kind::Str,
            // The request is at most 4 GiB (checked upfront).
            len: s.len() as u32,
            bits: s.as_ptr() as u64,
        }
    }

    pub(super) fn is_scalar(&self) -> bool {
        !matches!(self.kind, Kind::Unset | Kind::Other)
    }
}

/// One `KeyValue`: its key and its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attr<'a> {
    pub(super) key: &'a [u8],
    pub(super) value: Value,
}

/// The first attribute found with a given key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) found: bool,
    pub(super) value: Value,
}

impl Slot {
    pub(super) const EMPTY: Slot = Slot {
        found: false,
        value: Value::UNSET,
    };

    #[inline(always)]
    pub(super) fn offer(&mut self, v: Value) {
        if !self.found {
            *self = Slot {
                found: true,
                value: v,
            };
        }
    }

    pub(super) fn number(&self) -> Option<Number> {
        match self.value.kind {
            Kind::Int if self.found => Some(Number::Int(self.value.bits as i64)),
            Kind::Double if self.found => Some(Number::Double(f64::from_bits(self.value.bits))),
            _ => None,
        }
    }
}

/// `KeyValue`: its key (empty when absent) and the value as merged by prost.
#[inline]
pub(super) fn key_value<'a>(r: Reader<'a>, depth: u32) -> Result<Attr<'a>, Fault> {
    match key_value_fast(r.rest(), depth) {
        Some(a) => Ok(a),
        None => key_value_general(r, depth),
    }
}

/// The layout SDKs write: `0a len key 12 len AnyValue`, where the value holds one scalar field and
/// every length fits one byte, with ASCII strings. Anything else (or anything odd) returns None
/// and takes the general path, which decides — the result is the same either way.
#[inline(always)]
fn key_value_fast(b: &[u8], depth: u32) -> Option<Attr<'_>> {
    let [0x0a, klen, rest @ ..] = b else {
        return None;
    };
    let (key, rest) = rest.split_at_checked(usize::from(*klen))?;
    let [0x12, vlen, any @ ..] = rest else {
        return None;
    };
    // One-byte lengths (< 0x80); the value ends the KeyValue; the value's depth is allowed.
    if *klen >= 0x80 || usize::from(*vlen) != any.len() || depth >= MAX_DEPTH || !is_ascii(key) {
        return None;
    }
    let value = match any {
        [] => Value::UNSET,
        [0x0a, slen, s @ ..] if usize::from(*slen) == s.len() && is_ascii(s) => Value::string(s),
        [0x10, v @ ..] => Value::of(Kind::Bool, u64::from(exact_varint(v)? != 0)),
        [0x18, v @ ..] => Value::of(Kind::Int, exact_varint(v)?),
        [0x21, d @ ..] => Value::of(Kind::Double, u64::from_le_bytes(d.try_into().ok()?)),
        _ => return None,
    };
    Some(Attr { key, value })
}

fn key_value_general<'a>(mut r: Reader<'a>, depth: u32) -> Result<Attr<'a>, Fault> {
    let mut a = Attr {
        key: r.empty(),
        value: Value::UNSET,
    };
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => a.key = r.string(wt, "KeyValue.key")?,
            2 => {
                let (m, d) = r.message(wt, "KeyValue.value", depth)?;
                // A repeated value merges into the first: only a set oneof replaces it.
                let v = any_value(m, d)?;
                if v.kind != Kind::Unset {
                    a.value = v;
                }
            }
            3 => {
                r.varint_field(wt, "KeyValue.key_strindex")?;
            }
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(a)
}

/// `AnyValue`: the last oneof field wins; nested arrays and lists are validated, not kept.
/// Inlined into its callers; the recursion goes through [`array_value`] and [`key_values`].
#[inline(always)]
fn any_value(mut r: Reader<'_>, depth: u32) -> Result<Value, Fault> {
    let mut v = Value::UNSET;
    while r.has_more() {
        let (f, wt) = r.key()?;
        v = match f {
            1 => Value::string(r.string(wt, "AnyValue.string_value")?),
            2 => Value::of(
                Kind::Bool,
                u64::from(r.varint_field(wt, "AnyValue.bool_value")? != 0),
            ),
            3 => Value::of(Kind::Int, r.varint_field(wt, "AnyValue.int_value")?),
            4 => Value::of(Kind::Double, r.fixed64_field(wt, "AnyValue.double_value")?),
            5 => {
                let (m, d) = r.message(wt, "AnyValue.array_value", depth)?;
                array_value(m, d)?;
                Value::OTHER
            }
            6 => {
                let (m, d) = r.message(wt, "AnyValue.kvlist_value", depth)?;
                key_values(m, d, "KeyValueList.values")?;
                Value::OTHER
            }
            7 => {
                r.bytes_field(wt, "AnyValue.bytes_value")?;
                Value::OTHER
            }
            8 => {
                r.varint_field(wt, "AnyValue.string_value_strindex")?;
                Value::OTHER
            }
            _ => {
                r.skip(f, wt, depth)?;
                continue;
            }
        };
    }
    Ok(v)
}

#[inline(never)]
fn array_value(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                let (m, d) = r.message(wt, "ArrayValue.values", depth)?;
                any_value(m, d)?;
            }
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

/// A message whose only known field is `repeated KeyValue` number 1 (`KeyValueList`).
#[inline(never)]
fn key_values(mut r: Reader<'_>, depth: u32, field: &'static str) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                let (m, d) = r.message(wt, field, depth)?;
                key_value(m, d)?;
            }
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

pub(super) fn entity_ref(mut r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => r.string(wt, "EntityRef.schema_url").map(|_| ())?,
            2 => r.string(wt, "EntityRef.type").map(|_| ())?,
            3 => r.string(wt, "EntityRef.id_keys").map(|_| ())?,
            4 => r.string(wt, "EntityRef.description_keys").map(|_| ())?,
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

pub(super) fn scope(r: Reader<'_>, depth: u32) -> Result<(), Fault> {
    scope_attributes(r, depth, |_| {})
}

/// `InstrumentationScope`, validated, handing each attribute to `on_attr` (in order).
pub(super) fn scope_attributes<'a>(
    r: Reader<'a>,
    depth: u32,
    on_attr: impl FnMut(Attr<'a>),
) -> Result<(), Fault> {
    let (mut name, mut version): (&[u8], &[u8]) = (&[], &[]);
    scope_parts(r, depth, &mut name, &mut version, on_attr)
}

/// `InstrumentationScope`, validated: name and version kept (last occurrence wins), each
/// attribute handed to `on_attr` (in order).
pub(super) fn scope_parts<'a>(
    mut r: Reader<'a>,
    depth: u32,
    name: &mut &'a [u8],
    version: &mut &'a [u8],
    mut on_attr: impl FnMut(Attr<'a>),
) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => *name = r.string(wt, "InstrumentationScope.name")?,
            2 => *version = r.string(wt, "InstrumentationScope.version")?,
            3 => {
                let (m, d) = r.message(wt, "InstrumentationScope.attributes", depth)?;
                on_attr(key_value(m, d)?);
            }
            4 => r
                .varint_field(wt, "InstrumentationScope.dropped_attributes_count")
                .map(|_| ())?,
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}

/// `Resource` (`opentelemetry.proto.resource.v1`), validated, handing each attribute to
/// `on_attr` (in order).
pub(super) fn resource_attributes<'a>(
    mut r: Reader<'a>,
    depth: u32,
    mut on_attr: impl FnMut(Attr<'a>),
) -> Result<(), Fault> {
    while r.has_more() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                let (m, d) = r.message(wt, "Resource.attributes", depth)?;
                on_attr(key_value(m, d)?);
            }
            2 => {
                r.varint_field(wt, "Resource.dropped_attributes_count")?;
            }
            3 => {
                let (m, d) = r.message(wt, "Resource.entity_refs", depth)?;
                entity_ref(m, d)?;
            }
            _ => r.skip(f, wt, depth)?,
        }
    }
    Ok(())
}
