//! What the HTTP API checks before a handler runs: that the request is one it should answer
//! at all (its `Host`, its `Origin`, its URL length, the type of its body), that it carries
//! the token when one is required, and that its kind of request has a free slot.
//!
//! The API listens on loopback without a token by default, so a web page the user opens
//! must not be able to drive it: a page of another site sends its `Origin` (refused unless
//! listed in `api.allowed_origins`), a page on a rebound DNS name sends that name as `Host`
//! (refused unless it is an IP address, `localhost` or listed in `api.allowed_hosts`), and
//! a form or `no-cors` fetch can only send `text/plain`, form or empty content types
//! (refused wherever a body changes state).

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::{
    limits::{
        callers::{self, Access, Caller, CallerRates},
        tokens::{Role, TokenTable},
    },
    ops::metrics::{Metrics, RateLimitedLabels},
    repo::{ApiConfig, LimitsConfig},
};

/// Longest URL (path and query) answered, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// What the API answers and whom, from `api.*` of the configuration.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The bearer token every request but /health and /ready must carry, when required.
    token: Option<Arc<str>>,
    /// The admin token, known even where none is required (the CLI on the node's machine
    /// sends it, and only its holder may name backup folders outside `backup.dir`).
    admin: Option<Arc<str>>,
    allowed_hosts: Arc<[String]>,
    allowed_origins: Arc<[String]>,
    /// Tokens of `ipvec token create`, with their roles.
    tokens: TokenTable,
    /// Each caller's read and write budgets (`limits.*`).
    rates: Option<Arc<CallerRates>>,
    /// `ipvec_rate_limited_total`, counted here for the API.
    limited: Option<
        prometheus_client::metrics::family::Family<
            RateLimitedLabels,
            prometheus_client::metrics::counter::Counter,
        >,
    >,
}

impl Gate {
    /// The gate of `config`, asking for `token` when given.
    pub fn new(config: &ApiConfig, token: Option<String>) -> Self {
        let lower = |items: &[String]| -> Arc<[String]> {
            items
                .iter()
                .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        let token: Option<Arc<str>> = token.map(Arc::from);
        Self {
            admin: token.clone(),
            token,
            allowed_hosts: lower(&config.allowed_hosts),
            allowed_origins: lower(&config.allowed_origins),
            tokens: TokenTable::none(),
            rates: None,
            limited: None,
        }
    }

    /// This gate also knowing the tokens of `tokens`, holding callers to the rates of
    /// `limits` and counting refusals in `metrics`.
    pub fn with_limits(
        mut self,
        tokens: TokenTable,
        limits: &LimitsConfig,
        metrics: &Metrics,
    ) -> Self {
        self.tokens = tokens;
        self.rates = Some(Arc::new(CallerRates::new(limits)));
        self.limited = Some(metrics.rate_limited_family());
        self
    }

    /// This gate also knowing `admin`, the admin token, where none is required.
    pub fn knowing_admin(mut self, admin: Option<String>) -> Self {
        if self.admin.is_none() {
            self.admin = admin.map(Arc::from);
        }
        self
    }

    /// Whether a `Host` header value may be answered: IP addresses (a DNS-rebinding page
    /// always sends a name), `localhost` and its subdomains, and the configured names.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // "[::1]:5080", "127.0.0.1:5080", "name:5080", "name".
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host.as_str(), |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    host.as_str()
                }
            }),
        };
        let name = name.trim_end_matches('.');
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == "*" || allowed == name)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
    }

    /// Who sends `request`, or the first reason to refuse it before routing.
    fn refuse(&self, request: &Request) -> Result<Caller, ApiError> {
        self.refuse_early(request)
            .map_or_else(|| self.caller(request), Err)
    }

    /// The first reason to refuse `request` for where it comes from, if any.
    fn refuse_early(&self, request: &Request) -> Option<ApiError> {
        let uri_len = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if uri_len > MAX_URI_BYTES {
            return Some(ApiError::uri_too_long(format!(
                "the URL is {uri_len} bytes, over the API's limit of {MAX_URI_BYTES}; send long \
                 values in the request body"
            )));
        }
        let headers = request.headers();
        // Liveness and readiness say nothing a page could use, and probes may name the host
        // any way they like.
        let open = matches!(request.uri().path(), "/health" | "/ready");
        if let (Some(host), false) = (header_text(headers, header::HOST), open) {
            if !self.host_allowed(host) {
                return Some(ApiError::forbidden(format!(
                    "this API does not answer for host {host:?} (a web page on a name that \
                     resolves to this machine could otherwise use it); use an IP address or \
                     localhost, or add the name to api.allowed_hosts"
                )));
            }
        }
        if let Some(origin) = header_text(headers, header::ORIGIN) {
            if !self.origin_allowed(origin) {
                return Some(ApiError::forbidden(format!(
                    "cross-origin requests are refused (Origin {origin:?}); add the origin to \
                     api.allowed_origins to let that site's pages call this API"
                )));
            }
        }
        None
    }

    /// Who sends `request`: the admin token, a token of `ipvec token create`, or (with no
    /// token where none is required) its address; 401 when a required token is missing or
    /// unknown.
    fn caller(&self, request: &Request) -> Result<Caller, ApiError> {
        let open = matches!(request.uri().path(), "/health" | "/ready");
        let given = header_text(request.headers(), header::AUTHORIZATION).and_then(bearer_token);
        let admin = |g: &str| {
            self.admin
                .as_ref()
                .is_some_and(|t| same_token(g.as_bytes(), t.as_bytes()))
        };
        let known = match given {
            Some(g) if admin(g) => return Ok(Caller::Admin),
            Some(g) => self.tokens.find(g).map(Caller::Token),
            None => None,
        };
        match known {
            Some(caller) => Ok(caller),
            None if self.token.is_none() || open => Ok(Caller::Address(client_address(request))),
            None => Err(ApiError::unauthorized(
                "this API needs `Authorization: Bearer <token>`: pass --token or set \
                 IPVEC_API_TOKEN (the admin token is in the daemon repository's keys/api.token; \
                 `ipvec token create` makes others)",
            )),
        }
    }

    /// Who sends `request`, or the answer that refuses it (everything [`gate`] checks).
    pub fn admit(&self, request: &Request) -> Result<Caller, Response> {
        let caller = self.refuse(request).map_err(IntoResponse::into_response)?;
        match self.limit(&caller, request) {
            Some(refused) => Err(refused),
            None => Ok(caller),
        }
    }

    /// Refuses a read-only token's writes (403) and a caller over its rate (429, with the
    /// seconds to wait in `Retry-After`); /health and /ready are never limited.
    fn limit(&self, caller: &Caller, request: &Request) -> Option<Response> {
        let path = request.uri().path();
        if matches!(path, "/health" | "/ready") {
            return None;
        }
        let access = callers::access(request.method().as_str(), path);
        if access == Access::Write && caller.role() == Role::Read {
            return Some(
                ApiError::forbidden(format!(
                    "{} is read-only and {} {path} writes: it needs a token with role write \
                     (`ipvec token create --role write`) or the admin token",
                    caller.describe(),
                    request.method()
                ))
                .into_response(),
            );
        }
        let over = self
            .rates
            .as_ref()?
            .admit(caller, access, Instant::now())
            .err()?;
        if let Some(limited) = &self.limited {
            limited
                .get_or_create(&RateLimitedLabels {
                    scope: "api".into(),
                    kind: access.as_str().into(),
                })
                .inc();
        }
        let mut response = ApiError::rate_limited(over.message).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(over.retry_after_secs),
        );
        Some(response)
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The token of an `Authorization` value: the scheme `Bearer` in any case, then the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The address a request came from (unspecified when the server does not say).
fn client_address(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip())
}

/// Refuses requests from places the API does not serve, without the token, from a
/// read-only token that would write, and over their caller's rate; tells the handlers who
/// calls (a [`Caller`] extension).
pub async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let caller = match gate.refuse(&request) {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if let Some(response) = gate.limit(&caller, &request) {
        return refuse(request, response).await;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// What a route's request body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body is read (any body sent must still be JSON, so that forms cannot post).
    None,
    /// A JSON document.
    Json,
    /// A CAR v1 stream.
    Car,
}

/// The kinds of request that share a concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Cheap reads: not limited.
    Light,
    /// Searches (`api.max_concurrent_searches`).
    Search,
    /// Point writes and collection create/drop (`api.max_concurrent_writes`).
    Write,
    /// CAR import and export, fetches, pins and gc (`api.max_concurrent_heavy`).
    Heavy,
}

/// One kind's slots.
#[derive(Debug)]
pub struct Slots {
    kind: &'static str,
    key: &'static str,
    limit: usize,
    permits: Semaphore,
    wait: Duration,
}

/// The slots of every limited kind.
#[derive(Debug, Clone)]
pub struct Limits {
    search: Arc<Slots>,
    write: Arc<Slots>,
    heavy: Arc<Slots>,
}

impl Limits {
    /// The limits of `config`.
    pub fn new(config: &ApiConfig) -> Self {
        let wait = Duration::from_millis(config.queue_timeout_ms);
        let slots = |kind, key, n: u32| {
            let limit = n.max(1) as usize;
            Arc::new(Slots {
                kind,
                key,
                limit,
                permits: Semaphore::new(limit),
                wait,
            })
        };
        Self {
            search: slots(
                "searches",
                "api.max_concurrent_searches",
                config.max_concurrent_searches,
            ),
            write: slots(
                "writes",
                "api.max_concurrent_writes",
                config.max_concurrent_writes,
            ),
            heavy: slots(
                "heavy requests (imports, exports, fetches, pins, gc)",
                "api.max_concurrent_heavy",
                config.max_concurrent_heavy,
            ),
        }
    }

    /// The slots of `kind`, if it is limited.
    pub fn of(&self, kind: Kind) -> Option<Arc<Slots>> {
        match kind {
            Kind::Light => None,
            Kind::Search => Some(self.search.clone()),
            Kind::Write => Some(self.write.clone()),
            Kind::Heavy => Some(self.heavy.clone()),
        }
    }
}

/// A route's own rules: the body it takes and the slots it shares.
#[derive(Debug, Clone)]
pub struct RouteRules {
    /// The body the route reads.
    pub body: BodyKind,
    /// The longest body it takes (`api.max_body_bytes`), if limited.
    pub max_body: Option<u64>,
    /// Its kind's slots, if limited.
    pub slots: Option<Arc<Slots>>,
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = header_text(headers, header::CONTENT_TYPE)?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || header_text(headers, header::CONTENT_LENGTH)
            .is_some_and(|n| n.trim().parse::<u64>().map_or(true, |n| n > 0))
}

/// The first reason to refuse `request`'s body on a route that reads `body`, if any.
fn refuse_body(request: &Request, body: BodyKind) -> Option<ApiError> {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if !changes_state || (body == BodyKind::None && !has_body(request)) {
        return None;
    }
    let media = media_type(request.headers());
    let json =
        |m: &str| m == "application/json" || m.ends_with("+json") || m.ends_with(".dag-json");
    let (ok, wanted) = match body {
        BodyKind::None | BodyKind::Json => (media.as_deref().is_some_and(json), "application/json"),
        BodyKind::Car => (
            media.as_deref().is_some_and(|m| {
                m == super::server::CAR_MEDIA_TYPE || m == "application/octet-stream"
            }),
            super::server::CAR_MEDIA_TYPE,
        ),
    };
    (!ok).then(|| {
        ApiError::unsupported_media_type(format!(
            "this route takes `Content-Type: {wanted}` (got {}); requests that change state \
             never take other body types, so that web pages cannot send them",
            media.map_or("none".to_string(), |m| format!("{m:?}"))
        ))
    })
}

/// Checks the body type and declared length, then waits for a slot of the route's kind (at
/// most `api.queue_timeout_ms`) and runs the request in it. A request refused here has its
/// body read and dropped first (see [`refuse`]).
pub async fn route_rules(
    State(rules): State<RouteRules>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(error) = refuse_body(&request, rules.body) {
        return refuse(request, error.into_response()).await;
    }
    if let Some(error) = refuse_length(&request, rules.max_body) {
        return refuse(request, error.into_response()).await;
    }
    let Some(slots) = rules.slots else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let permit = match tokio::time::timeout(slots.wait, slots.permits.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            let mut response = ApiError::busy(format!(
                "too many {} are running (the limit is {}, {}); none finished within {} ms; \
                 try again shortly",
                slots.kind,
                slots.limit,
                slots.key,
                started.elapsed().as_millis()
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return refuse(request, response).await;
        }
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// Most of a refused request's body read before answering, and for how long.
const REFUSED_BODY_BYTES: usize = 64 << 20;
const REFUSED_BODY_TIME: Duration = Duration::from_secs(5);

/// The 413 for a body whose `Content-Length` is over `max_body`, before any of it is read.
fn refuse_length(request: &Request, max_body: Option<u64>) -> Option<ApiError> {
    let max = max_body?;
    let length = header_text(request.headers(), header::CONTENT_LENGTH)?
        .trim()
        .parse::<u64>()
        .ok()?;
    (length > max).then(|| {
        ApiError::too_large(format!(
            "the request body is {length} bytes, over the daemon's limit of {max} \
             (api.max_body_bytes); send smaller batches"
        ))
    })
}

/// `response`, sent once `request`'s body has been read and dropped (at most
/// [`REFUSED_BODY_BYTES`] within [`REFUSED_BODY_TIME`]). A server that answers and closes
/// while the client is still sending makes the client's write fail (a broken pipe or a
/// reset) before it reads the answer, so the client would see a dropped connection instead
/// of the error that says what to do.
async fn refuse(request: Request, response: Response) -> Response {
    use futures::StreamExt;
    let mut body = request.into_body().into_data_stream();
    let _ = tokio::time::timeout(REFUSED_BODY_TIME, async {
        let mut read = 0;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > REFUSED_BODY_BYTES {
                break;
            }
        }
    })
    .await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(hosts: &[&str], origins: &[&str]) -> Gate {
        let config = ApiConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..ApiConfig::default()
        };
        Gate::new(&config, None)
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_listed() {
        let g = gate(&["ipvec.example"], &[]);
        for ok in [
            "127.0.0.1:5080",
            "127.0.0.1",
            "[::1]:5080",
            "10.1.2.3:80",
            "localhost:5080",
            "LOCALHOST",
            "api.localhost:1",
            "ipvec.example:5080",
            "ipvec.example.",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:5080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        assert!(gate(&["*"], &[]).host_allowed("anything.example"));
    }

    #[test]
    fn origins_must_be_listed() {
        let g = gate(&[], &["https://app.example"]);
        assert!(g.origin_allowed("https://app.example"));
        assert!(g.origin_allowed("HTTPS://APP.EXAMPLE/"));
        assert!(!g.origin_allowed("https://evil.example"));
        assert!(!g.origin_allowed("null"));
        assert!(!gate(&[], &[]).origin_allowed("http://127.0.0.1:5080"));
    }

    /// A kind at its limit answers 503 with Retry-After once its queue time is over, while
    /// other kinds are served; a freed slot serves again. The clock is virtual.
    #[tokio::test(start_paused = true)]
    async fn a_kind_at_its_limit_is_busy_while_other_kinds_run() {
        use axum::{routing::get, Router};
        let config = ApiConfig {
            max_concurrent_heavy: 1,
            queue_timeout_ms: 5_000,
            ..ApiConfig::default()
        };
        let limits = Limits::new(&config);
        let (entered_tx, mut entered) = tokio::sync::mpsc::channel::<()>(4);
        let release = Arc::new(tokio::sync::Notify::new());
        let slow = {
            let release = release.clone();
            move || async move {
                let _ = entered_tx.send(()).await;
                release.notified().await;
                "done"
            }
        };
        let rules = |kind| RouteRules {
            body: BodyKind::None,
            max_body: None,
            slots: limits.of(kind),
        };
        let app = Router::new()
            .route(
                "/heavy",
                get(slow).layer(axum::middleware::from_fn_with_state(
                    rules(Kind::Heavy),
                    route_rules,
                )),
            )
            .route(
                "/search",
                get(|| async { "ok" }).layer(axum::middleware::from_fn_with_state(
                    rules(Kind::Search),
                    route_rules,
                )),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let first = tokio::spawn(http.get(format!("{base}/heavy")).send());
        entered.recv().await.unwrap();

        let busy = http.get(format!("{base}/heavy")).send().await.unwrap();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let body: serde_json::Value = busy.json().await.unwrap();
        assert_eq!(body["error"]["code"], "busy");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api.max_concurrent_heavy"));
        let search = http.get(format!("{base}/search")).send().await.unwrap();
        assert_eq!(search.status(), 200, "another kind is served meanwhile");

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        let again = tokio::spawn(http.get(format!("{base}/heavy")).send());
        entered.recv().await.unwrap();
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), 200);
    }

    #[test]
    fn bearer_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
