//! [`Pings`]: the keepalive clock of a long-lived connection.

use std::time::Duration;

/// Ticks every `period` after the first period has passed; never ticks when the period
/// is zero, which is how listener configurations turn their keepalive off. Missed ticks
/// are not made up in a burst.
#[derive(Debug)]
pub struct Pings(Option<tokio::time::Interval>);

impl Pings {
    /// A clock with the given period (zero: never ticks).
    pub fn every(period: Duration) -> Self {
        Pings((!period.is_zero()).then(|| {
            let start = tokio::time::Instant::now() + period;
            let mut interval = tokio::time::interval_at(start, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        }))
    }

    /// Resolves at the next tick (never, when off).
    pub async fn tick(&mut self) {
        match &mut self.0 {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// `limit` for bounding a write, or no bound at all (`Duration::MAX`) when off.
    pub fn write_limit(&self, limit: Duration) -> Duration {
        if self.0.is_some() {
            limit
        } else {
            Duration::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_each_period_and_never_when_off() {
        let start = tokio::time::Instant::now();
        let mut pings = Pings::every(Duration::from_secs(5));
        pings.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5), "not at once");
        pings.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(
            pings.write_limit(Duration::from_secs(3)),
            Duration::from_secs(3)
        );

        let mut off = Pings::every(Duration::ZERO);
        let ticked = tokio::time::timeout(Duration::from_secs(3600), off.tick()).await;
        assert!(ticked.is_err(), "a zero period never ticks");
        assert_eq!(off.write_limit(Duration::from_secs(3)), Duration::MAX);
    }
}
