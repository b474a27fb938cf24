//! `TransportConfig` from TOML and JSON: flat keys, durations, strict on unknown keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::{TransportConfig, Value};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn toml_with_every_section() {
    let cfg: TransportConfig = toml::from_str(
        r#"
        url = "https://orchestrator.local:8443"
        worker_id = "gpu-01"
        token = "secret"
        poll_timeout = "45s"
        request_timeout = 12
        result_retries = 5
        result_retry_delay = "250ms"

        [tls]
        ca_file = "/etc/rxon/ca.pem"
        client_cert = "/etc/rxon/w.pem"
        client_key = "/etc/rxon/w.key"

        [params]
        circuit = "fast"
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.scheme().unwrap(), "https");
    assert_eq!(cfg.options.poll_timeout, Duration::from_secs(45));
    assert_eq!(cfg.options.request_timeout, Duration::from_secs(12));
    assert_eq!(
        cfg.options.connect_timeout,
        Duration::from_secs(10),
        "default kept"
    );
    assert_eq!(cfg.options.result_retries, 5);
    assert_eq!(cfg.options.result_retry_delay, Duration::from_millis(250));
    assert_eq!(
        cfg.options.tls.ca_file,
        Some(PathBuf::from("/etc/rxon/ca.pem"))
    );
    assert_eq!(
        cfg.options.param("circuit").and_then(Value::as_str),
        Some("fast")
    );
}

#[test]
fn json_round_trip_and_minimal_config() {
    let cfg: TransportConfig =
        serde_json::from_str(r#"{"url":"mock://t","worker_id":"w","token":"x"}"#).unwrap();
    assert_eq!(cfg, TransportConfig::new("mock://t", "w", "x"));
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(text.contains(r#""poll_timeout":"30s""#), "{text}");
    assert!(text.contains(r#""result_retry_delay":"100ms""#), "{text}");
    let back: TransportConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn typos_and_bad_values_are_errors_not_defaults() {
    let typo = toml::from_str::<TransportConfig>(
        "url = \"http://h\"\nworker_id = \"w\"\ntoken = \"t\"\npoll_timout = \"5s\"\n",
    )
    .unwrap_err();
    assert!(typo.to_string().contains("poll_timout"), "{typo}");
    let tls_typo = toml::from_str::<TransportConfig>(
        "url = \"http://h\"\nworker_id = \"w\"\ntoken = \"t\"\n[tls]\ncafile = \"x\"\n",
    )
    .unwrap_err();
    assert!(tls_typo.to_string().contains("cafile"), "{tls_typo}");
    let bad_duration = serde_json::from_str::<TransportConfig>(
        r#"{"url":"http://h","worker_id":"w","token":"t","poll_timeout":"forever"}"#,
    )
    .unwrap_err();
    assert!(
        bad_duration.to_string().contains("forever"),
        "{bad_duration}"
    );
    let negative = serde_json::from_str::<TransportConfig>(
        r#"{"url":"http://h","worker_id":"w","token":"t","poll_timeout":-1}"#,
    )
    .unwrap_err();
    assert!(negative.to_string().contains("negative"), "{negative}");
    let missing = serde_json::from_str::<TransportConfig>(r#"{"url":"http://h"}"#).unwrap_err();
    assert!(missing.to_string().contains("worker_id"), "{missing}");
}

#[test]
fn a_proxy_from_toml_json_and_the_environment() {
    let cfg: TransportConfig = toml::from_str(
        "url = \"http://x.onion\"\nworker_id = \"w\"\ntoken = \"t\"\n\
         proxy = \"socks5h://w1:s%40lt@127.0.0.1:9050\"\n",
    )
    .unwrap();
    let want = rxon_core::Proxy::socks5h("127.0.0.1", 9050).with_auth("w1", "s@lt");
    assert_eq!(cfg.options.proxy.as_ref(), Some(&want));
    // Serialized with the password (a configuration file), shown without it.
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(
        text.contains(r#""proxy":"socks5h://w1:s%40lt@127.0.0.1:9050""#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<TransportConfig>(&text).unwrap(), cfg);
    assert!(!format!("{cfg:?}").contains("s@lt") && !format!("{cfg:?}").contains("s%40lt"));
    let leaky = toml::from_str::<TransportConfig>(
        "url = \"http://h\"\nworker_id = \"w\"\ntoken = \"t\"\nproxy = \"socks5://h:1\"\n",
    )
    .unwrap_err();
    assert!(leaky.to_string().contains("socks5h://"), "{leaky}");

    let vars = [
        ("R_URL", "grpc://x.onion:50051"),
        ("R_WORKER_ID", "w"),
        ("R_TOKEN", "t"),
        ("R_PROXY", "arti"),
    ];
    let lookup = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let cfg = TransportConfig::from_lookup("R", lookup).unwrap();
    assert_eq!(cfg.options.proxy, Some(rxon_core::Proxy::Arti));
    let bad = TransportConfig::from_lookup("R", |k| {
        if k == "R_PROXY" {
            Some("socks4://h:1".into())
        } else {
            lookup(k)
        }
    })
    .unwrap_err();
    assert!(bad.to_string().contains("R_PROXY"), "{bad}");
}
