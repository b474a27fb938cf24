//! The listeners' connection metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`; without it nothing is recorded and [`Open`] is empty).
//!
//! | name | type | labels | counts |
//! | --- | --- | --- | --- |
//! | `rxon_listener_connections` | gauge | `listener` (`http`: HTTP and WebSocket listeners; `grpc`) | connections open, upgraded WebSocket sessions included |
//! | `rxon_listener_connections_refused_total` | counter | `listener` | connections closed at once: `max_connections` were open |
//!
//! ```
//! let open = rxon_net::metrics::Open::new("http"); // counted while it lives
//! drop(open);
//! assert_eq!(rxon_net::metrics::CONNECTIONS, "rxon_listener_connections");
//! ```

/// Gauge, label `listener`: connections open.
pub const CONNECTIONS: &str = "rxon_listener_connections";
/// Counter, label `listener`: connections refused over the limit.
pub const CONNECTIONS_REFUSED: &str = "rxon_listener_connections_refused_total";

/// One open connection, counted in [`CONNECTIONS`] until dropped.
#[derive(Debug)]
pub struct Open {
    #[cfg(feature = "metrics")]
    gauge: ::metrics::Gauge,
}

impl Open {
    /// Counts a connection of `listener` as open.
    pub fn new(listener: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let gauge = ::metrics::gauge!(CONNECTIONS, "listener" => listener);
            gauge.increment(1.0);
            Open { gauge }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = listener;
            Open {}
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

/// A connection of `listener` was refused: the limit was reached.
pub fn refused(listener: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = listener;
}
