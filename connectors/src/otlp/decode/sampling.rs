//! Sampling weights: how many real spans one received span stands for.
//!
//! Rules, first that applies wins: the span attribute `sampling.adjusted_count` (> 0), then
//! `sampling.probability` or `sampling.ratio` in (0, 1] (weight 1/p), then the OpenTelemetry
//! sampling threshold `th` in the `ot` member of the W3C tracestate. Invalid values are ignored;
//! nothing found means weight 1.0. Pure functions, no allocation.

/// A scalar attribute value as the sampling rules see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Double(f64),
}

/// Weight from `sampling.adjusted_count`, if valid (finite and > 0).
pub(crate) fn adjusted_count_weight(v: Option<Number>) -> Option<f64> {
    match v? {
        Number::Int(i) if i > 0 => Some(i as f64),
        Number::Double(d) if d > 0.0 && d.is_finite() => Some(d),
        _ => None,
    }
}

/// Weight 1/p from a sampling probability, if p is in (0, 1] and 1/p is finite (a subnormal p
/// below ~5.6e-309 would make it infinite: invalid, like p = 0).
pub(crate) fn probability_weight(v: Option<Number>) -> Option<f64> {
    let p = match v? {
        Number::Int(i) => i as f64,
        Number::Double(d) => d,
    };
    if p > 0.0 && p <= 1.0 {
        Some(1.0 / p).filter(|w| w.is_finite())
    } else {
        None
    }
}

/// 2^56: the size of the randomness space of OpenTelemetry consistent sampling.
const MAX_ADJUSTED: u64 = 1 << 56;

/// Weight from the `th` sub-key of the `ot` tracestate member (OpenTelemetry "TraceState
/// Probability Sampling"): the threshold is 1 to 14 lowercase hex digits, right-padded with zeros
/// to 56 bits; spans are kept with probability (2^56 - T) / 2^56. Only the first `ot` member and
/// its first `th` are looked at.
pub(crate) fn tracestate_weight(tracestate: &[u8]) -> Option<f64> {
    for member in tracestate.split(|&b| b == b',') {
        let member = trim_ows(member);
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            continue;
        };
        if &member[..eq] != b"ot" {
            continue;
        }
        return member[eq + 1..]
            .split(|&b| b == b';')
            .find_map(|sub| sub.strip_prefix(b"th:"))
            .and_then(threshold_weight);
    }
    None
}

/// Weight for one `th` value.
pub(crate) fn threshold_weight(hex: &[u8]) -> Option<f64> {
    if hex.is_empty() || hex.len() > 14 {
        return None;
    }
    let mut t: u64 = 0;
    for &b in hex {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        t = (t << 4) | u64::from(d);
    }
    t <<= 4 * (14 - hex.len());
    // t < 2^56, so the kept share is at least 1/2^56.
    Some(MAX_ADJUSTED as f64 / (MAX_ADJUSTED - t) as f64)
}

/// Trims W3C optional whitespace (spaces and tabs).
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_values_follow_the_spec() {
        assert_eq!(threshold_weight(b"0"), Some(1.0));
        // th:8 = 50% kept.
        assert_eq!(threshold_weight(b"8"), Some(2.0));
        // th:c = 25% kept.
        assert_eq!(threshold_weight(b"c"), Some(4.0));
        // th:f = 1/16 kept.
        assert_eq!(threshold_weight(b"f"), Some(16.0));
        // th:fd70a4 ~= 1% kept (the spec's example table).
        let w = threshold_weight(b"fd70a4").unwrap();
        assert!((w - 100.0).abs() < 0.01, "{w}");
        assert_eq!(
            threshold_weight(b"ffffffffffffff"),
            Some(MAX_ADJUSTED as f64)
        );
        // Padding: "8" and "80000000000000" are the same threshold.
        assert_eq!(threshold_weight(b"80000000000000"), Some(2.0));
    }

    #[test]
    fn invalid_thresholds_are_ignored() {
        assert_eq!(threshold_weight(b""), None);
        assert_eq!(threshold_weight(b"fffffffffffffff"), None); // 15 digits
        assert_eq!(threshold_weight(b"C"), None); // uppercase is not allowed
        assert_eq!(threshold_weight(b"0x8"), None);
        assert_eq!(threshold_weight(b"g"), None);
    }

    #[test]
    fn tracestate_members_and_subkeys() {
        assert_eq!(tracestate_weight(b"ot=th:8"), Some(2.0));
        assert_eq!(tracestate_weight(b"ot=rv:abcdef01234567;th:c"), Some(4.0));
        assert_eq!(
            tracestate_weight(b"vendor=x, ot=th:8;rv:1 ,other=y"),
            Some(2.0)
        );
        assert_eq!(tracestate_weight(b"\tot=th:8\t"), Some(2.0));
        assert_eq!(tracestate_weight(b"vendor=th:8"), None);
        assert_eq!(tracestate_weight(b"ot=p:8"), None);
        assert_eq!(tracestate_weight(b"ot=th:"), None);
        assert_eq!(tracestate_weight(b"ot=th:xyz"), None);
        assert_eq!(tracestate_weight(b""), None);
        assert_eq!(tracestate_weight(b"ot"), None);
        assert_eq!(tracestate_weight(b"xot=th:8"), None);
        // Only the first `ot` member counts (duplicates are invalid W3C anyway).
        assert_eq!(tracestate_weight(b"ot=rv:1,ot=th:8"), None);
        assert_eq!(tracestate_weight(b"ot=th:0"), Some(1.0));
    }

    #[test]
    fn sampling_attributes() {
        assert_eq!(adjusted_count_weight(Some(Number::Int(10))), Some(10.0));
        assert_eq!(adjusted_count_weight(Some(Number::Double(2.5))), Some(2.5));
        assert_eq!(adjusted_count_weight(Some(Number::Int(0))), None);
        assert_eq!(adjusted_count_weight(Some(Number::Int(-3))), None);
        assert_eq!(adjusted_count_weight(Some(Number::Double(f64::NAN))), None);
        assert_eq!(
            adjusted_count_weight(Some(Number::Double(f64::INFINITY))),
            None
        );
        assert_eq!(adjusted_count_weight(None), None);
        assert_eq!(probability_weight(Some(Number::Double(0.25))), Some(4.0));
        assert_eq!(probability_weight(Some(Number::Double(1.0))), Some(1.0));
        assert_eq!(probability_weight(Some(Number::Int(1))), Some(1.0));
        assert_eq!(probability_weight(Some(Number::Double(0.0))), None);
        // Found by the trace_proto fuzz target: 1/p overflowed to infinity.
        assert_eq!(
            probability_weight(Some(Number::Double(f64::from_bits(12)))),
            None
        );
        let tiny = f64::MIN_POSITIVE;
        assert_eq!(
            probability_weight(Some(Number::Double(tiny))),
            Some(1.0 / tiny)
        );
        assert_eq!(probability_weight(Some(Number::Double(1.5))), None);
        assert_eq!(probability_weight(Some(Number::Double(f64::NAN))), None);
        assert_eq!(probability_weight(Some(Number::Int(2))), None);
    }
}
