//! [`Pki`]: throwaway certificates for TLS and mTLS tests (feature `pki`).

use std::path::PathBuf;

/// A fresh CA, a server certificate for some names and a client certificate with a
/// common name, written as PEM files (`ca.pem`, `server.pem`, `server.key`,
/// `client.pem`, `client.key`) into a temporary directory removed on drop; also
/// `client-expired.pem` / `.key`, the same client from the same CA, expired in 2001.
///
/// ```
/// let pki = rxon_testing::pki::Pki::new(&["127.0.0.1", "localhost"], "worker-1").unwrap();
/// assert!(pki.path("ca.pem").exists() && pki.path("client.key").exists());
/// ```
#[derive(Debug)]
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Certificates with the server valid for `server_names` (DNS names or IP
    /// addresses) and the client's subject CN `client_cn`.
    pub fn new(server_names: &[&str], client_cn: &str) -> std::io::Result<Pki> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let err = |e: rcgen::Error| std::io::Error::other(e.to_string());
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "rxon test CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

        let server_key = KeyPair::generate().map_err(err)?;
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let mut server = CertificateParams::new(names).map_err(err)?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(err)?;

        let client_key = KeyPair::generate().map_err(err)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        client
            .distinguished_name
            .push(DnType::CommonName, client_cn);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &ca_cert, &ca_key)
            .map_err(err)?;

        // The same client, signed by the same CA, but valid only in 2001.
        let expired_key = KeyPair::generate().map_err(err)?;
        let mut expired = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        expired
            .distinguished_name
            .push(DnType::CommonName, client_cn);
        expired.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        expired.not_before = rcgen::date_time_ymd(2001, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 12, 31);
        let expired_cert = expired
            .signed_by(&expired_key, &ca_cert, &ca_key)
            .map_err(err)?;

        for (name, text) in [
            ("client-expired.pem", expired_cert.pem()),
            ("client-expired.key", expired_key.serialize_pem()),
            ("ca.pem", ca_cert.pem()),
            ("server.pem", server_cert.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client_cert.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), text)?;
        }
        Ok(Pki { dir })
    }

    /// The path of one of the PEM files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A listener's TLS with these certificates, requiring client certificates from
    /// this CA (strict mTLS).
    pub fn server_mtls(&self) -> rxon_core::ServerTlsOptions {
        rxon_core::ServerTlsOptions::new(self.path("server.pem"), self.path("server.key"))
            .with_client_ca(self.path("ca.pem"))
            .with_required_client_cert(true)
    }

    /// `config` with a worker's TLS for these certificates: this CA trusted, the client
    /// certificate presented.
    pub fn client_mtls(&self, config: &rxon_core::TransportConfig) -> rxon_core::TransportConfig {
        let mut config = config.clone();
        config.options.tls.ca_file = Some(self.path("ca.pem"));
        config.options.tls.client_cert = Some(self.path("client.pem"));
        config.options.tls.client_key = Some(self.path("client.key"));
        config
    }
}
