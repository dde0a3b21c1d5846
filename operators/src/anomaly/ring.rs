//! [`Ring16`]: a fixed-capacity ring of recent values in 2 bytes each — IEEE half precision
//! (relative precision ~0.05%) of the value divided by a per-ring power-of-two scale, which
//! grows when a value would not fit in half precision's range. The rolling baselines (robust
//! z-score, forecaster history) keep one per series and signal.

use half::f16;

/// Largest |value / scale| stored without growing the scale (f16 tops out at 65 504).
const MAX_SCALED: f64 = 32_768.0;

/// A ring of the last `capacity` values.
#[derive(Debug, Clone)]
pub struct Ring16 {
    vals: Box<[f16]>,
    /// Values are stored divided by 2^scale_log2.
    scale_log2: i16,
    len: u16,
    head: u16,
}

impl Ring16 {
    /// A ring of `capacity` values (1..=65 535).
    pub fn new(capacity: usize) -> Self {
        Ring16 {
            vals: vec![f16::ZERO; capacity.clamp(1, u16::MAX as usize)].into_boxed_slice(),
            scale_log2: 0,
            len: 0,
            head: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.vals.len()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn scale(&self) -> f64 {
        (self.scale_log2 as f64).exp2()
    }

    /// Appends `x` (non-finite values are ignored), dropping the oldest when full.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let scaled = x.abs() / self.scale();
        if scaled > MAX_SCALED {
            let k = (scaled / MAX_SCALED).log2().ceil().clamp(1.0, 1000.0) as i16;
            self.grow(k);
        }
        let cap = self.vals.len() as u16;
        self.vals[self.head as usize] = f16::from_f64(x / self.scale());
        self.head = (self.head + 1) % cap;
        self.len = (self.len + 1).min(cap);
    }

    /// Multiplies the scale by 2^k, re-encoding the values held.
    fn grow(&mut self, k: i16) {
        let f = (k as f64).exp2();
        for v in self.vals.iter_mut() {
            *v = f16::from_f64(v.to_f64() / f);
        }
        self.scale_log2 = self.scale_log2.saturating_add(k);
    }

    /// The values held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let cap = self.vals.len();
        let len = self.len as usize;
        let start = (self.head as usize + cap - len) % cap;
        let s = self.scale();
        (0..len).map(move |k| self.vals[(start + k) % cap].to_f64() * s)
    }

    /// Replaces `out` with the values held, in storage order (for order-free statistics).
    pub fn fill_f32(&self, out: &mut Vec<f32>) {
        out.clear();
        let s = self.scale() as f32;
        out.extend(
            self.vals[..self.len as usize]
                .iter()
                .map(|v| v.to_f32() * s),
        );
    }

    pub fn heap_bytes(&self) -> usize {
        self.vals.len() * std::mem::size_of::<f16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_the_last_values_in_order() {
        let mut r = Ring16::new(3);
        for x in [1.0, 2.0, 3.0, 4.0] {
            r.push(x);
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
        let mut v = Vec::new();
        r.fill_f32(&mut v);
        v.sort_by(f32::total_cmp);
        assert_eq!(v, vec![2.0, 3.0, 4.0]);
        assert_eq!(r.heap_bytes(), 6);
    }

    proptest! {
        /// Relative precision ~0.05% whatever the scale (values far below the largest one
        /// held may lose more).
        #[test]
        fn precision_is_relative(xs in proptest::collection::vec(1e-3f64..1e12, 1..100), neg in any::<bool>()) {
            let mut r = Ring16::new(8);
            for &x in &xs {
                let x = if neg { -x } else { x };
                r.push(x);
                let last = r.iter().last().unwrap();
                let tiny = r.scale() * 1e-4;
                prop_assert!((last - x).abs() <= 1e-3 * x.abs() + tiny, "{last} vs {x}");
            }
            prop_assert_eq!(r.len(), xs.len().min(8));
        }
    }
}
