//! The shared conformance suite over gRPC, plain and with required client certificates.

use rxon_core::{Listener, Transport, TransportConfig, TransportFactory};
use rxon_grpc::{GrpcListener, GrpcListenerConfig, GrpcTls, GrpcTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn both() -> Capabilities {
    Capabilities::none().with_commands(true).with_progress(true)
}

struct Plain;

impl Harness for Plain {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        let mut config = GrpcListenerConfig::default();
        config.poll_wait = poll_wait;
        Box::new(GrpcListener::with_config(config))
    }
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        GrpcTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        both()
    }
}

/// Throwaway CA, server certificate for 127.0.0.1 and client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "rxon grpc test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let server_key = KeyPair::generate().expect("key");
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("server");
        let client_key = KeyPair::generate().expect("key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, "grpc-worker");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &ca_cert, &ca_key)
            .expect("client");
        for (name, text) in [
            ("ca.pem", ca_cert.pem()),
            ("server.pem", server_cert.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client_cert.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        Pki { dir }
    })
}

struct Mtls;

impl Harness for Mtls {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        let mut config = GrpcListenerConfig::default();
        config.poll_wait = poll_wait;
        config.tls = Some(
            GrpcTls::new(pki().path("server.pem"), pki().path("server.key"))
                .with_client_ca(pki().path("ca.pem"))
                .with_required_client_cert(true),
        );
        Box::new(GrpcListener::with_config(config))
    }
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let mut config = config.clone();
        config.options.tls.ca_file = Some(pki().path("ca.pem"));
        config.options.tls.client_cert = Some(pki().path("client.pem"));
        config.options.tls.client_key = Some(pki().path("client.key"));
        GrpcTransportFactory.create(&config)
    }
    fn capabilities(&self) -> Capabilities {
        both()
    }
}

mod plain {
    rxon_testing::conformance_tests!(super::Plain);
}

mod mtls {
    rxon_testing::conformance_tests!(super::Mtls);
}
