//! The bandwidth limit (`backup-bandwidth-limit`): one token bucket shared
//! by every upload of a backup (and every download of a restore), so the
//! limit holds for all of them together whatever the concurrency. A taker
//! may run into debt by one chunk and then waits until it is paid back at
//! the limit's rate; the bucket holds at most one second's worth, so an
//! idle moment does not turn into a burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate in bytes per second, shared across tasks.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    /// Bytes that may pass now (negative: owed), as of an instant.
    bucket: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// A limit of `mib_per_second` MiB/s (more than 0).
    pub fn new(mib_per_second: u32) -> Self {
        let rate = f64::from(mib_per_second.max(1)) * 1048576.0;
        Self {
            rate,
            bucket: Mutex::new((rate, Instant::now())),
        }
    }

    /// How long the taker of `bytes` must wait before sending them.
    fn charge(&self, bytes: usize, now: Instant) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, since) = *bucket;
        let refilled = (tokens + now.saturating_duration_since(since).as_secs_f64() * self.rate)
            .min(self.rate);
        let left = refilled - bytes as f64;
        *bucket = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }

    /// Waits until `bytes` may go.
    pub async fn take(&self, bytes: usize) {
        let wait = self.charge(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_of_credit_then_the_rate() {
        let t = Throttle::new(1);
        let now = Instant::now();
        assert_eq!(t.charge(1 << 20, now), Duration::ZERO);
        // Another MiB at once is owed in full: one second.
        let wait = t.charge(1 << 20, now);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Half a second later, half of that debt is paid.
        let wait = t.charge(0, now + Duration::from_millis(500));
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // A long pause gives back no more than one second's worth.
        assert_eq!(t.charge(0, now + Duration::from_secs(60)), Duration::ZERO);
        assert!(t.charge(2 << 20, now + Duration::from_secs(60)) > Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_takers_share_the_limit() {
        let t = Arc::new(Throttle::new(2));
        let started = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                tokio::spawn(async move {
                    for _ in 0..4 {
                        t.take(256 << 10).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // 4 MiB at 2 MiB/s with 2 MiB of credit: about a second.
        let took = started.elapsed().as_secs_f64();
        assert!((0.85..1.5).contains(&took), "{took}");
    }
}
