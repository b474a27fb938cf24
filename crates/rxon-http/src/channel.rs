//! The reference's WebSocket command channel (`/_worker/ws`), both sides.
//!
//! Orchestrator → worker: one text frame per `WorkerCommand` JSON. Worker →
//! orchestrator: one text frame per `ProgressUpdatePayload` JSON. Invalid frames are
//! logged and skipped; frames over the size limit close the connection (code 1009).

use crate::client::HttpTransport;
use crate::routes::WS_ENDPOINT;
use crate::service::HttpService;
use futures_util::{SinkExt, StreamExt};
use rxon_core::constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION_HEADER, WORKER_ID_HEADER};
use rxon_core::retry::Backoff;
use rxon_core::{
    CommandReceiver, ProgressUpdatePayload, RequestContext, Result, RxonError, WorkerCommand,
    WorkerEventPayload,
};
use rxon_net::io::{Sniffed, Tap};
use rxon_wire::envelope::EVENT_UNSIGNED;
use std::sync::Weak;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// First pause before reconnecting; doubles up to [`MAX_RECONNECT_DELAY`].
pub(crate) const FIRST_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest pause between reconnection attempts.
pub(crate) const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);
/// Commands buffered between the socket and `next_command`.
const COMMAND_BUFFER: usize = 64;

pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

// ---------------------------------------------------------------- orchestrator side

/// Serves one upgraded connection: pushes `commands`, hands what the worker sends to
/// the service's handler (see [`inbound`]).
/// Pings every `keepalive`; a worker that sent nothing (not even a pong) between two
/// pings, or that does not take a frame within `keepalive`, is gone.
pub(crate) async fn serve<S>(
    mut ws: WebSocketStream<S>,
    keepalive: Duration,
    mut commands: Box<dyn CommandReceiver>,
    service: HttpService,
    ctx: RequestContext,
    mut shutdown: Option<watch::Receiver<bool>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stopping = async {
        match shutdown.as_mut() {
            Some(rx) => drop(rx.wait_for(|s| *s).await),
            None => std::future::pending::<()>().await,
        }
    };
    let mut stopping = std::pin::pin!(stopping);
    let mut ping = rxon_net::keepalive::Pings::every(keepalive);
    let write_limit = ping.write_limit(keepalive);
    let mut heard = true;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else {
                    let _ = tokio::time::timeout(
                        write_limit,
                        ws.close(Some(close(CloseCode::Normal, "command channel closed"))),
                    )
                    .await;
                    return;
                };
                let Ok(text) = serde_json::to_string(&command) else { continue };
                if let Err(e) = send_within(&mut ws, Message::Text(text.into()), write_limit).await {
                    tracing::debug!(error = %e, "command not delivered; the channel is gone");
                    commands.undelivered(command);
                    return;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    heard = true;
                    inbound(&service, &ctx, &text).await;
                }
                Some(Ok(Message::Binary(_))) => {
                    heard = true;
                    tracing::warn!("binary frame skipped: text expected");
                }
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => heard = true,
                Some(Err(e)) => {
                    report_and_close(&mut ws, e, write_limit).await;
                    return;
                }
            },
            () = ping.tick() => {
                if !std::mem::replace(&mut heard, false) {
                    tracing::info!(worker_id = ?ctx.worker_id, "command channel silent for two keepalives; closing");
                    return;
                }
                if let Err(e) = send_within(&mut ws, Message::Ping(Vec::new().into()), write_limit).await {
                    tracing::info!(worker_id = ?ctx.worker_id, error = %e, "command channel: ping not taken; closing");
                    return;
                }
            }
            () = &mut stopping => {
                let _ = tokio::time::timeout(
                    write_limit,
                    ws.close(Some(close(CloseCode::Away, "listener stopping"))),
                )
                .await;
                return;
            }
        }
    }
}

/// Resolves once `stop` turns true or its sender is gone.
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn close(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Closes with 1009 on an oversized frame; logs everything else.
/// The close frame gets at most `limit` to be written.
async fn report_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    e: WsError,
    limit: Duration,
) {
    if let WsError::Capacity(c) = &e {
        tracing::warn!(error = %c, "frame over the size limit; closing");
        let closing = ws.close(Some(close(CloseCode::Size, "frame exceeds the size limit")));
        let _ = tokio::time::timeout(limit, closing).await;
    } else {
        tracing::debug!(error = %e, "command channel ended");
    }
}

// ---------------------------------------------------------------------- worker side

type ProgressRequest = (ProgressUpdatePayload, oneshot::Sender<Result<()>>);

/// The worker's end: a background task keeps a socket open (reconnecting with
/// backoff); commands and progress cross over channels.
pub(crate) struct Channel {
    commands: Mutex<mpsc::Receiver<Result<WorkerCommand>>>,
    progress: mpsc::Sender<ProgressRequest>,
    stop: watch::Sender<bool>,
}

impl Channel {
    /// Starts the background task for `transport`, which it holds only weakly.
    pub(crate) fn start(transport: &HttpTransport) -> Channel {
        let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
        let (progress_tx, progress_rx) = mpsc::channel(COMMAND_BUFFER);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(keep_open(
            transport.downgrade(),
            command_tx,
            progress_rx,
            stop_rx,
        ));
        Channel {
            commands: Mutex::new(command_rx),
            progress: progress_tx,
            stop,
        }
    }

    /// The next command; `Ok(None)` once the channel is stopped.
    pub(crate) async fn next(&self) -> Result<Option<WorkerCommand>> {
        let mut stop = self.stop.subscribe();
        let mut rx = self.commands.lock().await;
        tokio::select! {
            item = rx.recv() => item.transpose(),
            () = until_stopped(&mut stop) => Ok(None),
        }
    }

    /// Sends `progress` over the socket; an error if it cannot within `timeout`.
    pub(crate) async fn send_progress(
        &self,
        progress: &ProgressUpdatePayload,
        timeout: Duration,
    ) -> Result<()> {
        let (ack, done) = oneshot::channel();
        let sent = async {
            self.progress
                .send((progress.clone(), ack))
                .await
                .map_err(|_| RxonError::closed("the command channel has stopped"))?;
            done.await.map_err(|_| {
                RxonError::network("the command channel dropped the progress update")
            })?
        };
        tokio::time::timeout(timeout, sent)
            .await
            .unwrap_or_else(|_| {
                Err(RxonError::timeout(format!(
                    "progress not sent within {timeout:?}"
                )))
            })
    }

    /// Ends the background task (it closes the socket) and any pending `next`.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// One text frame from a worker: a 1.0b3 `ProgressUpdatePayload`, or a 1.0b17 signed
/// `WorkerEventPayload` (checked like `POST /_worker/events`). A frame that does not
/// decode or verify is logged and skipped; the channel stays open, as the reference's.
async fn inbound(service: &HttpService, ctx: &RequestContext, text: &str) {
    let handled = if ctx.protocol().signs() {
        match service
            .message::<WorkerEventPayload>(text.as_bytes(), ctx, EVENT_UNSIGNED)
            .await
        {
            Ok(event) => service.handler().event(ctx.clone(), event).await,
            Err(refused) => {
                tracing::warn!(
                    status = refused.status().as_u16(),
                    "invalid event frame skipped"
                );
                return;
            }
        }
    } else {
        match serde_json::from_str::<ProgressUpdatePayload>(text) {
            Ok(progress) => service.handler().progress(ctx.clone(), progress).await,
            Err(e) => {
                tracing::warn!(error = %e, "invalid progress frame skipped");
                return;
            }
        }
    };
    if let Err(e) = handled {
        tracing::debug!(error = %e, "frame refused by the handler");
    }
}

/// Connects, serves, reconnects with backoff, until stopped or the transport is gone.
async fn keep_open(
    transport: Weak<crate::client::Inner>,
    commands: mpsc::Sender<Result<WorkerCommand>>,
    mut progress: mpsc::Receiver<ProgressRequest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = Backoff::jittered(FIRST_RECONNECT_DELAY, MAX_RECONNECT_DELAY);
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(t) = HttpTransport::upgrade(&transport) else {
            return;
        };
        match connect(&t).await {
            Ok(ws) => {
                delays.reset();
                let sent = t.policy().token();
                let keepalive = t.options().keepalive;
                let write_limit = keepalive.max(t.options().request_timeout);
                drop(t);
                match serve_worker(
                    ws,
                    (keepalive, write_limit),
                    &commands,
                    &mut progress,
                    &mut stop,
                )
                .await
                {
                    Ended::Stopped => return,
                    Ended::Lost(None) => {}
                    Ended::Lost(Some(e)) => {
                        tracing::warn!(error = %e, "command channel refused after the upgrade");
                        if e.is_credential_refused() {
                            // Try a fresh token on the next attempt.
                            if let Some(t) = HttpTransport::upgrade(&transport) {
                                let _ = t.policy().refresh_after(&sent, t.exchanger()).await;
                            }
                        }
                        if commands.send(Err(e)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // The transport was closed meanwhile: next_command answers None, not an error.
            Err(e) if e.kind() == rxon_core::ErrorKind::Closed => return,
            Err(e) => {
                drop(t);
                tracing::warn!(error = %e, "command channel: cannot connect; retrying with backoff");
                // Network trouble is retried quietly; anything else is worth telling the
                // reader of next_command, once per attempt.
                if !e.is_network() && commands.send(Err(e)).await.is_err() {
                    return;
                }
            }
        }
        // Wait out the backoff; progress sent meanwhile fails at once instead of waiting.
        let pause = tokio::time::sleep(delays.next());
        let mut pause = std::pin::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                () = until_stopped(&mut stop) => return,
                request = progress.recv() => match request {
                    Some((_, ack)) => {
                        let _ = ack.send(Err(RxonError::network("command channel is reconnecting")));
                    }
                    None => return,
                },
            }
        }
    }
}

/// Opens the socket with the worker headers, through the policy (a 401 refreshes the
/// token once).
async fn connect(
    t: &HttpTransport,
) -> Result<WebSocketStream<Sniff<rxon_net::dial::ClientStream>>> {
    let url = format!(
        "{}{WS_ENDPOINT}/{}",
        t.base_url().replacen("http", "ws", 1),
        t.worker_id_str()
    );
    let url = url.as_str();
    let protocol = t.protocol().await?;
    t.policy()
        .call(t.exchanger(), |token| async move {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                    .map_err(|e| {
                        RxonError::config(format!("invalid command channel URL {url}: {e}"))
                    })?;
            let token = http::HeaderValue::from_str(token.as_str()).map_err(|_| {
                RxonError::config("the token contains characters not allowed in a header")
            })?;
            request.headers_mut().insert(AUTH_HEADER_WORKER, token);
            let headers = request.headers_mut();
            headers.insert(
                PROTOCOL_VERSION_HEADER,
                http::HeaderValue::from_static(protocol.as_str()),
            );
            if protocol.signs() {
                headers.insert(
                    WORKER_ID_HEADER,
                    http::HeaderValue::from_str(t.worker_id_str()).map_err(|_| {
                        RxonError::config("the worker id is not a valid header value")
                    })?,
                );
            }
            let stream = Tap::new(t.open_stream().await?, Sniffed::new(SNIFF_LIMIT));
            let config = ws_config(t.options().max_message_bytes);
            let handshake =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config));
            match tokio::time::timeout(t.options().request_timeout, handshake).await {
                Err(_) => Err(RxonError::timeout(format!(
                    "{url}: no WebSocket handshake in time"
                ))),
                Ok(Ok((ws, _))) => Ok(ws),
                Ok(Err(WsError::Http(response))) => {
                    let body = response.body().as_deref().unwrap_or_default().to_vec();
                    Err(rxon_net::status::error_for_status(
                        response.status(),
                        &body,
                        None,
                        &format!("GET {WS_ENDPOINT}"),
                    ))
                }
                Ok(Err(e)) => Err(RxonError::network(format!("{url}: {e}")).with_source(e)),
            }
        })
        .await
}

/// How a served socket ended.
enum Ended {
    /// The channel was stopped: do not reconnect.
    Stopped,
    /// The connection was lost: reconnect, after telling `next_command` about `why`
    /// when it is more than a network failure.
    Lost(Option<RxonError>),
}

/// Serves one socket. A ping goes out every `keepalive`; a pong missing by the next
/// one, or a frame that cannot be written within `write_limit`, means the connection
/// is gone (a NAT or firewall may drop it silently) and it is replaced.
async fn serve_worker<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<Sniff<S>>,
    (keepalive, write_limit): (Duration, Duration),
    commands: &mpsc::Sender<Result<WorkerCommand>>,
    progress: &mut mpsc::Receiver<ProgressRequest>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut ping = rxon_net::keepalive::Pings::every(keepalive);
    let mut awaiting_pong = false;
    let mut got_frame = false;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    got_frame = true;
                    match serde_json::from_str::<WorkerCommand>(&text) {
                        Ok(command) if !command.command.is_known() => {
                            tracing::warn!(command = %command.command, "unknown command skipped");
                        }
                        // Never wait here: pings and progress share this loop.
                        Ok(command) => match commands.try_send(Ok(command)) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                                "command dropped: nobody reads next_command (an orchestrator \
                                 repeats cancels in heartbeat replies)"
                            ),
                            Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Stopped,
                        },
                        Err(e) => tracing::warn!(error = %e, "invalid command frame skipped"),
                    }
                }
                Some(Ok(Message::Binary(_))) => tracing::warn!("binary frame skipped: text expected"),
                Some(Ok(Message::Pong(_))) => {
                    got_frame = true;
                    awaiting_pong = false;
                }
                Some(Ok(Message::Close(frame))) => {
                    tracing::info!(?frame, "orchestrator closed the command channel");
                    return Ended::Lost(None);
                }
                None => return Ended::Lost(None),
                Some(Ok(_)) => got_frame = true,
                Some(Err(e)) => {
                    // An orchestrator that refuses the worker after the upgrade may write
                    // a plain HTTP response instead of frames: surface it, do not spin.
                    let refused = (!got_frame)
                        .then(|| http_after_upgrade(ws.get_ref().observer().seen()))
                        .flatten();
                    report_and_close(&mut ws, e, write_limit).await;
                    return Ended::Lost(refused);
                }
            },
            request = progress.recv() => {
                let Some((update, ack)) = request else { return Ended::Stopped };
                let sent = match serde_json::to_string(&update) {
                    Ok(text) => send_within(&mut ws, Message::Text(text.into()), write_limit)
                        .await
                        .map_err(|e| RxonError::network(format!("progress not sent: {e}"))),
                    Err(e) => Err(RxonError::invalid_input(format!("cannot encode progress: {e}"))),
                };
                let broken = sent.as_ref().is_err_and(RxonError::is_network);
                let _ = ack.send(sent);
                if broken {
                    return Ended::Lost(None);
                }
            }
            () = ping.tick() => {
                if awaiting_pong {
                    tracing::warn!("no pong from the orchestrator; reconnecting");
                    return Ended::Lost(None);
                }
                awaiting_pong = true;
                if let Err(e) = send_within(&mut ws, Message::Ping(Vec::new().into()), write_limit).await {
                    tracing::warn!(error = %e, "command channel: ping not sent; reconnecting");
                    return Ended::Lost(None);
                }
            }
            () = until_stopped(stop) => {
                let _ = ws.close(None).await;
                return Ended::Stopped;
            }
        }
    }
}

/// Writes one frame, giving up after `limit` (a peer that stopped reading).
async fn send_within<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: Message,
    limit: Duration,
) -> std::result::Result<(), String> {
    match tokio::time::timeout(limit, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not written within {limit:?}")),
    }
}

/// The first bytes read from the command channel's stream, so that a peer answering
/// the upgrade with an HTTP response instead of frames can be recognised.
type Sniff<S> = Tap<S, Sniffed>;

/// How many leading bytes are kept.
const SNIFF_LIMIT: usize = 2048;

/// The status of an HTTP response that followed the `101 Switching Protocols`
/// response, if the peer sent one.
fn http_after_upgrade(seen: &[u8]) -> Option<RxonError> {
    let end = seen.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let rest = seen.get(end..)?;
    let status = rest.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    let status: u16 = std::str::from_utf8(status).ok()?.parse().ok()?;
    let status = http::StatusCode::from_u16(status).ok()?;
    let body = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &rest[i + 4..]);
    Some(rxon_net::status::error_for_status(
        status,
        body,
        None,
        "command channel (HTTP response after the upgrade)",
    ))
}
