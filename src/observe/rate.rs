//! A token bucket: what keeps a flooding client or a flapping object from
//! costing more than a bounded rate.

use std::time::{Duration, Instant};

/// `burst` at once, then one more per `refill`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: f64,
    refill: Duration,
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    pub fn new(burst: u32, refill: Duration) -> RateLimit {
        RateLimit {
            burst: f64::from(burst),
            refill,
            tokens: f64::from(burst),
            updated: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refilled = now.duration_since(self.updated).as_secs_f64() / self.refill.as_secs_f64();
        self.tokens = (self.tokens + refilled).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_taken_then_refused_until_refilled() {
        let mut limit = RateLimit::new(5, Duration::from_secs(3600));
        let taken = (0..15).filter(|_| limit.take()).count();
        assert_eq!(taken, 5);
        let mut fast = RateLimit::new(1, Duration::from_millis(1));
        assert!(fast.take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(fast.take());
    }
}
