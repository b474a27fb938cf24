//! The conformance suite with workers dialing through the embedded Tor client (arti,
//! feature `tor`), pointed at the private Tor network, to real onion services
//! published by the network's service tor (`cargo xtask tor-test`).
#![cfg(all(
    feature = "tor",
    feature = "testing",
    feature = "http",
    feature = "grpc"
))]

use rxon::testing::conformance::{Capabilities, Harness};
use rxon::{Listener, ListenerOptions, Transport, TransportConfig, TransportFactory};
use std::time::Duration;

struct Http;

impl Harness for Http {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(rxon::http::HttpListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon::Result<Box<dyn Transport>> {
        rxon::http::HttpTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

struct Grpc;

impl Harness for Grpc {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(rxon::grpc::GrpcListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon::Result<Box<dyn Transport>> {
        rxon::grpc::GrpcTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

mod http_arti_tor {
    rxon::testing::conformance_tests!(rxon::testing::tor::ThroughTor::arti(super::Http), needs: tor);
}

mod grpc_arti_tor {
    rxon::testing::conformance_tests!(rxon::testing::tor::ThroughTor::arti(super::Grpc), needs: tor);
}

/// The orchestrator's side with no tor daemon: its loopback HTTP and gRPC listeners
/// published as one onion service by the embedded client, reached by workers through
/// the private network's client tor (SOCKS), tasks run end to end, cancel included.
mod onion_arti_tor {
    use rxon::orchestrator::{CancelOutcome, Orchestrator};
    use rxon::testing::tor::TorNet;
    use rxon::{Listener, Transport, WorkerCommand};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a private Tor network (RXON_TOR_NET): cargo xtask tor-test"]
    async fn an_orchestrator_published_by_arti_serves_workers_through_tor() {
        let net = TorNet::from_env().unwrap();
        net.configure_arti().unwrap();
        let orch = Orchestrator::builder().token("onion-secret").build();
        let http = rxon::http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
        let grpc = rxon::grpc::GrpcListener::bind("127.0.0.1:0".parse().unwrap());
        http.start(Arc::new(orch.clone())).await.unwrap();
        grpc.start(Arc::new(orch.clone())).await.unwrap();
        let (h, g) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let onion = rxon::tor::arti::ArtiOnion::launch(
            &format!("rxon-test-{}", std::process::id()),
            &[(80, h), (50051, g)],
            Duration::from_secs(120),
        )
        .await
        .unwrap();
        let host = onion.hostname().to_owned();
        assert!(host.ends_with(".onion") && host.len() == 62, "{host}");
        for (i, url) in [format!("http://{host}"), format!("grpc://{host}:50051")]
            .into_iter()
            .enumerate()
        {
            let id = format!("w-{i}");
            let mut config = rxon::TransportConfig::new(&url, &id, "onion-secret");
            config.options.proxy = Some(net.proxy_url().parse().unwrap());
            config.options.connect_timeout = Duration::from_secs(60);
            let t: Arc<dyn Transport> = rxon::create_transport_from_config(&config).unwrap();
            t.connect().await.unwrap();
            let registration = rxon::WorkerRegistration {
                worker_id: id.clone(),
                supported_skills: vec!["echo".into()],
                ..Default::default()
            };
            // `launch` may return just before the first descriptor upload (see
            // `ArtiOnion::launch`); the client tor asks again after 5 s on a testing
            // network: up to 6 attempts, 5 s apart.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match t.register(&registration).await {
                    Ok(_) => break,
                    Err(e) if attempt < 6 && e.to_string().contains("unreachable") => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Err(e) => panic!("register, attempt {attempt}: {e}"),
                }
            }
            let task = rxon::TaskPayload {
                job_id: format!("j-{i}"),
                task_id: format!("t-{i}"),
                task_type: "echo".into(),
                ..Default::default()
            };
            orch.enqueue(task).await.unwrap();
            let got = t
                .poll_task(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a task");
            assert_eq!(got.task_id, format!("t-{i}"));
            // Cancel travels back to the worker over the channel it opened, over Tor.
            let reader = tokio::spawn({
                let t = t.clone();
                async move { t.next_command().await }
            });
            orch.wait_for_command_channel(&id, Duration::from_secs(30))
                .await
                .unwrap();
            assert_eq!(
                orch.cancel(&got.task_id).await.unwrap(),
                CancelOutcome::Signalled {
                    worker_id: id.clone()
                }
            );
            let cmd: WorkerCommand = tokio::time::timeout(Duration::from_secs(30), reader)
                .await
                .expect("the cancel arrives in time")
                .unwrap()
                .unwrap()
                .expect("a command");
            assert_eq!(cmd.task_id.as_deref(), Some(got.task_id.as_str()));
            let done = rxon::TaskResult::cancelled(&got, &id);
            assert!(t.send_result(&done).await.unwrap().is_accepted());
            t.close().await.unwrap();
        }
        drop(onion);
        http.stop(Duration::from_secs(2)).await.unwrap();
        grpc.stop(Duration::from_secs(2)).await.unwrap();
    }
}
