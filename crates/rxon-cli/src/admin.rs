//! The orchestrator's admin API: an axum router with typed extractors and JSON errors
//! throughout, nested under `/admin` by `rxon orchestrator`.
//!
//! | Route | Answers |
//! |---|---|
//! | `POST /admin/tasks` `{"type", "params", "job_id"}` (a `traceparent` header goes on with the task) | `201 {"task_id"}` |
//! | `GET /admin/tasks/{id}[?wait=SECONDS]` | the task's state, progress and result |
//! | `POST /admin/tasks/{id}/cancel` | `{"task_id", "outcome"}` |
//! | `GET /admin/workers` | every worker with its skills and status |
//!
//! Every error is `{"error": message}` with its status (400, 401, 404, 405, 413).

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rxon::orchestrator::{Orchestrator, TaskState, WorkerStatus};
use rxon::{Map, TaskPayload};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
/// What the admin handlers share.
#[derive(Clone)]
struct Admin {
    orchestrator: Orchestrator,
    next_id: Arc<AtomicU64>,
}

/// The admin routes (nested under `/admin`). With `token`, every request, a wrong
/// route's included, needs it in `X-Client-Token`.
pub(crate) fn router(orchestrator: Orchestrator, token: Option<String>) -> Router {
    let admin = Admin {
        orchestrator,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/tasks", post(create_task))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/workers", get(workers))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .with_state(admin)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            token.map(Arc::<str>::from),
            require_admin_token,
        ))
}

/// The largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// The longest `?wait=` a task query may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Refuses a request without the exact admin token, when one is set.
async fn require_admin_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = token {
        let given = request
            .headers()
            .get(rxon::constants::AUTH_HEADER_CLIENT)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant time: the answer's timing does not tell how close a guess was.
        if !rxon::validate::constant_time_eq(given, expected.as_bytes()) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "admin token required").into_response();
        }
    }
    next.run(request).await
}

/// An admin error: its status and `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": self.message}))).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

/// A JSON request body, whatever its `Content-Type` says (`curl -d` sends a form's);
/// a body too large is a 413, one that is not the expected JSON a 400, both as JSON.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

/// `POST /admin/tasks` with `{"type": …, "params": {…}, "job_id": …}`.
#[derive(serde::Deserialize)]
struct NewTask {
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    params: Map,
    #[serde(default)]
    job_id: Option<String>,
}

/// A `traceparent` header (W3C Trace Context, and its `tracestate`) goes on with the
/// task: its worker continues the caller's trace.
async fn create_task(
    State(admin): State<Admin>,
    headers: axum::http::HeaderMap,
    JsonBody(new): JsonBody<NewTask>,
) -> Result<(StatusCode, axum::Json<Json>), ApiError> {
    let n = admin.next_id.fetch_add(1, Ordering::Relaxed);
    let task_id = format!("task-{n}");
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let tracing_context = crate::trace::context(header)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let task = TaskPayload {
        job_id: new.job_id.unwrap_or_else(|| format!("job-{n}")),
        task_id: task_id.clone(),
        task_type: new.task_type,
        params: new.params,
        tracing_context,
        ..Default::default()
    };
    admin
        .orchestrator
        .enqueue(task)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message()))?;
    Ok((StatusCode::CREATED, axum::Json(json!({"task_id": task_id}))))
}

/// `GET /admin/tasks/{id}[?wait=SECONDS]`.
#[derive(serde::Deserialize)]
struct TaskQuery {
    /// Answer once the task has its result, or after this many seconds (at most
    /// [`MAX_WAIT`]) with its state then.
    wait: Option<String>,
}

async fn task(
    State(admin): State<Admin>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    if let Some(wait) = query.wait.as_deref().map(wait_seconds).transpose()? {
        // Timing out, or a task that will get no result, still answers with the
        // task's state; only an unknown task is a 404 (below).
        let _ = admin.orchestrator.wait_result(&id, wait).await;
    }
    let orchestrator = &admin.orchestrator;
    let Some(state) = orchestrator.task_state(&id).await else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such task"));
    };
    let (state, worker) = match state {
        TaskState::Queued => ("queued".to_owned(), None),
        TaskState::Running { worker_id } => ("running".to_owned(), Some(worker_id)),
        TaskState::Finished(status) => (status.to_string(), None),
        TaskState::Cancelled => ("cancelled".to_owned(), None),
        other => (format!("{other:?}").to_lowercase(), None),
    };
    let result = orchestrator
        .task_result(&id)
        .await
        .and_then(|r| serde_json::to_value(r).ok());
    let progress = orchestrator
        .task_progress(&id)
        .await
        .last()
        .map(|p| p.progress);
    Ok(axum::Json(json!({
        "task_id": id, "state": state, "worker_id": worker, "progress": progress, "result": result,
    })))
}

/// `wait=SECONDS`: 0 to [`MAX_WAIT`], fractions allowed.
fn wait_seconds(value: &str) -> Result<Duration, ApiError> {
    match value.parse::<f64>() {
        Ok(secs) if (0.0..=MAX_WAIT.as_secs_f64()).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "wait must be 0 to {} seconds, not {value:?}",
                MAX_WAIT.as_secs()
            ),
        )),
    }
}

/// `POST /admin/tasks/{id}/cancel`.
async fn cancel(
    State(admin): State<Admin>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let Path(id) = id?;
    let outcome = admin
        .orchestrator
        .cancel(&id)
        .await
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.message()))?;
    Ok(axum::Json(
        json!({"task_id": id, "outcome": format!("{outcome:?}")}),
    ))
}

/// `GET /admin/workers`.
async fn workers(State(admin): State<Admin>) -> axum::Json<Json> {
    let workers = admin.orchestrator.workers().await.into_iter().map(|w| {
        json!({
            "worker_id": w.worker_id,
            "skills": w.skills,
            "status": if w.status == WorkerStatus::Active { "active" } else { "gone" },
            "current_tasks": w.current_tasks,
            "command_channel": w.command_channel,
        })
    });
    axum::Json(Json::Array(workers.collect()))
}
