//! Choosing a transport by URL scheme: [`Scheme`], [`TransportRegistry`],
//! [`create_transport`].

use rxon_core::config::url_scheme;
use rxon_core::{
    DynTransport, Result, RxonError, Transport, TransportConfig, TransportFactory, TransportOptions,
};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The schemes built into this workspace. Always compiled, whatever the features, so
/// that a known scheme whose feature is off gets an error naming the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `http://`: HTTP transport (feature `http`).
    Http,
    /// `https://`: HTTP over TLS (feature `http`).
    Https,
    /// `ws://`: WebSocket transport (feature `ws`).
    Ws,
    /// `wss://`: WebSocket over TLS (feature `ws`).
    Wss,
    /// `grpc://`: gRPC transport (feature `grpc`).
    Grpc,
    /// `grpcs://`: gRPC over TLS (feature `grpc`).
    Grpcs,
    /// `mock://`: in-memory mock (feature `testing`).
    Mock,
    /// `local://`: in-process transport to a `LocalListener` (feature `orchestrator`).
    Local,
}

impl Scheme {
    /// Every built-in scheme.
    pub const ALL: &'static [Scheme] = &[
        Scheme::Http,
        Scheme::Https,
        Scheme::Ws,
        Scheme::Wss,
        Scheme::Grpc,
        Scheme::Grpcs,
        Scheme::Mock,
        Scheme::Local,
    ];

    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Grpc => "grpc",
            Scheme::Grpcs => "grpcs",
            Scheme::Mock => "mock",
            Scheme::Local => "local",
        }
    }

    /// The cargo feature of the `rxon` crate that provides this scheme.
    pub fn feature(self) -> &'static str {
        match self {
            Scheme::Http | Scheme::Https => "http",
            Scheme::Ws | Scheme::Wss => "ws",
            Scheme::Grpc | Scheme::Grpcs => "grpc",
            Scheme::Mock => "testing",
            Scheme::Local => "orchestrator",
        }
    }

    /// `true` if this build has the scheme's feature.
    pub fn is_enabled(self) -> bool {
        match self {
            Scheme::Http | Scheme::Https => cfg!(feature = "http"),
            Scheme::Ws | Scheme::Wss => cfg!(feature = "ws"),
            Scheme::Grpc | Scheme::Grpcs => cfg!(feature = "grpc"),
            Scheme::Mock => cfg!(feature = "testing"),
            Scheme::Local => cfg!(feature = "orchestrator"),
        }
    }

    /// Builds a transport for this scheme, or explains why this build cannot.
    fn create(self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        if !self.is_enabled() {
            return Err(RxonError::unsupported(format!(
                "{}:// transports need the `{}` feature of the `rxon` crate: \
                 rxon = {{ version = \"…\", features = [\"{}\"] }}",
                self.as_str(),
                self.feature(),
                self.feature()
            ))
            .with_detail("scheme", self.as_str())
            .with_detail("feature", self.feature()));
        }
        match self {
            #[cfg(feature = "testing")]
            Scheme::Mock => rxon_testing::MockTransportFactory.create(config),
            #[cfg(feature = "orchestrator")]
            Scheme::Local => rxon_orchestrator::LocalTransportFactory.create(config),
            #[cfg(feature = "http")]
            Scheme::Http | Scheme::Https => rxon_http::HttpTransportFactory.create(config),
            #[cfg(feature = "ws")]
            Scheme::Ws | Scheme::Wss => rxon_ws::WsTransportFactory.create(config),
            #[cfg(feature = "grpc")]
            Scheme::Grpc | Scheme::Grpcs => rxon_grpc::GrpcTransportFactory.create(config),
            // Only in builds with a feature off, for a scheme refused above already.
            #[allow(unreachable_patterns)]
            _ => Err(RxonError::unsupported(format!(
                "{}:// needs the `{}` feature",
                self.as_str(),
                self.feature()
            ))
            .with_detail("url", config.url.clone())),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = RxonError;

    /// Parses a scheme name (`"https"`) case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Scheme::ALL
            .iter()
            .copied()
            .find(|sc| sc.as_str() == lower)
            .ok_or_else(|| RxonError::unsupported(format!("unknown transport scheme {s:?}")))
    }
}

/// Maps URL schemes to transport factories: the built-in [`Scheme`]s plus any that
/// third-party crates add.
///
/// A registry is a plain value: there is no global to install into, so there is no
/// start-up step that can be forgotten. Build one with the schemes your program needs
/// and create transports from it.
///
/// ```
/// use rxon::{Result, Transport, TransportConfig, TransportFactory, TransportRegistry};
///
/// struct CarrierPigeon;
/// impl TransportFactory for CarrierPigeon {
///     fn schemes(&self) -> &[&'static str] { &["pigeon"] }
///     fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
///         Err(rxon::RxonError::network(format!("no pigeon can reach {}", config.url)))
///     }
/// }
///
/// let registry = TransportRegistry::new().with(CarrierPigeon)?;
/// assert!(registry.schemes().contains(&"pigeon".to_string()));
/// let err = registry.create(&TransportConfig::new("pigeon://roof", "w1", "t")).err().unwrap();
/// assert!(err.is_network());
/// # Ok::<(), rxon::RxonError>(())
/// ```
#[derive(Clone, Default)]
pub struct TransportRegistry {
    custom: BTreeMap<String, Arc<dyn TransportFactory>>,
}

impl fmt::Debug for TransportRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportRegistry")
            .field("schemes", &self.schemes())
            .finish()
    }
}

impl TransportRegistry {
    /// A registry with the built-in schemes only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `factory` for each of its schemes. Fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) if a scheme is built in or
    /// already registered, or is not a valid scheme name.
    pub fn register(&mut self, factory: impl TransportFactory + 'static) -> Result<()> {
        let factory: Arc<dyn TransportFactory> = Arc::new(factory);
        let mut names = Vec::new();
        for &s in factory.schemes() {
            let name = url_scheme(&format!("{s}://"))?;
            if name != s {
                return Err(RxonError::config(format!(
                    "transport scheme {s:?} must be lowercase"
                )));
            }
            if s.parse::<Scheme>().is_ok() {
                return Err(RxonError::config(format!(
                    "transport scheme {s:?} is built in; pick another name"
                )));
            }
            if self.custom.contains_key(s) {
                return Err(RxonError::config(format!(
                    "transport scheme {s:?} is already registered"
                )));
            }
            names.push(name);
        }
        if names.is_empty() {
            return Err(RxonError::config(
                "a transport factory must serve at least one scheme",
            ));
        }
        for name in names {
            self.custom.insert(name, factory.clone());
        }
        Ok(())
    }

    /// [`register`](Self::register), by value.
    pub fn with(mut self, factory: impl TransportFactory + 'static) -> Result<Self> {
        self.register(factory)?;
        Ok(self)
    }

    /// Every scheme this registry can build, built-in (enabled in this build) and
    /// registered, sorted.
    pub fn schemes(&self) -> Vec<String> {
        let mut out: Vec<String> = Scheme::ALL
            .iter()
            .filter(|s| s.is_enabled())
            .map(|s| s.as_str().to_owned())
            .chain(self.custom.keys().cloned())
            .collect();
        out.sort();
        out
    }

    /// Builds an unconnected transport for `config`, chosen by its URL's scheme.
    pub fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        let scheme = config.scheme()?;
        if let Some(factory) = self.custom.get(&scheme) {
            return factory.create(config);
        }
        match scheme.parse::<Scheme>() {
            Ok(builtin) => builtin.create(config),
            Err(_) => Err(RxonError::unsupported(format!(
                "no transport for scheme {scheme:?}; available: {}",
                self.schemes().join(", ")
            ))
            .with_detail("scheme", scheme)),
        }
    }
}

/// Builds an unconnected transport for `url`, chosen by its scheme, with the built-in
/// schemes. Call [`Transport::connect`] before use.
///
/// ```
/// # #[cfg(feature = "testing")]
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use rxon::{create_transport, TransportOptions};
///
/// let transport = create_transport("mock://", "worker-1", "token", TransportOptions::default())?;
/// transport.connect().await?;
/// assert_eq!(transport.name(), "mock");
/// # Ok::<(), rxon::RxonError>(())
/// # }).unwrap();
/// ```
pub fn create_transport(
    url: &str,
    worker_id: &str,
    token: &str,
    options: TransportOptions,
) -> Result<DynTransport> {
    create_transport_from_config(&TransportConfig::new(url, worker_id, token).with_options(options))
}

/// [`create_transport`] from a whole [`TransportConfig`].
pub fn create_transport_from_config(config: &TransportConfig) -> Result<DynTransport> {
    TransportRegistry::new()
        .create(config)
        .map(DynTransport::from)
}
