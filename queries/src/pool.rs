//! Query memory: every query gets its own limit (`sql.memory_limit`) inside one pool shared by
//! all running queries (`sql.shared_memory_limit`), so N concurrent queries cannot take N times
//! the per-query limit (docs/design.md, "State and its bounds").

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};
use std::sync::Arc;

/// One query's view of the memory: its own budget, and the shared one behind it.
#[derive(Debug)]
pub struct QueryPool {
    own: GreedyMemoryPool,
    shared: Arc<GreedyMemoryPool>,
    shared_limit: usize,
}

impl QueryPool {
    pub fn new(limit: usize, shared: Arc<GreedyMemoryPool>, shared_limit: usize) -> Self {
        QueryPool {
            own: GreedyMemoryPool::new(limit),
            shared,
            shared_limit,
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query pool ({} of its own, {} of all queries' {} bytes reserved)",
            self.own.reserved(),
            self.shared.reserved(),
            self.shared_limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "redwatch_query_pool"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.own.try_grow(reservation, additional)?;
        if self.shared.try_grow(reservation, additional).is_err() {
            self.own.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the queries running now hold the whole shared query memory \
                 (sql.shared_memory_limit = {} bytes); retry when fewer queries run",
                self.shared_limit
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_query_is_bounded_by_its_own_limit_and_by_what_the_others_hold() {
        let shared = Arc::new(GreedyMemoryPool::new(100));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, shared.clone(), 100));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, shared.clone(), 100));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        assert!(ra.try_grow(61).is_err(), "over its own limit");
        ra.try_grow(60).unwrap();
        let err = rb.try_grow(50).unwrap_err().to_string();
        assert!(err.contains("sql.shared_memory_limit"), "{err}");
        // The failed attempt left nothing behind in either pool.
        assert_eq!(b.reserved(), 0);
        assert_eq!(shared.reserved(), 60);
        rb.try_grow(40).unwrap();
        assert_eq!(shared.reserved(), 100);
        drop(ra);
        assert_eq!(shared.reserved(), 40);
        rb.try_grow(20).unwrap();
        assert_eq!(shared.reserved(), 60);
    }
}
