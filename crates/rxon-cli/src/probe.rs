//! `rxon probe`: checks a live orchestrator against the protocol and reports what it
//! found: which generation it speaks, which worker routes it serves, how it refuses
//! credentials, how it answers bad requests, and (when asked) a worker session.
#![allow(clippy::print_stdout)] // The report is its output.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rxon::constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION_HEADER, WORKER_ID_HEADER};
use rxon::http::routes;
use rxon::{ErrorCode, Protocol, TaskError, TaskResult, Transport, TransportConfig};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// The long help of `rxon probe`.
pub(crate) const LONG_ABOUT: &str = "\
Check a live orchestrator against the RXON protocol and print a report:

  generation  the X-RXON-Version it answers with, hence 1.0b3 or 1.0b17
  routes      each worker route of both generations: served or not, as the generation
              it speaks expects
  auth        no token and a wrong token are refused (401 or 403, with a JSON error);
              with --token, the token is accepted (STS exchange)
  errors      malformed JSON is a 400 with a JSON error, an unknown route a 404, a
              wrong method a 405
  session     with --register (any transport: http, https, ws, wss, grpc, grpcs):
              register and heartbeat as --worker-id, with the generation rxon
              negotiates; with --poll SKILL, one poll for a task of SKILL

By default no job is touched: requests without a valid token are refused before
anything happens, and with one only the STS exchange and requests that cannot match a
task are sent. --register adds a worker (no skills) to the orchestrator's fleet.
--poll SKILL may claim a real waiting task: it is handed back at once as a transient
failure (TRANSIENT_ERROR), which orchestrators retry elsewhere.

Exit status: 0 when every check passed, 1 when one failed, 2 when the orchestrator
could not be reached or the options are wrong. --json prints the report as JSON.
";

/// `rxon probe`'s options.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The orchestrator's URL (`http://host:port`; any scheme with `--register`).
    url: String,
    /// A worker token to check (and to register with).
    #[arg(long, env = "RXON_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The worker id the probe's requests name.
    #[arg(long, default_value = "rxon-probe")]
    worker_id: String,
    /// Reach the orchestrator through a proxy: `socks5h://host:port` (e.g. tor's), or
    /// `arti` (built with `--features tor`).
    #[arg(long, env = "RXON_PROXY", hide_env_values = true)]
    proxy: Option<String>,
    /// CA certificate (PEM) that signs the orchestrator's certificate, for `https://`.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Seconds each request may take (1 to 300).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Also open a worker session: register (no skills) and heartbeat.
    #[arg(long)]
    register: bool,
    /// With the session, poll once for a task of SKILL (a claimed task is handed back as
    /// a transient failure).
    #[arg(long, value_name = "SKILL", requires = "register")]
    poll: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    /// As the protocol expects.
    Pass,
    /// Allowed, but worth knowing (e.g. what the other generation's reference does).
    Note,
    /// Works, but unsafe or surprising (e.g. no credential needed).
    Warn,
    /// Not as the protocol expects.
    Fail,
    /// Not run, with the reason in its detail.
    Skipped,
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Check {
    group: &'static str,
    name: String,
    outcome: Outcome,
    /// The HTTP status it answered with, when the check sent a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    detail: String,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    /// `1.0b3` or `1.0b17`: the generation rxon speaks with this orchestrator.
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<&'static str>,
    /// The orchestrator's own `X-RXON-Version`, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    version_header: Option<String>,
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        group: &'static str,
        name: impl Into<String>,
        outcome: Outcome,
        status: Option<u16>,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check {
            group,
            name: name.into(),
            outcome,
            status,
            detail: detail.into(),
        });
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }

    fn text(&self) -> String {
        let mut out = format!("rxon probe {}\n", self.url);
        for c in &self.checks {
            let status = c.status.map(|s| s.to_string()).unwrap_or_default();
            let outcome = format!("{:?}", c.outcome).to_uppercase();
            let _ = writeln!(
                out,
                "  {outcome:<7} {:<10} {:<22} {status:>3}  {}",
                c.group, c.name, c.detail
            );
        }
        let generation = self.generation.unwrap_or("unknown");
        let _ = writeln!(
            out,
            "generation {generation}: {} passed, {} failed, {} warnings, {} notes, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Warn),
            self.count(Outcome::Note),
            self.count(Outcome::Skipped),
        );
        out
    }
}

/// A worker route no generation has.
const NO_SUCH_ROUTE: &str = "/_worker/rxon-probe-no-such-route";

/// The most a probe reads of one answer.
const MAX_ANSWER: usize = 64 * 1024;

/// Runs the probe; `Ok(true)` when no check failed. An unreachable orchestrator is an
/// error (exit status 2).
pub(crate) async fn run(args: Args) -> rxon::Result<bool> {
    if !(1.0..=300.0).contains(&args.timeout) {
        return Err(rxon::RxonError::config(format!(
            "--timeout must be 1 to 300 seconds, not {}",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut config = TransportConfig::new(
        &args.url,
        &args.worker_id,
        args.token.as_deref().unwrap_or_default(),
    );
    if let Some(p) = args.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
        config.options.proxy = Some(p.parse()?);
    }
    config.options.tls.ca_file = args.ca_file.clone();
    config.options.request_timeout = timeout;
    config.options.connect_timeout = timeout;
    rxon::validate::validate_identifier(&args.worker_id, "--worker-id")?;
    let mut report = Report {
        url: args.url.clone(),
        generation: None,
        version_header: None,
        checks: Vec::new(),
    };
    let scheme = args.url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if matches!(scheme, "http" | "https") {
        let http = Http::new(&config, timeout)?;
        http_checks(&http, &args, &mut report).await?;
    } else if args.register {
        report.add(
            "routes",
            "worker routes",
            Outcome::Skipped,
            None,
            format!("{scheme}:// has no HTTP routes to check; the session below checks it"),
        );
    } else {
        return Err(rxon::RxonError::config(format!(
            "{scheme}:// URLs are probed with a worker session: add --register (and --token)"
        )));
    }
    if args.register {
        session(&config, args.poll.as_deref(), &mut report).await;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| rxon::RxonError::protocol(e.to_string()))?;
        println!("{json}");
    } else {
        print!("{}", report.text());
    }
    Ok(report.count(Outcome::Fail) == 0)
}

/// An HTTP client through rxon's dialer (proxies, Tor and TLS as the transports have
/// them), for requests the transports never send.
struct Http {
    client: Client<rxon::http::Connector, Full<Bytes>>,
    base: String,
    worker_id: String,
    timeout: Duration,
}

/// What one request got.
struct Answer {
    status: u16,
    version: Option<String>,
    body: Bytes,
}

impl Answer {
    /// `{"error": "…"}`, as both generations' listeners answer errors.
    fn json_error(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error")?.as_str().map(str::to_owned)
    }

    /// The error's text, or the start of the body, for the report.
    fn gist(&self) -> String {
        let text = self
            .json_error()
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        // The peer's text, on one line and without control characters (no terminal
        // escapes from a server reach the report).
        let text: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        match text.char_indices().nth(80) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text,
        }
    }
}

impl Http {
    fn new(config: &TransportConfig, timeout: Duration) -> rxon::Result<Self> {
        let connector = rxon::http::connector(config)?;
        Ok(Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: config.url.trim_end_matches('/').to_owned(),
            worker_id: config.worker_id.clone(),
            timeout,
        })
    }

    /// Sends one request, with `token` when given, and reads at most [`MAX_ANSWER`]
    /// of the answer, all within the timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> rxon::Result<Answer> {
        self.send_as(Protocol::LATEST, method, path, token, body)
            .await
    }

    /// [`send`](Self::send) as a worker of generation `protocol`.
    async fn send_as(
        &self,
        protocol: Protocol,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> rxon::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(PROTOCOL_VERSION_HEADER, protocol.as_str())
            .header(WORKER_ID_HEADER, &self.worker_id);
        if let Some(token) = token {
            request = request.header(AUTH_HEADER_WORKER, token);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| rxon::RxonError::config(format!("{method} {url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| rxon::RxonError::network(format!("{method} {url}: {e}")))?;
            let status = response.status().as_u16();
            let version = response
                .headers()
                .get(PROTOCOL_VERSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Answer {
                status,
                version,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                rxon::RxonError::timeout(format!(
                    "{method} {url}: no answer within {:?}",
                    self.timeout
                ))
            })?
    }
}

/// A worker route: its name, method, path and the generation it came with.
struct Route {
    name: &'static str,
    method: Method,
    path: String,
    since: Protocol,
    /// Gone in 1.0b17 (the id-less WebSocket path).
    until_1b3: bool,
}

fn routes(worker_id: &str) -> Vec<Route> {
    let route = |name, method, path: String, since| Route {
        name,
        method,
        path,
        since,
        until_1b3: false,
    };
    vec![
        route(
            "register",
            Method::POST,
            routes::ENDPOINT_WORKER_REGISTER.into(),
            Protocol::V1b3,
        ),
        route(
            "poll",
            Method::GET,
            routes::task_next_path(worker_id),
            Protocol::V1b3,
        ),
        route(
            "result",
            Method::POST,
            routes::ENDPOINT_TASK_RESULT.into(),
            Protocol::V1b3,
        ),
        route(
            "heartbeat",
            Method::PATCH,
            routes::heartbeat_path(worker_id),
            Protocol::V1b3,
        ),
        route(
            "sts token",
            Method::POST,
            routes::STS_TOKEN_ENDPOINT.into(),
            Protocol::V1b3,
        ),
        route(
            "websocket",
            Method::GET,
            format!("{}/{worker_id}", routes::WS_ENDPOINT),
            Protocol::V1b3,
        ),
        Route {
            until_1b3: true,
            ..route(
                "websocket (no id)",
                Method::GET,
                routes::WS_ENDPOINT.into(),
                Protocol::V1b3,
            )
        },
        route(
            "events",
            Method::POST,
            routes::ENDPOINT_EVENTS.into(),
            Protocol::V1b17,
        ),
        route(
            "sts refresh",
            Method::POST,
            routes::STS_REFRESH_ENDPOINT.into(),
            Protocol::V1b17,
        ),
    ]
}

/// A token no orchestrator issues: 32 random-looking hex digits.
fn wrong_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("rxon-probe-{:032x}", nanos ^ 0x5bd1_e995_9e37_79b9)
}

async fn http_checks(http: &Http, args: &Args, report: &mut Report) -> rxon::Result<()> {
    let token = args.token.as_deref();
    // The generation: what an empty heartbeat's answer names, as rxon's HTTP transport
    // asks. Unreachable is the end of the probe.
    let answer = http
        .send(
            Method::PATCH,
            &routes::heartbeat_path(&args.worker_id),
            token,
            "",
        )
        .await?;
    let generation = match answer.version.as_deref() {
        Some(v) => Protocol::from_header(Some(v)).min(Protocol::LATEST),
        None if answer.status == 404 => {
            report.add(
                "generation",
                "X-RXON-Version",
                Outcome::Fail,
                Some(404),
                "no RXON worker API here (404 without X-RXON-Version)",
            );
            return Ok(());
        }
        None => Protocol::V1b3,
    };
    report.generation = Some(generation.as_str());
    report.version_header = answer.version.clone();
    report.add(
        "generation",
        "X-RXON-Version",
        // The reference listeners name their generation on every answer: a missing
        // header is worth knowing (a proxy's answer, or not an RXON listener).
        if answer.version.is_some() {
            Outcome::Pass
        } else {
            Outcome::Note
        },
        Some(answer.status),
        match &answer.version {
            Some(v) => format!("{v}: rxon speaks {generation} with it"),
            None => format!(
                "absent (a 1.0b3 peer, or no RXON listener): rxon speaks {generation} with it"
            ),
        },
    );
    if generation > Protocol::V1b3 {
        // An orchestrator may serve both generations at once, each worker in its own.
        let path = routes::heartbeat_path(&args.worker_id);
        match http
            .send_as(Protocol::V1b3, Method::PATCH, &path, token, "")
            .await
        {
            Ok(a) if a.version.as_deref() == Some(Protocol::V1b3.as_str()) => report.add(
                "generation",
                "1.0b3 workers",
                Outcome::Pass,
                Some(a.status),
                "answered in 1.0b3 too: it serves both generations",
            ),
            Ok(a) => report.add(
                "generation",
                "1.0b3 workers",
                Outcome::Note,
                Some(a.status),
                format!(
                    "a 1.0b3 worker is answered with {}: 1.0b17 only",
                    a.version.as_deref().unwrap_or("no X-RXON-Version")
                ),
            ),
            Err(e) => report.add(
                "generation",
                "1.0b3 workers",
                Outcome::Fail,
                None,
                e.message(),
            ),
        }
    }

    // Routes, without a token: refused before anything happens. A server that
    // answers a route no one serves with anything but 404 (it refuses, or answers,
    // before routing) tells nothing about its routes this way.
    let nowhere = http.send(Method::GET, NO_SUCH_ROUTE, None, "").await?;
    let routed = if nowhere.status == 404 {
        routes(&args.worker_id)
    } else {
        report.add(
            "routes",
            "worker routes",
            Outcome::Skipped,
            Some(nowhere.status),
            format!(
                "{NO_SUCH_ROUTE} answered {} without a token, not 404: this server does not \
                 route before it refuses",
                nowhere.status
            ),
        );
        Vec::new()
    };
    for route in routed {
        let body = if route.method == Method::POST {
            "{}"
        } else {
            ""
        };
        let name = format!("{} {}", route.method, route.name);
        let answer = match http
            .send(route.method.clone(), &route.path, None, body)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                report.add("routes", name, Outcome::Fail, None, e.message());
                continue;
            }
        };
        let served = answer.status != 404;
        let expected =
            generation >= route.since && !(route.until_1b3 && generation > Protocol::V1b3);
        let (outcome, detail) = match (served, expected) {
            (true, true) if answer.status < 300 => (
                Outcome::Warn,
                format!("{} answered WITHOUT a token: open auth?", route.path),
            ),
            (true, true) => (Outcome::Pass, format!("{} served", route.path)),
            (false, true) => (
                Outcome::Fail,
                format!("{} missing: {generation} serves it", route.path),
            ),
            (false, false) => (
                Outcome::Pass,
                format!("{} not served, as in {generation}", route.path),
            ),
            (true, false) => (
                Outcome::Note,
                format!("{} served too (not part of {generation})", route.path),
            ),
        };
        report.add("routes", name, outcome, Some(answer.status), detail);
    }

    // Auth: a missing and a wrong token are refused, with a JSON error; the given
    // token is accepted.
    let reference = match generation {
        Protocol::V1b3 => 401,
        _ => 403,
    };
    let auth_refusal = |report: &mut Report, name: &str, answer: &Answer| {
        let (outcome, detail) = match answer.status {
            // Both are refusals a worker reads as such; rxon answers 401 in both
            // generations (a 1.0b17 client refreshes once on it).
            401 | 403 if answer.json_error().is_some() => (
                Outcome::Pass,
                if answer.status == reference {
                    format!("refused: {}", answer.gist())
                } else {
                    format!(
                        "refused ({generation}'s reference answers {reference}): {}",
                        answer.gist()
                    )
                },
            ),
            401 | 403 => (
                Outcome::Note,
                format!("refused, but not with a JSON error: {}", answer.gist()),
            ),
            s if s < 300 => (
                Outcome::Warn,
                "ACCEPTED: the orchestrator runs with open auth".into(),
            ),
            _ => (
                Outcome::Fail,
                format!("expected 401 or 403: {}", answer.gist()),
            ),
        };
        report.add("auth", name, outcome, Some(answer.status), detail);
    };
    match http
        .send(Method::POST, routes::STS_TOKEN_ENDPOINT, None, "")
        .await
    {
        Ok(a) => auth_refusal(report, "no token", &a),
        Err(e) => report.add("auth", "no token", Outcome::Fail, None, e.message()),
    }
    match http
        .send(
            Method::POST,
            routes::STS_TOKEN_ENDPOINT,
            Some(&wrong_token()),
            "",
        )
        .await
    {
        Ok(a) => auth_refusal(report, "wrong token", &a),
        Err(e) => report.add("auth", "wrong token", Outcome::Fail, None, e.message()),
    }
    let Some(token) = token else {
        report.add(
            "auth",
            "--token accepted",
            Outcome::Skipped,
            None,
            "no --token given",
        );
        report.add(
            "errors",
            "bad requests",
            Outcome::Skipped,
            None,
            "no --token given (without one, every request is refused first)",
        );
        return Ok(());
    };
    match http
        .send(Method::POST, routes::STS_TOKEN_ENDPOINT, Some(token), "")
        .await
    {
        Ok(a) => sts_check(report, &a),
        Err(e) => report.add("auth", "--token accepted", Outcome::Fail, None, e.message()),
    }

    // Errors, with the token: nothing here can match a task.
    let bad: [(&str, Method, &str, &str, &[u16]); 3] = [
        (
            "malformed JSON",
            Method::POST,
            routes::ENDPOINT_WORKER_REGISTER,
            "{",
            &[400],
        ),
        ("unknown route", Method::GET, NO_SUCH_ROUTE, "", &[404]),
        (
            "wrong method",
            Method::DELETE,
            routes::ENDPOINT_TASK_RESULT,
            "",
            &[405],
        ),
    ];
    for (name, method, path, body, expected) in bad {
        let answer = match http.send(method.clone(), path, Some(token), body).await {
            Ok(a) => a,
            Err(e) => {
                report.add("errors", name, Outcome::Fail, None, e.message());
                continue;
            }
        };
        let json = answer.json_error().is_some();
        let (outcome, detail) = if expected.contains(&answer.status) {
            if json {
                (Outcome::Pass, format!("{method} {path}: {}", answer.gist()))
            } else {
                (
                    Outcome::Note,
                    format!("{method} {path}: not a JSON error: {}", answer.gist()),
                )
            }
        } else if answer.status >= 500 && generation == Protocol::V1b3 && expected == [400] {
            (
                Outcome::Note,
                format!(
                    "{method} {path}: 1.0b3's reference answers 500 too: {}",
                    answer.gist()
                ),
            )
        } else if answer.status < 300 {
            (
                Outcome::Fail,
                format!("{method} {path}: accepted ({})", answer.gist()),
            )
        } else {
            (
                Outcome::Fail,
                format!("{method} {path}: expected {expected:?}: {}", answer.gist()),
            )
        };
        report.add("errors", name, outcome, Some(answer.status), detail);
    }
    Ok(())
}

/// The STS exchange with `--token`: 200 with a token response, never printed.
fn sts_check(report: &mut Report, answer: &Answer) {
    let name = "--token accepted";
    let status = Some(answer.status);
    match answer.status {
        200..=299 => match serde_json::from_slice::<rxon::TokenResponse>(&answer.body) {
            Ok(t) => report.add(
                "auth",
                name,
                Outcome::Pass,
                status,
                format!(
                    "STS issued a token for {:?}, expiring in {} s{}",
                    t.worker_id,
                    t.expires_in,
                    if t.refresh_token.is_some() {
                        ", with a refresh token"
                    } else {
                        ""
                    }
                ),
            ),
            // The body is never shown: it may hold a token all the same.
            Err(e) => report.add(
                "auth",
                name,
                Outcome::Fail,
                status,
                format!(
                    "not a token response ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            ),
        },
        401 => report.add(
            "auth",
            name,
            Outcome::Fail,
            status,
            format!("refused: {}", answer.gist()),
        ),
        // avtomatika 1.0b30 refuses every credential with 403; some orchestrators issue
        // tokens to mTLS clients only.
        403 => report.add(
            "auth",
            name,
            Outcome::Fail,
            status,
            format!(
                "refused (a wrong token, or STS for mTLS clients only): {}",
                answer.gist()
            ),
        ),
        _ => report.add(
            "auth",
            name,
            Outcome::Fail,
            status,
            format!("unexpected answer: {}", answer.gist()),
        ),
    }
}

/// A worker session through rxon's transport for the URL's scheme: register, one
/// heartbeat, and (with `poll`) one poll.
async fn session(config: &TransportConfig, poll: Option<&str>, report: &mut Report) {
    let transport = match rxon::create_transport_from_config(config) {
        Ok(t) => t,
        Err(e) => {
            report.add("session", "transport", Outcome::Fail, None, e.message());
            return;
        }
    };
    if let Err(e) = transport.connect().await {
        report.add("session", "connect", Outcome::Fail, e.status(), e.message());
        return;
    }
    let registration = rxon::WorkerRegistration {
        worker_id: config.worker_id.clone(),
        worker_type: "rxon-probe".into(),
        supported_skills: poll.map(rxon::SkillInfo::from).into_iter().collect(),
        resources: rxon::Resources {
            max_concurrent_tasks: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    match transport.register(&registration).await {
        Ok(reply) => {
            let protocol = transport
                .known_protocol()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "not negotiated by this transport".into());
            let mut detail = format!(
                "{} as {:?} over {}; protocol {protocol}",
                reply.status,
                config.worker_id,
                transport.name()
            );
            if let Some(w) = &reply.warning {
                let _ = write!(detail, "; warning: {w}");
            }
            let outcome = if reply.warning.is_some() {
                Outcome::Note
            } else {
                Outcome::Pass
            };
            report.add("session", "register", outcome, None, detail);
        }
        Err(e) => {
            report.add(
                "session",
                "register",
                Outcome::Fail,
                e.status(),
                e.message(),
            );
            let _ = transport.close().await;
            return;
        }
    }
    let heartbeat = rxon::Heartbeat {
        worker_id: config.worker_id.clone(),
        status: rxon::constants::WORKER_STATUS_IDLE.into(),
        ..Default::default()
    };
    match transport.send_heartbeat(&heartbeat).await {
        Ok(reply) => report.add(
            "session",
            "heartbeat",
            Outcome::Pass,
            None,
            format!("answered ({} cancels)", reply.cancel_task_ids.len()),
        ),
        Err(e) => report.add(
            "session",
            "heartbeat",
            Outcome::Fail,
            e.status(),
            e.message(),
        ),
    }
    if let Some(skill) = poll {
        poll_once(&*transport, skill, &config.worker_id, report).await;
    }
    // Gone, as a worker runtime says it: no orchestrator keeps routing tasks to it.
    let offline = rxon::Heartbeat {
        worker_id: config.worker_id.clone(),
        status: rxon::constants::WORKER_STATUS_OFFLINE.into(),
        supported_skills: Some(Vec::new()),
        ..Default::default()
    };
    if let Err(e) = transport.send_heartbeat(&offline).await {
        report.add("session", "offline", Outcome::Fail, e.status(), e.message());
    }
    let _ = transport.close().await;
}

/// One short poll; a claimed task goes back as a transient failure at once.
async fn poll_once(transport: &dyn Transport, skill: &str, worker_id: &str, report: &mut Report) {
    let name = format!("poll {skill}");
    match transport.poll_task(Duration::from_secs(1)).await {
        Ok(None) => report.add(
            "session",
            name,
            Outcome::Pass,
            None,
            "no task waiting (204)",
        ),
        Ok(Some(task)) => {
            let error = TaskError::new(
                ErrorCode::Transient,
                "claimed by `rxon probe --poll`, which runs no task",
            );
            let got = format!(
                "got task {:?} (type {:?}, job {:?})",
                task.task_id, task.task_type, task.job_id
            );
            match transport
                .send_result(&TaskResult::failure(&task, worker_id, error))
                .await
            {
                Ok(outcome) => report.add(
                    "session",
                    name,
                    Outcome::Pass,
                    None,
                    format!("{got}; handed back as a transient failure: {outcome:?}"),
                ),
                Err(e) => report.add(
                    "session",
                    name,
                    Outcome::Fail,
                    e.status(),
                    format!(
                        "{got}; NOT handed back ({}): it returns when its claim lapses",
                        e.message()
                    ),
                ),
            }
        }
        // An orchestrator that holds an empty poll longer than asked (the reference's
        // ignore `?timeout=`) has simply no task for it.
        Err(e) if e.kind() == rxon::ErrorKind::Timeout => report.add(
            "session",
            name,
            Outcome::Pass,
            None,
            "no task waiting (the poll was held past its timeout)",
        ),
        Err(e) => report.add("session", name, Outcome::Fail, e.status(), e.message()),
    }
}
