//! Bounded admission of client writes to the writer: a few hundred at a
//! time, the others wait their turn before they are queued.
//!
//! With 10,000 publishing connections, each group commit answered
//! thousands of requests at once, and an HTTP worker then had thousands
//! of answers to write and next requests to read before it came to a
//! `GET /health` (p99 130–370 ms). Admitting a bounded number keeps each
//! commit's burst of answers bounded; that many already fill a commit. A
//! place is given on as soon as the writer runs the write (see
//! `Store::write_bounded`), so the next commit fills while one runs. A
//! lazy write (an auto-acknowledgement) answers no client and takes none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    places: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Admission {
    pub fn new(places: usize) -> Admission {
        Admission {
            places: Arc::new(Semaphore::new(places)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Client writes waiting for a place now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Waits for a place, held until the permit is dropped.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        let _counted = Counted::new(&self.waiting);
        match self.places.clone().acquire_owned().await {
            Ok(place) => place,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }
}

/// One more waiting, for as long as it lives (also when the wait is
/// dropped: a client that goes away).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_write_past_the_places_waits_and_is_counted_until_it_enters_or_goes() {
        let admission = Admission::new(1);
        let first = admission.enter().await;
        let mut second = Box::pin(admission.enter());
        assert!(second.as_mut().now_or_never().is_none(), "no place is free");
        assert_eq!(admission.waiting(), 1);
        drop(first);
        let _second = second.await;
        assert_eq!(admission.waiting(), 0);
        let third = admission.enter();
        let gone = tokio::time::timeout(std::time::Duration::from_millis(10), third).await;
        assert!(gone.is_err(), "no place is free");
        assert_eq!(admission.waiting(), 0, "a wait dropped is not counted");
    }
}
