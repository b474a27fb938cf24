//! The HTTP client object_store's S3 backend talks through: hyper with rustls (ring), the
//! same stack as the rest of rxon, instead of a second HTTP client and crypto library.
//!
//! Every wait is bounded: connecting by `connect_timeout`, the response head by
//! `request_timeout`, and each gap between two body chunks by `idle_timeout` (a stalled
//! download fails instead of hanging).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use rustls::RootCertStore;
use rxon_core::{Result, RxonError};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Time limits of the storage HTTP client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// Hands object_store a hyper client.
#[derive(Debug, Clone)]
pub(crate) struct HyperConnector {
    service: HyperService,
}

impl HyperConnector {
    /// A client trusting `ca_file` if given, else the system roots (only needed for
    /// `https://` endpoints: an empty root store is used when none are found, so plain
    /// HTTP endpoints work on machines without system certificates).
    pub(crate) fn new(limits: Limits, ca_file: Option<&Path>) -> Result<Self> {
        let roots = match ca_file {
            Some(path) => roots_from(path)?,
            None => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                roots
            }
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| RxonError::config(format!("storage TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = TcpConnector::new();
        tcp.set_connect_timeout(Some(limits.connect_timeout));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HyperConnector {
            service: HyperService { client, limits },
        })
    }
}

fn roots_from(path: &Path) -> Result<RootCertStore> {
    rxon_net::tls::roots_from(path)
        .map_err(|e| RxonError::config(format!("storage {}", e.message())))
}

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.service.clone()))
    }
}

#[derive(Debug, Clone)]
struct HyperService {
    client: Client<HttpsConnector<TcpConnector>, HttpRequestBody>,
    limits: Limits,
}

impl HttpService for HyperService {
    fn call<'a, 'b>(
        &'a self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<HttpResponse, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let response =
                match tokio::time::timeout(self.limits.request_timeout, self.client.request(req))
                    .await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(e)) => return Err(client_error(e)),
                    Err(_) => {
                        return Err(HttpError::new(
                            HttpErrorKind::Timeout,
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("no response within {:?}", self.limits.request_timeout),
                            ),
                        ));
                    }
                };
            let (parts, body) = response.into_parts();
            let body = IdleTimeout::new(body, self.limits.idle_timeout);
            Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
        })
    }
}

fn client_error(e: hyper_util::client::legacy::Error) -> HttpError {
    let kind = if e.is_connect() {
        HttpErrorKind::Connect
    } else {
        HttpErrorKind::Request
    };
    HttpError::new(kind, e)
}

/// A response body that fails when no chunk arrives for `idle` (reset after each chunk).
struct IdleTimeout {
    body: hyper::body::Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(body: hyper::body::Incoming, idle: Duration) -> Self {
        IdleTimeout {
            body,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(|e| HttpError::new(HttpErrorKind::Request, e))))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("response body stalled for {:?}", this.idle),
                    ),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
