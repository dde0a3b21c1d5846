//! Admission of queries: at most `sql.max_concurrent_queries` run at once; a bounded number wait
//! for a slot (at most the query timeout), the rest are refused at once as busy (HTTP 503 with
//! `Retry-After`, Flight `UNAVAILABLE`). Memory and CPU stay bounded however many clients ask.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many queries may wait per running slot before new ones are refused outright.
const WAITERS_PER_SLOT: usize = 4;

/// The gate every query passes before it is planned.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Why a query was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many queries were already waiting.
    QueueFull,
    /// No slot freed up within the wait.
    WaitedTooLong,
}

impl Admission {
    pub fn new(max_concurrent: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: max_concurrent * WAITERS_PER_SLOT,
        }
    }

    /// Waits up to `wait` for a slot; the permit frees it when dropped.
    pub async fn enter(&self, wait: Duration) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::QueueFull);
        }
        let got = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(p),
            // The semaphore is never closed; treat it like a timeout if it ever were.
            Ok(Err(_)) | Err(_) => Err(Refused::WaitedTooLong),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_then_a_bounded_queue_then_refusal() {
        let a = Admission::new(1);
        let held = a.enter(Duration::from_millis(10)).await.unwrap();
        // A waiter that gets no slot in time is refused.
        assert_eq!(
            a.enter(Duration::from_millis(20)).await.unwrap_err(),
            Refused::WaitedTooLong
        );
        // Four waiters fit the queue; the fifth is refused at once.
        let waiters: Vec<_> = (0..WAITERS_PER_SLOT)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.enter(Duration::from_secs(30)).await.is_ok() })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.waiting.load(Ordering::Acquire) < WAITERS_PER_SLOT {
            assert!(std::time::Instant::now() < deadline, "waiters never queued");
            tokio::task::yield_now().await;
        }
        assert_eq!(
            a.enter(Duration::from_secs(30)).await.unwrap_err(),
            Refused::QueueFull
        );
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap(), "a queued query runs once a slot frees");
        }
    }
}
