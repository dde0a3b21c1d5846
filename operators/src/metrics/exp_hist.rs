//! Exponential histograms as a window keeps them: buckets per sign, merged by rescaling to the
//! coarser scale, capped at [`MAX_EXP_BUCKETS`] per sign.

/// Most buckets per sign an exponential histogram keeps (the OpenTelemetry SDK default is 160);
/// past that the merged histogram drops to a coarser scale.
pub const MAX_EXP_BUCKETS: usize = 160;

/// Exponential-histogram buckets of one sign: `counts[i]` is bucket `offset + i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpBuckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

impl ExpBuckets {
    /// Index range `[lo, hi]` of the non-empty span, if any.
    fn span(&self) -> Option<(i64, i64)> {
        let first = self.counts.iter().position(|&c| c > 0)?;
        let last = self.counts.iter().rposition(|&c| c > 0)?;
        Some((
            i64::from(self.offset) + first as i64,
            i64::from(self.offset) + last as i64,
        ))
    }

    /// Re-indexes to a scale `by` steps coarser (each step merges pairs of buckets).
    fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let Some((lo, hi)) = self.span() else {
            self.counts.clear();
            self.offset = 0;
            return;
        };
        let shift = by.min(62);
        let (nlo, nhi) = (lo >> shift, hi >> shift);
        let mut out = vec![0u64; (nhi - nlo + 1) as usize];
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let idx = (i64::from(self.offset) + i as i64) >> shift;
                out[(idx - nlo) as usize] += c;
            }
        }
        self.offset = nlo as i32;
        self.counts = out;
    }

    /// Adds `count` to bucket `index`, growing the array as needed.
    fn add_at(&mut self, index: i64, count: u64) {
        if count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.offset = index as i32;
            self.counts.push(count);
            return;
        }
        let off = i64::from(self.offset);
        if index < off {
            let grow = (off - index) as usize;
            let mut v = vec![0u64; grow];
            v.extend_from_slice(&self.counts);
            self.counts = v;
            self.offset = index as i32;
        }
        let i = (index - i64::from(self.offset)) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += count;
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// An exponential histogram (a delta, or a window's merge of deltas).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpHist {
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive: ExpBuckets,
    pub negative: ExpBuckets,
}

impl ExpHist {
    /// The scale at which `self` and `other` merged fit [`MAX_EXP_BUCKETS`] per sign.
    fn common_scale(&self, other: &ExpHist) -> i32 {
        let mut scale = self.scale.min(other.scale);
        let with = |b: &ExpBuckets, s: i32| b.span().map(|(l, h)| (l, h, s));
        let all = [
            [
                with(&self.positive, self.scale),
                with(&other.positive, other.scale),
            ],
            [
                with(&self.negative, self.scale),
                with(&other.negative, other.scale),
            ],
        ];
        // Lower the scale until every sign's merged span fits.
        while scale > -10 {
            let fits = all.iter().all(|pair| {
                let mut lo = i64::MAX;
                let mut hi = i64::MIN;
                for (l, h, s) in pair.iter().flatten() {
                    let by = (*s - scale).clamp(0, 62) as u32;
                    lo = lo.min(l >> by);
                    hi = hi.max(h >> by);
                }
                lo > hi || (hi - lo + 1) as usize <= MAX_EXP_BUCKETS
            });
            if fits {
                break;
            }
            scale -= 1;
        }
        scale
    }

    /// Brings `self` down to `scale` (never up).
    pub fn rescale(&mut self, scale: i32) {
        if scale < self.scale {
            let by = (self.scale - scale) as u32;
            self.positive.downscale(by);
            self.negative.downscale(by);
            self.scale = scale;
        }
    }

    /// Adds `other` into `self` at their common scale.
    pub fn merge(&mut self, other: &ExpHist) {
        let scale = self.common_scale(other);
        self.rescale(scale);
        let by = (other.scale - scale).clamp(0, 62) as u32;
        for (dst, src) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (i, &c) in src.counts.iter().enumerate() {
                dst.add_at((i64::from(src.offset) + i as i64) >> by, c);
            }
        }
        self.zero_count += other.zero_count;
        self.zero_threshold = self.zero_threshold.max(other.zero_threshold);
    }

    /// `self - prev` bucket by bucket at their common scale, or None when any count went down
    /// (the stream was reset).
    pub fn checked_sub(&self, prev: &ExpHist) -> Option<ExpHist> {
        let scale = self.scale.min(prev.scale);
        let mut cur = self.clone();
        cur.rescale(scale);
        let mut old = prev.clone();
        old.rescale(scale);
        let zero_count = cur.zero_count.checked_sub(old.zero_count)?;
        let sub = |c: &ExpBuckets, o: &ExpBuckets| -> Option<ExpBuckets> {
            let mut out = c.clone();
            for (i, &n) in o.counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let idx = i64::from(o.offset) + i as i64 - i64::from(out.offset);
                let slot = usize::try_from(idx)
                    .ok()
                    .and_then(|j| out.counts.get_mut(j))?;
                *slot = slot.checked_sub(n)?;
            }
            Some(out)
        };
        Some(ExpHist {
            scale,
            zero_count,
            zero_threshold: cur.zero_threshold,
            positive: sub(&cur.positive, &old.positive)?,
            negative: sub(&cur.negative, &old.negative)?,
        })
    }

    /// Observations in buckets (zero bucket included).
    pub fn bucket_total(&self) -> u64 {
        self.zero_count + self.positive.total() + self.negative.total()
    }
}
