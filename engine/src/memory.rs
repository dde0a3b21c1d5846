//! The memory limiter: bytes held by in-flight requests (raw and decoded) and by queued batches,
//! accounted and capped (`limits.memory`; docs/design.md, "State and its bounds").
//!
//! Modelled on the OpenTelemetry Collector's `memory_limiter`: above the *soft* limit
//! (`limit − spike`) new data is refused with retryable backpressure; no reservation ever takes
//! the accounted total past the *hard* limit (`limit`). Receivers check [`MemoryLimiter::admit`]
//! before they read a request, grow a [`Reservation`] as its bytes arrive and as it is decoded,
//! and hand the reservation to the pipeline with the batch; it is released when the operator task
//! has processed the batch. This module owns the accounting only: it never allocates on behalf of
//! its callers and never blocks.

use crate::telemetry::{Counter, Gauge, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why bytes could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemoryExhausted {
    /// Accounted bytes are above `limit − spike`: new data waits until the queue drains.
    #[error("redwatch is above its soft memory limit (limits.memory); retry later")]
    Soft,
    /// The reservation would take accounted bytes past `limit`.
    #[error("redwatch's memory limit (limits.memory.limit) would be exceeded; retry later")]
    Hard,
}

/// Accounts bytes against a soft and a hard limit. Shared by every receiver and the pipeline.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    soft: u64,
    used: AtomicU64,
    used_gauge: Option<Arc<Gauge>>,
    refused: Option<[Arc<Counter>; 2]>,
}

impl MemoryLimiter {
    /// A limiter with `limit` bytes, refusing new data above `limit − spike`.
    pub fn new(limit: u64, spike: u64) -> Arc<Self> {
        Arc::new(MemoryLimiter {
            limit,
            soft: limit.saturating_sub(spike),
            used: AtomicU64::new(0),
            used_gauge: None,
            refused: None,
        })
    }

    /// A limiter that accounts but never refuses (`limits.memory: null`).
    pub fn unlimited() -> Arc<Self> {
        Self::new(u64::MAX, 0)
    }

    /// Like [`MemoryLimiter::new`], publishing `redwatch_memory_limiter_*` self-metrics.
    pub fn with_metrics(limit: u64, spike: u64, registry: &Registry) -> Arc<Self> {
        registry
            .gauge(
                "redwatch_memory_limiter_limit_bytes",
                "The memory limiter's hard limit (limits.memory.limit), in bytes.",
                &[],
            )
            .set(limit as f64);
        registry
            .gauge(
                "redwatch_memory_limiter_soft_limit_bytes",
                "Above this many accounted bytes (limit - spike) new data is refused with retryable backpressure.",
                &[],
            )
            .set(limit.saturating_sub(spike) as f64);
        let refused = |level| {
            registry.counter(
                "redwatch_memory_limiter_refused_total",
                "Reservations refused by the memory limiter, per level (soft: above limit - spike; hard: would pass limit).",
                &[("level", level)],
            )
        };
        Arc::new(MemoryLimiter {
            limit,
            soft: limit.saturating_sub(spike),
            used: AtomicU64::new(0),
            used_gauge: Some(registry.gauge(
                "redwatch_memory_limiter_used_bytes",
                "Bytes held by in-flight requests and queued batches, as accounted by the memory limiter.",
                &[],
            )),
            refused: Some([refused("soft"), refused("hard")]),
        })
    }

    /// The hard limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes accounted right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn refuse(&self, e: MemoryExhausted) -> MemoryExhausted {
        if let Some(c) = &self.refused {
            c[matches!(e, MemoryExhausted::Hard) as usize].inc();
        }
        e
    }

    fn publish(&self, used: u64) {
        if let Some(g) = &self.used_gauge {
            g.set(used as f64);
        }
    }

    /// Whether new data may start (accounted bytes at or below the soft limit). Receivers ask
    /// before they read a request.
    pub fn admit(&self) -> Result<(), MemoryExhausted> {
        if self.used() > self.soft {
            Err(self.refuse(MemoryExhausted::Soft))
        } else {
            Ok(())
        }
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn empty(self: &Arc<Self>) -> Reservation {
        Reservation {
            limiter: self.clone(),
            bytes: 0,
        }
    }

    /// Reserves `n` bytes unless that would pass `ceiling`.
    fn take(&self, n: u64, ceiling: u64, level: MemoryExhausted) -> Result<(), MemoryExhausted> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(n);
            if next > ceiling && n > 0 {
                return Err(self.refuse(level));
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.publish(next);
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn give_back(&self, n: u64) {
        if n > 0 {
            let prev = self.used.fetch_sub(n, Ordering::AcqRel);
            self.publish(prev.saturating_sub(n));
        }
    }

    /// Reserves `n` bytes for new data: refused above the soft limit (the Kafka source pauses).
    pub fn reserve_soft(self: &Arc<Self>, n: u64) -> Result<Reservation, MemoryExhausted> {
        self.take(n, self.soft, MemoryExhausted::Soft)?;
        Ok(Reservation {
            limiter: self.clone(),
            bytes: n,
        })
    }
}

/// Bytes held against a [`MemoryLimiter`]; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<MemoryLimiter>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `n` more bytes, unless that would pass the hard limit (data already admitted may
    /// use the spike).
    pub fn grow(&mut self, n: u64) -> Result<(), MemoryExhausted> {
        self.limiter
            .take(n, self.limiter.limit, MemoryExhausted::Hard)?;
        self.bytes += n;
        Ok(())
    }

    /// Holds exactly `n` bytes: grows (up to the hard limit) or gives the excess back.
    pub fn resize(&mut self, n: u64) -> Result<(), MemoryExhausted> {
        if n > self.bytes {
            self.grow(n - self.bytes)
        } else {
            self.limiter.give_back(self.bytes - n);
            self.bytes = n;
            Ok(())
        }
    }

    /// Moves `other`'s bytes into this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        if Arc::ptr_eq(&self.limiter, &other.limiter) {
            self.bytes += std::mem::take(&mut other.bytes);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.limiter.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_refuses_new_data_hard_caps_admitted_data() {
        let l = MemoryLimiter::new(1000, 200);
        let a = l.reserve_soft(700).unwrap();
        assert_eq!(l.used(), 700);
        l.admit().unwrap();
        let mut b = l.empty();
        b.grow(200).unwrap();
        assert_eq!(l.admit(), Err(MemoryExhausted::Soft));
        assert_eq!(l.reserve_soft(1).unwrap_err(), MemoryExhausted::Soft);
        assert_eq!(b.grow(101), Err(MemoryExhausted::Hard));
        b.grow(100).unwrap();
        assert_eq!(l.used(), 1000);
        b.resize(10).unwrap();
        assert_eq!(l.used(), 710);
        drop(a);
        assert_eq!(l.used(), 10);
        let mut c = l.empty();
        c.absorb(b);
        assert_eq!((c.bytes(), l.used()), (10, 10));
        drop(c);
        assert_eq!(l.used(), 0);
    }

    #[test]
    fn unlimited_never_refuses() {
        let l = MemoryLimiter::unlimited();
        let mut r = l.reserve_soft(u64::MAX / 4).unwrap();
        r.grow(u64::MAX / 4).unwrap();
        l.admit().unwrap();
    }
}
