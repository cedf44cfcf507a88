//! A request-rate cap per source bucket, so a backfill of years of history
//! stays under S3's per-prefix rates and leaves room for CloudTrail itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;
use trailvault_pipeline::seams::{
    BucketOwnership, ListedObject, ListingPage, SourceObject, TrailSource,
};
use trailvault_pipeline::SeamError;

/// Spaces requests evenly: each caller takes the next free slot, `interval`
/// after the previous one, and sleeps until it comes.
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// `None` for 0 (unlimited).
    pub fn per_second(requests: u32) -> Option<RateLimiter> {
        (requests > 0).then(|| RateLimiter {
            interval: Duration::from_secs(1) / requests,
            next_slot: Mutex::new(Instant::now()),
        })
    }

    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

pub struct RateLimitedSource {
    inner: Arc<dyn TrailSource>,
    limiter: RateLimiter,
}

impl RateLimitedSource {
    pub fn new(inner: Arc<dyn TrailSource>, limiter: RateLimiter) -> RateLimitedSource {
        RateLimitedSource { inner, limiter }
    }
}

#[async_trait]
impl TrailSource for RateLimitedSource {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    /// Each page is one request, and takes one slot.
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<ListedObject>, SeamError> {
        self.limiter.acquire().await;
        self.inner.list_page(prefix, continuation).await
    }

    async fn list_folders_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListingPage<String>, SeamError> {
        self.limiter.acquire().await;
        self.inner.list_folders_page(prefix, continuation).await
    }

    async fn head(&self, key: &str) -> Result<Option<ListedObject>, SeamError> {
        self.limiter.acquire().await;
        self.inner.head(key).await
    }

    async fn get(&self, key: &str) -> Result<SourceObject, SeamError> {
        self.limiter.acquire().await;
        self.inner.get(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), SeamError> {
        self.limiter.acquire().await;
        self.inner.delete(key).await
    }

    async fn ownership(&self) -> Result<BucketOwnership, SeamError> {
        self.limiter.acquire().await;
        self.inner.ownership().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_at_the_configured_rate() {
        let limiter = RateLimiter::per_second(10).unwrap();
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await;
        }
        // The first slot is immediate; 20 more at 100 ms each.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_take_a_slot_too() {
        use trailvault_pipeline::testsuite::memory::MemorySource;

        let memory = Arc::new(MemorySource::new("trail-bucket"));
        let source = RateLimitedSource::new(memory.clone(), RateLimiter::per_second(10).unwrap());
        let start = Instant::now();
        for index in 0..3 {
            source.delete(&format!("AWSLogs/{index}")).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(memory.deletes.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(RateLimiter::per_second(0).is_none());
    }
}
