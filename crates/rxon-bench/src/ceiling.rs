//! The ceilings: servers with fixed answers to the two routes of a cycle and no RXON
//! logic, what no RXON listener on the same stack can beat.
//!
//! - `hyper`: a hyper 1 HTTP/1 server (the ceiling of the HTTP and WebSocket listeners);
//! - `tonic`: a tonic server of `rxon.v1.WorkerService` (the ceiling of the gRPC
//!   listener): `Poll` answers the fixed task, `SendResult` "accepted", nothing is
//!   decoded beyond what tonic and prost decode for any service.

use crate::{task, wait_for_stdin_eof};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rxon::grpc::pb;
use rxon::grpc::pb::worker_service_server::{WorkerService, WorkerServiceServer};
use tonic::{Request, Response, Status};

/// The bare hyper server; prints `LISTENING <url>` and serves until stdin closes.
pub(crate) async fn hyper() -> Result<(), String> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = tcp.local_addr().map_err(|e| e.to_string())?;
    let task = Bytes::from(serde_json::to_vec(&task()).map_err(|e| e.to_string())?);
    let ok = Bytes::from_static(br#"{"status":"ok"}"#);
    println!("LISTENING http://{addr}");
    let accept = async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let _ = stream.set_nodelay(true);
            let (task, ok) = (task.clone(), ok.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let body = if req.method() == http::Method::GET {
                            task.clone()
                        } else {
                            ok.clone()
                        };
                        async move {
                            // Read the request body like a real server would.
                            let _ = req.into_body().collect().await;
                            let mut r = http::Response::new(Full::new(body));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = wait_for_stdin_eof() => {}
    }
    Ok(())
}

/// The bare tonic server; prints `LISTENING grpc://<addr>` and serves until stdin
/// closes.
pub(crate) async fn tonic() -> Result<(), String> {
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
        .map_err(|e| e.to_string())?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().map_err(|e| e.to_string())?;
    let t = task();
    let params_json = serde_json::to_vec(&t.params).map_err(|e| e.to_string())?;
    let fixed = Fixed {
        task: pb::TaskPayload {
            job_id: t.job_id,
            task_id: t.task_id,
            r#type: t.task_type,
            params_json,
            ..Default::default()
        },
    };
    println!("LISTENING grpc://{addr}");
    tonic::transport::Server::builder()
        .add_service(WorkerServiceServer::new(fixed))
        .serve_with_incoming_shutdown(incoming, wait_for_stdin_eof())
        .await
        .map_err(|e| e.to_string())
}

/// Fixed answers to `Poll` and `SendResult`; every other call is unimplemented.
struct Fixed {
    task: pb::TaskPayload,
}

fn unused(what: &str) -> Status {
    Status::unimplemented(format!("{what}: not served by the bench's tonic ceiling"))
}

#[tonic::async_trait]
impl WorkerService for Fixed {
    async fn register(
        &self,
        _: Request<pb::WorkerRegistration>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        Err(unused("Register"))
    }

    async fn poll(&self, _: Request<pb::PollRequest>) -> Result<Response<pb::PollReply>, Status> {
        Ok(Response::new(pb::PollReply {
            task: Some(self.task.clone()),
        }))
    }

    async fn send_result(
        &self,
        _: Request<pb::TaskResult>,
    ) -> Result<Response<pb::ResultReply>, Status> {
        Ok(Response::new(pb::ResultReply {
            status: "accepted".into(),
            ..Default::default()
        }))
    }

    async fn send_heartbeat(
        &self,
        _: Request<pb::Heartbeat>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        Err(unused("SendHeartbeat"))
    }

    async fn send_progress(
        &self,
        _: Request<pb::ProgressUpdate>,
    ) -> Result<Response<pb::ProgressReply>, Status> {
        Err(unused("SendProgress"))
    }

    async fn emit_event(
        &self,
        _: Request<pb::WorkerEvent>,
    ) -> Result<Response<pb::EventReply>, Status> {
        Err(unused("EmitEvent"))
    }

    async fn token(
        &self,
        _: Request<pb::TokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        Err(unused("Token"))
    }

    type CommandsStream = tonic::codegen::tokio_stream::Empty<Result<pb::WorkerCommand, Status>>;

    async fn commands(
        &self,
        _: Request<pb::CommandsRequest>,
    ) -> Result<Response<Self::CommandsStream>, Status> {
        Err(unused("Commands"))
    }
}
