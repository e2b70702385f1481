//! A per-client token bucket for the endpoints that queue work, so one client cannot fill the
//! queue. In memory, per web instance: with several instances a client gets a few times the
//! rate, which is fine for abuse protection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept at most; idle ones are dropped past this.
const MAX_CLIENTS: usize = 50_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `n` requests per minute on average, bursts of up to `n`.
    pub fn per_minute(n: u32) -> Self {
        RateLimiter {
            per_second: f64::from(n) / 60.0,
            burst: f64::from(n.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `client`; false when the client is over its rate.
    pub fn allow(&self, client: IpAddr) -> bool {
        self.allow_at(client, Instant::now())
    }

    pub fn allow_at(&self, client: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() >= MAX_CLIENTS {
            let burst = self.burst;
            let rate = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let l = RateLimiter::per_minute(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.allow_at(ip, t0) && l.allow_at(ip, t0) && l.allow_at(ip, t0));
        assert!(!l.allow_at(ip, t0), "burst used up");
        assert!(
            l.allow_at("192.0.2.2".parse().unwrap(), t0),
            "other clients unaffected"
        );
        assert!(
            l.allow_at(ip, t0 + Duration::from_secs(20)),
            "one token back after 20 s"
        );
        assert!(!l.allow_at(ip, t0 + Duration::from_secs(20)));
    }
}
