//! Secrets never reach logs, errors or `Debug` output, on every transport: refused
//! tokens, bootstrap credentials, minted tokens and the right token, on the worker side
//! (transports, errors, configuration) and on the orchestrator side (the
//! `RequestContext` every handler receives, logged at TRACE).
#![cfg(all(
    feature = "http",
    feature = "ws",
    feature = "grpc",
    feature = "testing"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::orchestrator::{LocalListener, Orchestrator};
use rxon::testing::Captured;
use rxon::{
    BoxFuture, CommandReceiver, Handler, HandlerResult, Heartbeat, HeartbeatReply, Listener,
    ProgressUpdatePayload, RegisterReply, RequestContext, ResultOutcome, TaskPayload, TaskResult,
    TokenResponse, Transport, TransportOptions, WorkerEventPayload, WorkerRegistration,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRONG: &str = "wrong-token-4f1c9a";
const RIGHT: &str = "right-token-77d02e";
const BOOTSTRAP: &str = "bootstrap-credential-9b3e";

/// The orchestrator, with every request context it receives logged (as a handler
/// author would) and kept as `Debug` text.
struct Logging {
    orch: Orchestrator,
    seen: Mutex<Vec<String>>,
    /// Every token the orchestrator minted: secrets too.
    minted: Mutex<Vec<String>>,
}

impl Logging {
    fn saw(&self, ctx: &RequestContext) {
        tracing::info!(?ctx, "request");
        self.seen.lock().unwrap().push(format!("{ctx:?}"));
    }
}

impl Logging {
    /// Records the access and refresh tokens of `minted`, which must never be shown.
    fn minted(&self, minted: HandlerResult<TokenResponse>) -> HandlerResult<TokenResponse> {
        if let Ok(t) = &minted {
            let mut all = self.minted.lock().unwrap();
            all.push(t.access_token.clone());
            all.extend(t.refresh_token.clone());
        }
        minted
    }
}

impl Handler for Logging {
    fn register(
        &self,
        ctx: RequestContext,
        r: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        self.saw(&ctx);
        self.orch.register(ctx, r)
    }
    fn poll(
        &self,
        ctx: RequestContext,
        wait: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        self.saw(&ctx);
        self.orch.poll(ctx, wait)
    }
    fn result(
        &self,
        ctx: RequestContext,
        r: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        self.saw(&ctx);
        self.orch.result(ctx, r)
    }
    fn heartbeat(
        &self,
        ctx: RequestContext,
        h: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        self.saw(&ctx);
        self.orch.heartbeat(ctx, h)
    }
    fn authenticate(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<()>> {
        self.saw(&ctx);
        self.orch.authenticate(ctx)
    }
    fn token(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        self.saw(&ctx);
        Box::pin(async move { self.minted(self.orch.token(ctx).await) })
    }
    fn refresh(
        &self,
        ctx: RequestContext,
        refresh_token: String,
    ) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        self.saw(&ctx);
        Box::pin(async move { self.minted(self.orch.refresh(ctx, refresh_token).await) })
    }
    fn envelope_key(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<Option<String>>> {
        self.saw(&ctx);
        self.orch.envelope_key(ctx)
    }
    fn task_signing_key(&self) -> Option<String> {
        self.orch.task_signing_key()
    }
    fn event(
        &self,
        ctx: RequestContext,
        e: WorkerEventPayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        self.saw(&ctx);
        self.orch.event(ctx, e)
    }
    fn progress(
        &self,
        ctx: RequestContext,
        p: ProgressUpdatePayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        self.saw(&ctx);
        self.orch.progress(ctx, p)
    }
    fn commands(
        &self,
        ctx: RequestContext,
    ) -> BoxFuture<'_, HandlerResult<Box<dyn CommandReceiver>>> {
        self.saw(&ctx);
        self.orch.commands(ctx)
    }
}

fn listener(kind: &str) -> Box<dyn Listener> {
    let loopback = "127.0.0.1:0".parse().unwrap();
    match kind {
        "http" => Box::new(rxon::http::HttpListener::bind(loopback)),
        "ws" => Box::new(rxon::ws::WsListener::bind(loopback)),
        "grpc" => Box::new(rxon::grpc::GrpcListener::bind(loopback)),
        "local" => Box::new(LocalListener::new()),
        other => panic!("unknown transport {other}"),
    }
}

/// A transport whose `Debug` output the test checks too.
trait DebugTransport: Transport + std::fmt::Debug {}
impl<T: Transport + std::fmt::Debug> DebugTransport for T {}

fn transport(kind: &str, config: &rxon::TransportConfig) -> Box<dyn DebugTransport> {
    match kind {
        "http" => Box::new(rxon::http::HttpTransport::from_config(config).unwrap()),
        "ws" => Box::new(rxon::ws::WsTransport::from_config(config).unwrap()),
        "grpc" => Box::new(rxon::grpc::GrpcTransport::from_config(config).unwrap()),
        "local" => Box::new(rxon::orchestrator::LocalTransport::from_config(config).unwrap()),
        other => panic!("unknown transport {other}"),
    }
}

fn registration() -> WorkerRegistration {
    WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    }
}

/// Runs the three credentials against a `kind` listener; collects every `Debug` and
/// `Display` text produced, and returns every token the orchestrator minted.
async fn exercise(kind: &str, seen: &mut Vec<String>) -> Vec<String> {
    let handler = Arc::new(Logging {
        orch: Orchestrator::builder()
            .token(RIGHT)
            .sts_credential(BOOTSTRAP)
            .build(),
        seen: Mutex::new(Vec::new()),
        minted: Mutex::new(Vec::new()),
    });
    let l = listener(kind);
    l.start(handler.clone()).await.unwrap();
    let url = l.endpoint().unwrap();
    let mut options = TransportOptions::default();
    options.request_timeout = Duration::from_secs(5);
    let connect = |token: &str| {
        let mut config = rxon::TransportConfig::new(&url, "w-1", token);
        config.options = options.clone();
        transport(kind, &config)
    };

    // A refused token: on an operation and on the command channel.
    let t = connect(WRONG);
    t.connect().await.unwrap();
    let e = t.register(&registration()).await.unwrap_err();
    assert!(e.is_auth(), "{kind}: {e}");
    seen.push(format!("{e} {e:?}"));
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), t.next_command()).await {
        seen.push(format!("{e} {e:?}"));
    }
    seen.push(format!("{t:?}"));
    t.close().await.unwrap();

    // A bootstrap credential: refused on register, traded for a token, retried.
    let t = connect(BOOTSTRAP);
    t.connect().await.unwrap();
    t.register(&registration()).await.unwrap();
    let minted = t.refresh_token().await.unwrap();
    seen.push(format!("{t:?} {minted:?}"));
    t.close().await.unwrap();

    // The right token works; its transport and config print no secret either.
    let config = rxon::TransportConfig::new(&url, "w-1", RIGHT);
    seen.push(format!("{config:?}"));
    let t = connect(RIGHT);
    t.connect().await.unwrap();
    t.register(&registration()).await.unwrap();
    t.poll_task(Duration::from_millis(10)).await.unwrap();
    seen.push(format!("{t:?}"));
    t.close().await.unwrap();
    l.stop(Duration::from_secs(2)).await.unwrap();

    let contexts = handler.seen.lock().unwrap().clone();
    assert!(
        contexts.len() >= 4,
        "{kind}: the handler saw the requests: {contexts:?}"
    );
    assert!(
        contexts.iter().any(|c| c.contains("<redacted>")),
        "{kind}: request contexts carry a token, shown redacted: {contexts:?}"
    );
    seen.extend(contexts);
    let issued = handler.minted.lock().unwrap().clone();
    assert!(
        issued.len() >= 2 && issued.contains(&minted.access_token),
        "{kind}: the bootstrap retry and the refresh each minted a token: {issued:?}"
    );
    issued
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_never_reach_logs_errors_or_debug_output_on_any_transport() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut seen = Vec::new();
    let mut secrets = vec![WRONG.to_owned(), RIGHT.to_owned(), BOOTSTRAP.to_owned()];
    for kind in ["http", "ws", "grpc", "local"] {
        let minted = exercise(kind, &mut seen).await;
        assert!(
            minted
                .iter()
                .all(|t| t.starts_with("sts-") || t.starts_with("rt-")),
            "{kind}: {minted:?}"
        );
        secrets.extend(minted);
    }
    let logged = logs.text();
    assert!(
        logged.contains("request"),
        "the handler's logs were captured"
    );
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "{secret} in the logs");
        for text in &seen {
            assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
    }
}
