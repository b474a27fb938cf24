//! The HTTP routes of the worker API, identical to the Python reference's: the paths
//! the [`HttpTransport`](crate::HttpTransport) calls and the
//! [`HttpService`](crate::HttpService) serves.

/// Prefix of every worker endpoint.
pub const WORKER_API_PREFIX: &str = "/_worker";
/// `POST`: register a worker.
pub const ENDPOINT_WORKER_REGISTER: &str = "/_worker/workers/register";
/// `GET`: long-poll for the next task; `{worker_id}` is replaced by the worker id.
pub const ENDPOINT_TASK_NEXT: &str = "/_worker/workers/{worker_id}/tasks/next";
/// `POST`: submit a task result.
pub const ENDPOINT_TASK_RESULT: &str = "/_worker/tasks/result";
/// `PATCH`: heartbeat; `{worker_id}` is replaced by the worker id.
pub const ENDPOINT_WORKER_HEARTBEAT: &str = "/_worker/workers/{worker_id}";
/// `POST`: exchange the current credential for a short-lived token (STS).
pub const STS_TOKEN_ENDPOINT: &str = "/_worker/auth/token";
/// WebSocket endpoint for commands and progress (also served with `/{worker_id}`).
pub const WS_ENDPOINT: &str = "/_worker/ws";
/// Worker events (1.0b17).
pub const ENDPOINT_EVENTS: &str = "/_worker/events";
/// Refresh of an STS token with a refresh token (1.0b17).
pub const STS_REFRESH_ENDPOINT: &str = "/_worker/auth/token/refresh";

/// Builds the long-poll path for `worker_id` (which must already be validated).
pub fn task_next_path(worker_id: &str) -> String {
    format!("{WORKER_API_PREFIX}/workers/{worker_id}/tasks/next")
}

/// Builds the heartbeat path for `worker_id` (which must already be validated).
pub fn heartbeat_path(worker_id: &str) -> String {
    format!("{WORKER_API_PREFIX}/workers/{worker_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_builders_match_the_templates() {
        assert_eq!(
            task_next_path("w-1"),
            ENDPOINT_TASK_NEXT.replace("{worker_id}", "w-1")
        );
        assert_eq!(
            heartbeat_path("w-1"),
            ENDPOINT_WORKER_HEARTBEAT.replace("{worker_id}", "w-1")
        );
        for p in [
            ENDPOINT_WORKER_REGISTER,
            ENDPOINT_TASK_RESULT,
            STS_TOKEN_ENDPOINT,
            WS_ENDPOINT,
            ENDPOINT_EVENTS,
            STS_REFRESH_ENDPOINT,
        ] {
            assert!(p.starts_with(WORKER_API_PREFIX), "{p}");
        }
    }
}
