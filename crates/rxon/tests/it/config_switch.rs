//! One worker, written against `rxon::Transport`, driven by configuration text only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::testing::{MockHandle, MockTransportFactory};
use rxon::{
    ErrorKind, Map, Result, Scheme, TaskPayload, TaskResult, Transport, TransportConfig,
    TransportFactory, TransportRegistry, Value,
};
use std::time::Duration;

/// The worker under test: knows nothing about which transport it runs on.
async fn run_worker(
    config_text: &str,
    registry: &TransportRegistry,
    tasks: usize,
) -> Result<usize> {
    let config: TransportConfig =
        toml::from_str(config_text).map_err(|e| rxon::RxonError::config(e.to_string()))?;
    let transport = registry.create(&config)?;
    transport.connect().await?;
    let mut done = 0;
    // Bounded: at most twice as many polls as expected tasks.
    for _ in 0..tasks * 2 {
        if done == tasks {
            break;
        }
        let Some(task) = transport.poll_task(config.options.poll_timeout).await? else {
            continue;
        };
        let n = task.params.get("n").and_then(Value::as_i64).unwrap_or(0);
        let mut data = Map::new();
        data.insert("square".into(), Value::from(n * n));
        let outcome = transport
            .send_result(&TaskResult::success(&task, transport.worker_id(), data))
            .await?;
        assert!(outcome.is_accepted());
        done += 1;
    }
    transport.close().await?;
    Ok(done)
}

fn seed(mock: &MockHandle, count: i64) {
    for n in 0..count {
        let mut params = Map::new();
        params.insert("n".into(), Value::from(n));
        mock.push_task(TaskPayload {
            job_id: format!("job-{n}"),
            task_id: format!("task-{n}"),
            task_type: "square".into(),
            params,
            ..Default::default()
        });
    }
}

fn config_text(url: &str) -> String {
    format!("url = \"{url}\"\nworker_id = \"w-1\"\ntoken = \"t\"\npoll_timeout = \"2s\"\n")
}

/// A third-party transport: a scheme of its own, implemented here by delegating to a
/// mock so the test can observe it.
struct LoopbackFactory;

impl TransportFactory for LoopbackFactory {
    fn schemes(&self) -> &[&'static str] {
        &["loopback"]
    }
    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        let name = config.url.trim_start_matches("loopback://");
        let mut inner = config.clone();
        inner.url = format!("mock://{name}");
        MockTransportFactory.create(&inner)
    }
}

#[tokio::test]
async fn the_same_worker_runs_over_mock_and_a_registered_scheme() {
    let registry = TransportRegistry::new().with(LoopbackFactory).unwrap();

    let mock = MockHandle::new();
    seed(&mock, 3);
    assert_eq!(
        run_worker(&config_text(&mock.url()), &registry, 3)
            .await
            .unwrap(),
        3
    );
    let squares: Vec<i64> = mock
        .results()
        .iter()
        .map(|r| r.data.as_ref().unwrap()["square"].as_i64().unwrap())
        .collect();
    assert_eq!(squares, [0, 1, 4]);

    let other = MockHandle::new();
    seed(&other, 2);
    let url = format!("loopback://{}", other.name());
    assert_eq!(
        run_worker(&config_text(&url), &registry, 2).await.unwrap(),
        2
    );
    assert_eq!(other.results().len(), 2);
    assert!(mock.results().len() == 3, "the first mock saw nothing more");
}

#[tokio::test]
async fn unavailable_schemes_fail_with_a_clear_error() {
    let registry = TransportRegistry::new();
    // An unknown scheme lists what is available.
    let err = run_worker(&config_text("carrier-pigeon://roof"), &registry, 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("mock"), "{err}");
    // Built-in schemes whose feature is off name the feature to enable: checked by
    // `xtask/feature-off`, a build of `rxon` with every transport off (here the
    // dev-dependencies turn them all on).
    // Validation happens before any transport is built.
    let err = registry
        .create(&TransportConfig::new("mock://x", "bad id", "t"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = registry
        .create(&TransportConfig::new("no-scheme", "w", "t"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn registration_rules() {
    struct Named(&'static [&'static str]);
    impl TransportFactory for Named {
        fn schemes(&self) -> &[&'static str] {
            self.0
        }
        fn create(&self, _: &TransportConfig) -> Result<Box<dyn Transport>> {
            Err(rxon::RxonError::unsupported("test factory"))
        }
    }
    let mut r = TransportRegistry::new();
    assert_eq!(
        r.register(Named(&["https"])).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        r.register(Named(&["Tor"])).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        r.register(Named(&["bad scheme"])).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        r.register(Named(&[])).unwrap_err().kind(),
        ErrorKind::Config
    );
    r.register(Named(&["tor", "tor+tls"])).unwrap();
    assert_eq!(
        r.register(Named(&["tor"])).unwrap_err().kind(),
        ErrorKind::Config
    );
    let schemes = r.schemes();
    assert!(schemes.contains(&"tor".to_string()) && schemes.contains(&"tor+tls".to_string()));
    assert!(schemes.contains(&"mock".to_string()));
}

#[test]
fn scheme_table_is_consistent() {
    for s in Scheme::ALL {
        assert_eq!(s.as_str().parse::<Scheme>().unwrap(), *s);
        assert_eq!(s.as_str().to_uppercase().parse::<Scheme>().unwrap(), *s);
    }
    assert_eq!(Scheme::Wss.feature(), "ws");
    assert_eq!(Scheme::Grpcs.feature(), "grpc");
    assert!(
        Scheme::Mock.is_enabled(),
        "tests build with the testing feature"
    );
    assert!("ftp".parse::<Scheme>().is_err());
}

#[tokio::test]
async fn a_boxed_transport_is_driven_through_arc_and_references() {
    let mock = MockHandle::new();
    let boxed = rxon::TransportRegistry::new()
        .create(&rxon::TransportConfig::new(mock.url(), "w-9", "t"))
        .unwrap();
    let shared: std::sync::Arc<dyn Transport> = boxed.into();
    shared.connect().await.unwrap();
    let by_ref: &dyn Transport = &shared;
    assert_eq!(by_ref.worker_id(), "w-9");
    assert_eq!(
        by_ref.poll_task(Duration::from_millis(5)).await.unwrap(),
        None
    );
}

#[test]
fn builtin_schemes_match_what_the_transport_crates_declare() {
    let of = |feature: &str| -> Vec<&'static str> {
        Scheme::ALL
            .iter()
            .filter(|s| s.feature() == feature)
            .map(|s| s.as_str())
            .collect()
    };
    #[cfg(feature = "http")]
    assert_eq!(rxon::http::SCHEMES, of("http"));
    #[cfg(feature = "ws")]
    assert_eq!(rxon::ws::SCHEMES, of("ws"));
    #[cfg(feature = "grpc")]
    assert_eq!(rxon::grpc::SCHEMES, of("grpc"));
    #[cfg(feature = "testing")]
    assert_eq!(rxon::testing::SCHEMES, of("testing"));
    #[cfg(feature = "orchestrator")]
    assert_eq!(rxon::orchestrator::LOCAL_SCHEMES, of("orchestrator"));
    for s in Scheme::ALL {
        assert_eq!(
            rxon::config::url_scheme(&format!("{s}://h")).unwrap(),
            s.as_str()
        );
    }
}
