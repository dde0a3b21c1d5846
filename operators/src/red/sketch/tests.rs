use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal, Pareto};

const QS: [f64; 8] = [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

fn sketch_of(values: &[f64]) -> QuantileSketch {
    let mut s = QuantileSketch::new();
    for &v in values {
        s.add(v, 1.0);
    }
    s
}

fn log_normal(seed: u64, mu: f64, sigma: f64, n: usize) -> Vec<f64> {
    let dist = LogNormal::new(mu, sigma).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| dist.sample(&mut rng)).collect()
}

/// `x[⌊q·(n−1)⌋]` of the sorted values, with the same float expression the sketch uses.
fn exact_lower_quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() as f64 - 1.0)).floor() as usize]
}

fn is_dense(s: &QuantileSketch) -> bool {
    matches!(s.store, Store::Dense { .. })
}

fn bins(s: &QuantileSketch) -> Vec<(i16, f32)> {
    s.bins().collect()
}

/// Same logical content: bins, zero bucket, total and quantiles.
fn assert_same(a: &QuantileSketch, b: &QuantileSketch) -> Result<(), TestCaseError> {
    prop_assert_eq!(bins(a), bins(b));
    prop_assert_eq!(a.zero_weight(), b.zero_weight());
    prop_assert_eq!(a.count(), b.count());
    for q in QS {
        prop_assert_eq!(a.quantile(q), b.quantile(q), "q = {}", q);
    }
    Ok(())
}

/// Latency-like value sets within `MIN_VALUE..MAX_VALUE` (every quantile within α).
fn accurate_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(1e-3f64..1e5, 1..3000),
        (any::<u64>(), -2.0f64..8.0, 0.1f64..2.0, 1usize..5000)
            .prop_map(|(seed, mu, sigma, n)| log_normal(seed, mu, sigma, n)),
        (any::<u64>(), 0.01f64..100.0, 0.8f64..3.0, 1usize..5000).prop_map(
            |(seed, scale, shape, n)| {
                let dist = Pareto::new(scale, shape).unwrap();
                let mut rng = StdRng::seed_from_u64(seed);
                (0..n).map(|_| dist.sample(&mut rng)).collect()
            }
        ),
        (
            prop::collection::vec(1e-2f64..1e4, 1..10),
            prop::collection::vec(any::<prop::sample::Index>(), 1..2000)
        )
            .prop_map(|(distinct, picks)| picks
                .iter()
                .map(|i| distinct[i.index(distinct.len())])
                .collect()),
        prop::collection::vec((1e-3f64..1e4, prop::bool::weighted(0.3)), 1..3000).prop_map(
            |pairs| pairs
                .into_iter()
                .map(|(v, zero)| if zero { 0.0 } else { v })
                .collect()
        ),
    ]
}

/// Values that also exercise the zero bucket, the whole key range and clamping.
fn wild_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec((-25.0f64..30.0).prop_map(f64::exp), 0..400),
        prop::collection::vec((1.0f64..8.0).prop_map(f64::exp), 0..400),
        prop::collection::vec(prop_oneof![Just(0.0), 1e-12f64..1e-8, 1e-3f64..1e3], 0..200),
    ]
}

proptest! {
    #[test]
    fn unit_weight_quantiles_are_within_alpha(mut values in accurate_values()) {
        let s = sketch_of(&values);
        values.sort_by(f64::total_cmp);
        prop_assert_eq!(s.count(), values.len() as f64);
        for q in QS {
            let exact = exact_lower_quantile(&values, q);
            let estimate = s.quantile(q).unwrap();
            if exact == 0.0 {
                prop_assert_eq!(estimate, 0.0);
            } else {
                let err = (estimate - exact).abs() / exact;
                prop_assert!(
                    err <= QuantileSketch::RELATIVE_ACCURACY + 1e-9,
                    "q={} exact={} estimate={} err={}", q, exact, estimate, err
                );
            }
        }
    }

    #[test]
    fn merge_equals_sketch_of_union(
        a in wild_values(),
        b in wild_values(),
        c in wild_values(),
        seed in any::<u64>(),
    ) {
        let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
        let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let direct = sketch_of(&all);
        all.shuffle(&mut StdRng::seed_from_u64(seed));
        assert_same(&direct, &sketch_of(&all))?;

        let mut ab = sa.clone();
        ab.merge(&sb);
        let mut ba = sb.clone();
        ba.merge(&sa);
        assert_same(&ab, &direct)?;
        assert_same(&ba, &direct)?;

        let mut ab_c = ab.clone();
        ab_c.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut a_bc = sa.clone();
        a_bc.merge(&bc);
        all.extend(&c);
        assert_same(&ab_c, &a_bc)?;
        assert_same(&ab_c, &sketch_of(&all))?;
        prop_assert!(bins(&ab_c).len() <= QuantileSketch::MAX_BINS);
    }

    #[test]
    fn integral_weight_equals_repeated_adds(
        pairs in prop::collection::vec((0.0f64..1e4, 1u32..6), 0..500),
    ) {
        let mut weighted = QuantileSketch::new();
        let mut repeated = QuantileSketch::new();
        for &(v, w) in &pairs {
            weighted.add(v, f64::from(w));
            for _ in 0..w {
                repeated.add(v, 1.0);
            }
        }
        assert_same(&weighted, &repeated)?;
    }

    #[test]
    fn encoding_round_trips(
        values in prop_oneof![wild_values(), accurate_values()],
        weights in prop::collection::vec(prop_oneof![Just(1.0f64), 0.01f64..100.0], 1..8),
        fractional in any::<bool>(),
    ) {
        let mut s = QuantileSketch::new();
        for (i, &v) in values.iter().enumerate() {
            s.add(v, if fractional { weights[i % weights.len()] } else { 1.0 });
        }
        let bytes = s.to_bytes();
        let decoded = QuantileSketch::decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&s));
        prop_assert_eq!(decoded.unwrap().to_bytes(), bytes.clone());
        for len in 0..bytes.len() {
            prop_assert!(QuantileSketch::decode(&bytes[..len]).is_err(), "prefix {}", len);
        }
        let mut extended = bytes.clone();
        extended.push(0);
        prop_assert_eq!(QuantileSketch::decode(&extended), Err(SketchError::TrailingBytes(1)));
    }

    #[test]
    fn corrupted_encodings_never_panic(
        values in wild_values(),
        position in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut bytes = sketch_of(&values).to_bytes();
        let i = position.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(s) = QuantileSketch::decode(&bytes) {
            // Whatever is accepted is a consistent sketch.
            prop_assert_eq!(QuantileSketch::decode(&s.to_bytes()), Ok(s.clone()));
            let _ = s.quantile(0.99);
        }
    }

    #[test]
    fn random_bytes_never_panic(
        flags in 0u8..8,
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = QuantileSketch::decode(&tail);
        let mut bytes = vec![VERSION, flags];
        bytes.extend(&tail);
        for len in 0..=bytes.len() {
            let _ = QuantileSketch::decode(&bytes[..len]);
        }
    }
}

#[test]
fn constants_match_their_definitions() {
    assert!((GAMMA.ln() - LN_GAMMA).abs() < 1e-17);
    assert_eq!(key_of(QuantileSketch::MIN_VALUE), MIN_KEY);
    assert_eq!(key_of(QuantileSketch::MAX_VALUE * 0.999_999), MAX_KEY);
    assert_eq!(key_of(QuantileSketch::MAX_VALUE / GAMMA), MAX_KEY - 1);
    assert_eq!(QuantileSketch::MAX_BINS, 1843);
    assert_eq!(std::mem::size_of::<SparseBin>(), 8);
}

#[test]
fn weight_three_equals_three_adds() {
    let mut a = QuantileSketch::new();
    let mut b = QuantileSketch::new();
    for v in [3.0, 17.5, 250.0] {
        a.add(v, 3.0);
        for _ in 0..3 {
            b.add(v, 1.0);
        }
    }
    assert_eq!(a, b);
    assert_eq!(a.count(), 9.0);
    for q in QS {
        assert_eq!(a.quantile(q), b.quantile(q));
    }
}

#[test]
fn invalid_input_is_ignored() {
    let mut s = QuantileSketch::new();
    for (v, w) in [
        (f64::NAN, 1.0),
        (-1.0, 1.0),
        (5.0, 0.0),
        (5.0, -1.0),
        (5.0, f64::NAN),
        (5.0, f64::INFINITY),
        (5.0, 1e300),
        (5.0, 1e-300),
    ] {
        s.add(v, w);
    }
    assert!(s.is_empty());
    assert_eq!(s.quantile(0.5), None);
    assert_eq!(s, QuantileSketch::new());
    s.add(5.0, 1.0);
    assert_eq!(s.quantile(-0.1), None);
    assert_eq!(s.quantile(f64::NAN), None);
    assert!(s.quantile(1.0).is_some());
}

#[test]
fn zero_bucket_and_clamped_values() {
    let mut s = QuantileSketch::new();
    s.add(0.0, 1.0);
    s.add(1e-10, 1.0);
    s.add(1e15, 1.0);
    s.add(f64::INFINITY, 1.0);
    assert_eq!(s.zero_weight(), 2.0);
    assert_eq!(s.quantile(0.0), Some(0.0));
    assert_eq!(s.quantile(1.0 / 3.0), Some(0.0));
    let top = s.quantile(1.0).unwrap();
    assert!(
        (top / QuantileSketch::MAX_VALUE - 1.0).abs() <= 0.02,
        "{top}"
    );
    assert_eq!(bins(&s), vec![(MAX_KEY, 2.0)]);
}

#[test]
fn every_quantile_is_accurate_across_the_whole_range() {
    // 1 ns … 10⁹ ms: 15 decades, ~1,730 keys, none collapsed.
    let mut values: Vec<f64> = (0..20_000)
        .map(|i| 1e-6 * 10f64.powf(15.0 * f64::from(i) / 19_999.0))
        .collect();
    let mut s = QuantileSketch::new();
    for &v in values.iter().rev() {
        s.add(v, 1.0);
    }
    assert!(is_dense(&s));
    assert!(s.heap_bytes() <= 4 * QuantileSketch::MAX_BINS);
    values.sort_by(f64::total_cmp);
    for q in [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0] {
        let exact = exact_lower_quantile(&values, q);
        let err = (s.quantile(q).unwrap() - exact).abs() / exact;
        assert!(
            err <= QuantileSketch::RELATIVE_ACCURACY + 1e-9,
            "q={q} err={err}"
        );
    }
    assert_eq!(s.count(), 20_000.0);
}

#[test]
fn a_one_nanosecond_span_beside_slow_calls_keeps_its_quantile() {
    // The window the SQL oracle caught: a 1 ns span and ~1 s calls (1,036 keys apart).
    let mut slow = QuantileSketch::new();
    slow.add(1_013.0, 1.0);
    let mut fast = QuantileSketch::new();
    fast.add(1e-6, 1.0);
    for s in [sketch_of(&[1e-6, 1_013.0]), {
        let mut m = slow.clone();
        m.merge(&fast);
        m
    }] {
        let low = s.quantile(0.0).unwrap();
        assert!(
            (low / 1e-6 - 1.0).abs() <= QuantileSketch::RELATIVE_ACCURACY,
            "{low}"
        );
        let high = s.quantile(1.0).unwrap();
        assert!(
            (high / 1_013.0 - 1.0).abs() <= QuantileSketch::RELATIVE_ACCURACY,
            "{high}"
        );
    }
}

#[test]
fn sparse_and_dense_merge_both_ways() {
    let narrow = sketch_of(&log_normal(1, 3.0, 2.0, 20_000));
    let few = sketch_of(&[0.5, 40.0, 900.0, 1e6]);
    assert!(is_dense(&narrow) && !is_dense(&few));
    let mut a = narrow.clone();
    a.merge(&few);
    let mut b = few.clone();
    b.merge(&narrow);
    assert_eq!(bins(&a), bins(&b));
    assert_eq!(a.count(), 20_004.0);
    let mut c = QuantileSketch::new();
    c.merge(&narrow);
    assert_eq!(c, narrow);
    c.merge(&QuantileSketch::new());
    assert_eq!(c, narrow);
}

#[test]
fn fractional_weights_follow_the_rank_rule() {
    let mut s = QuantileSketch::new();
    s.add(10.0, 0.5);
    s.add(20.0, 2.5);
    s.add(30.0, 1.0);
    // W = 4, rank(q) = 3q; cumulative weights 0.5, 3, 4: a rank in [0, 0.5) reports 10,
    // [0.5, 3) reports 20, [3, 4) reports 30.
    let near = |q: f64, v: f64| (s.quantile(q).unwrap() / v - 1.0).abs() <= 0.01;
    assert!(near(0.0, 10.0));
    assert!(near(0.1, 10.0));
    assert!(near(0.2, 20.0));
    assert!(near(0.99, 20.0));
    assert!(near(1.0, 30.0));
}

#[test]
fn decode_rejects_inconsistent_encodings() {
    use SketchError::*;
    let d = QuantileSketch::decode;
    assert_eq!(d(&[]), Err(Truncated));
    assert_eq!(d(&[2, 0]), Err(UnsupportedVersion(2)));
    assert_eq!(d(&[1, 8]), Err(UnknownFlags(8)));
    // Empty sketch: integral totals and weights, 0 sparse bins.
    assert_eq!(d(&[1, 6, 0, 0, 0]), Ok(QuantileSketch::new()));
    // Total without bins, and bins without total.
    assert!(matches!(d(&[1, 6, 1, 0, 0]), Err(Invalid(_))));
    assert!(matches!(d(&[1, 6, 0, 0, 1, 2, 1]), Err(Invalid(_))));
    // Zero bucket above the total.
    assert!(matches!(d(&[1, 6, 1, 2, 0]), Err(Invalid(_))));
    // Sparse bin with zero weight; key out of range (zigzag 4000 = key 2000).
    assert!(matches!(d(&[1, 6, 1, 0, 1, 2, 0]), Err(Invalid(_))));
    assert!(matches!(
        d(&[1, 6, 1, 0, 1, 0xa0, 0x1f, 1]),
        Err(Invalid(_))
    ));
    // Dense store with an empty edge bin, and with an absurd length.
    assert!(matches!(d(&[1, 7, 2, 0, 2, 3, 1, 1, 0]), Err(Invalid(_))));
    assert!(matches!(
        d(&[1, 7, 2, 0, 2, 0xff, 0xff, 0x03]),
        Err(Invalid(_))
    ));
    // Sparse count larger than the bytes could hold.
    assert_eq!(d(&[1, 6, 2, 0, 100, 2, 1]), Err(Truncated));
    // Overlong varint.
    assert_eq!(
        d(&[1, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(BadVarint)
    );
    // A valid dense one: keys 1..=3, weights 1, 0, 1.
    let s = d(&[1, 7, 2, 0, 2, 3, 1, 0, 1]).unwrap();
    assert_eq!(bins(&s), vec![(1, 1.0), (3, 1.0)]);
}

#[test]
fn memory_per_sketch() {
    let mut report = Vec::new();
    for n in [20, 1_000, 10_000, 1_000_000] {
        let s = sketch_of(&log_normal(7, 50f64.ln(), 0.8, n));
        let encoded = s.to_bytes().len();
        report.push(format!(
            "{n} values: {} heap bytes ({}, {} keys), {encoded} encoded bytes",
            s.heap_bytes(),
            if is_dense(&s) { "dense" } else { "sparse" },
            s.bins().count(),
        ));
        match n {
            20 => assert!(!is_dense(&s) && s.heap_bytes() <= 256, "{}", s.heap_bytes()),
            10_000 => assert!(s.heap_bytes() <= 1600, "{}", s.heap_bytes()),
            _ => {}
        }
    }
    println!("QuantileSketch memory (log-normal, median 50 ms, sigma 0.8):");
    for line in report {
        println!("  {line}");
    }
}

fn is_compact(s: &QuantileSketch) -> bool {
    matches!(s.store, Store::Compact(_))
}

#[test]
fn unit_weights_stay_compact_at_four_bytes_per_key() {
    let s = sketch_of(&log_normal(11, 2.0, 0.9, 100));
    assert!(is_compact(&s));
    let keys = s.bins().count();
    assert!(
        s.heap_bytes() <= 4 * (keys + keys / 2 + 4),
        "{}",
        s.heap_bytes()
    );
}

#[test]
fn a_fractional_weight_widens_without_changing_the_sketch() {
    let values = log_normal(12, 1.0, 0.7, 200);
    let mut s = sketch_of(&values);
    let mut wide = s.clone();
    wide.store.widen();
    assert!(is_compact(&s) && !is_compact(&wide));
    assert_eq!(s, wide);
    assert_eq!(s.to_bytes(), wide.to_bytes());
    s.add(values[0], 0.25);
    wide.add(values[0], 0.25);
    assert!(!is_compact(&s));
    // (The widened one may also have turned dense on the way: same bins either way.)
    assert_eq!(bins(&s), bins(&wide));
    assert_eq!(s.count(), wide.count());
}

#[test]
fn a_bin_past_two_million_widens_and_stays_exact() {
    let mut s = QuantileSketch::new();
    s.add(5.0, f64::from(COUNT_MASK));
    assert!(is_compact(&s));
    s.add(5.0, 1.0);
    assert!(!is_compact(&s));
    assert_eq!(bins(&s), vec![(key_of(5.0), COUNT_MASK as f32 + 1.0)]);
    // The same through merges of two compact sketches.
    let mut a = QuantileSketch::new();
    a.add(5.0, f64::from(COUNT_MASK));
    let mut b = QuantileSketch::new();
    b.add(5.0, 3.0);
    b.add(7.0, 1.0);
    a.merge(&b);
    assert!(!is_compact(&a));
    assert_eq!(
        bins(&a),
        vec![(key_of(5.0), COUNT_MASK as f32 + 3.0), (key_of(7.0), 1.0)]
    );
}

proptest! {
    /// Compact, wide and decoded sketches of the same weighted values agree bin for bin,
    /// byte for byte, merged in any combination.
    #[test]
    fn compact_and_wide_stores_are_the_same_sketch(
        a in prop::collection::vec((1e-3f64..1e5, prop::sample::select(vec![1.0, 2.0, 0.5, 1000.0])), 0..300),
        b in prop::collection::vec((1e-3f64..1e5, prop::sample::select(vec![1.0, 3.0])), 0..300),
    ) {
        let build = |vals: &[(f64, f64)], wide: bool| {
            let mut s = QuantileSketch::new();
            if wide {
                s.store.widen();
            }
            for &(v, w) in vals {
                s.add(v, w);
            }
            s
        };
        for (x, y) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut m = build(&a, x);
            m.merge(&build(&b, y));
            let mut all = a.clone();
            all.extend_from_slice(&b);
            let direct = build(&all, false);
            assert_same(&m, &direct)?;
            let decoded = QuantileSketch::decode(&m.to_bytes()).unwrap();
            assert_same(&decoded, &m)?;
            prop_assert_eq!(decoded.to_bytes(), m.to_bytes());
        }
    }
}
