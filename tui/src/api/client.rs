//! A small HTTP client of the node's API: the requests the dashboard makes, each with a
//! timeout, and the log stream. Failures say whether the node could not be reached at all
//! (the dashboard then shows its banner and retries) or answered with an error.

use std::{path::PathBuf, time::Duration};

use futures::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use super::{
    sse::SseParser,
    types::{
        CollectionList, ErrorBody, IdInfo, LogLine, NodeInfo, PeerList, PointOut, SearchRequest,
        SearchResponse, ShardMap,
    },
};

/// How long an ordinary request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a search (and the point lookup before it) may take.
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shard map may take: the node asks the DHT for each shard's holders.
pub const SHARD_MAP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the dashboard finds the daemon's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A fixed URL (`ipvec --api URL tui`).
    Url(String),
    /// The file a repository's daemon writes its URL into (`DIR/api`), read again at each
    /// reconnection, so a restarted daemon on another port is found.
    ApiFile(PathBuf),
}

impl Endpoint {
    /// The endpoint for people: the URL, or the API file's path.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Url(url) => url.clone(),
            Endpoint::ApiFile(path) => path.display().to_string(),
        }
    }

    /// The API's base URL now, without a trailing slash.
    pub fn resolve(&self) -> Result<String, ClientError> {
        let url = match self {
            Endpoint::Url(url) => url.clone(),
            Endpoint::ApiFile(path) => match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
                Ok(_) | Err(_) => return Err(ClientError::NoDaemon(path.clone())),
            },
        };
        Ok(url.trim_end_matches('/').to_string())
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No daemon runs for the repository: its API file is missing.
    #[error("no daemon is running for this repository ({} is missing): start one with `ipvec daemon`", .0.display())]
    NoDaemon(PathBuf),
    /// The node did not answer: refused, reset, timed out.
    #[error("{0}")]
    Unreachable(String),
    /// The node answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code (`not_found`, …), if the body had one.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The answer was not what the dashboard expected.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether the node could not be reached (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::NoDaemon(_) | ClientError::Unreachable(_))
    }

    /// Whether the node answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }

    fn from_reqwest(e: reqwest::Error) -> ClientError {
        if e.is_decode() {
            return ClientError::Decode(e.to_string());
        }
        // reqwest's message is "error sending request for url (…)"; the cause says why.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message = cause.to_string();
            source = cause.source();
        }
        if e.is_timeout() {
            message = "timed out".to_string();
        }
        ClientError::Unreachable(message)
    }
}

/// A client of one API base URL.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A reqwest client with the dashboard's settings, shared by every [`ApiClient`].
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("ipvec-tui/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Unreachable(format!("cannot make an HTTP client: {e}")))
}

impl ApiClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:5080`).
    pub fn new(http: reqwest::Client, base: String, token: Option<String>) -> ApiClient {
        ApiClient { http, base, token }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError::Unreachable(format!("bad API URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Unreachable(format!("bad API URL {}", self.base)))?
            .pop_if_empty()
            .extend(segments);
        let builder = self.http.request(method, url);
        Ok(match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        })
    }

    async fn send(builder: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = builder.send().await.map_err(ClientError::from_reqwest)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), text.trim().to_string()),
        };
        let message = if message.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_string()
        } else {
            message
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let builder = self
            .request(Method::GET, segments)?
            .timeout(REQUEST_TIMEOUT);
        Self::send(builder)
            .await?
            .json()
            .await
            .map_err(ClientError::from_reqwest)
    }

    /// `GET /v1/node`.
    pub async fn node(&self) -> Result<NodeInfo, ClientError> {
        self.get(&["v1", "node"]).await
    }

    /// `GET /v1/collections`.
    pub async fn collections(&self) -> Result<CollectionList, ClientError> {
        self.get(&["v1", "collections"]).await
    }

    /// `GET /v1/id`; a node without the peer-to-peer layer answers 404.
    pub async fn id(&self) -> Result<IdInfo, ClientError> {
        self.get(&["v1", "id"]).await
    }

    /// `GET /v1/peers`; a node without the peer-to-peer layer answers 404, one whose
    /// peer-to-peer layer is not running 503.
    pub async fn peers(&self) -> Result<PeerList, ClientError> {
        self.get(&["v1", "peers"]).await
    }

    /// `GET /v1/collections/{name}/shards`: who holds each shard of a collection.
    pub async fn shard_map(&self, collection: &str) -> Result<ShardMap, ClientError> {
        let builder = self
            .request(Method::GET, &["v1", "collections", collection, "shards"])?
            .timeout(SHARD_MAP_TIMEOUT);
        Self::send(builder)
            .await?
            .json()
            .await
            .map_err(ClientError::from_reqwest)
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let builder = self
            .request(Method::GET, &["metrics"])?
            .timeout(REQUEST_TIMEOUT);
        Self::send(builder)
            .await?
            .text()
            .await
            .map_err(ClientError::from_reqwest)
    }

    /// `GET /v1/collections/{name}/points/{id}`.
    pub async fn point(&self, collection: &str, id: &str) -> Result<PointOut, ClientError> {
        let builder = self
            .request(
                Method::GET,
                &["v1", "collections", collection, "points", id],
            )?
            .timeout(SEARCH_TIMEOUT);
        Self::send(builder)
            .await?
            .json()
            .await
            .map_err(ClientError::from_reqwest)
    }

    /// `POST /v1/collections/{name}/search`.
    pub async fn search(
        &self,
        collection: &str,
        request: &SearchRequest,
    ) -> Result<SearchResponse, ClientError> {
        let builder = self
            .request(Method::POST, &["v1", "collections", collection, "search"])?
            .timeout(SEARCH_TIMEOUT)
            .json(request);
        Self::send(builder)
            .await?
            .json()
            .await
            .map_err(ClientError::from_reqwest)
    }

    /// `GET /v1/logs?level=…`: the node's kept log lines, then live ones, until the stream
    /// ends or fails.
    pub async fn logs(
        &self,
        level: &str,
    ) -> Result<impl Stream<Item = Result<LogLine, ClientError>> + use<>, ClientError> {
        let builder = self
            .request(Method::GET, &["v1", "logs"])?
            .query(&[("level", level)]);
        let response = Self::send(builder).await?;
        let mut parser = SseParser::default();
        Ok(response.bytes_stream().flat_map(move |chunk| {
            let items: Vec<Result<LogLine, ClientError>> = match chunk {
                Ok(bytes) => parser
                    .push(&bytes)
                    .into_iter()
                    .filter(|event| event.event == "log")
                    .map(|event| {
                        serde_json::from_str(&event.data)
                            .map_err(|e| ClientError::Decode(format!("log line: {e}")))
                    })
                    .collect(),
                Err(e) => vec![Err(ClientError::from_reqwest(e))],
            };
            futures::stream::iter(items)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_api_file_is_read_at_each_resolve() {
        let dir = std::env::temp_dir().join(format!("ipvec-tui-endpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("api");
        let endpoint = Endpoint::ApiFile(file.clone());
        assert!(matches!(endpoint.resolve(), Err(ClientError::NoDaemon(_))));
        std::fs::write(&file, "http://127.0.0.1:5080/\n").unwrap();
        assert_eq!(endpoint.resolve().unwrap(), "http://127.0.0.1:5080");
        std::fs::write(&file, "http://127.0.0.1:6000\n").unwrap();
        assert_eq!(endpoint.resolve().unwrap(), "http://127.0.0.1:6000");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_segments_are_escaped() {
        let client = ApiClient::new(reqwest::Client::new(), "http://127.0.0.1:1/".into(), None);
        let request = client
            .request(Method::GET, &["v1", "collections", "c", "points", "a b/c"])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:1/v1/collections/c/points/a%20b%2Fc"
        );
        // `id:"42"`, the string id 42, stays quoted for the node to read it as a string.
        let request = client
            .request(Method::GET, &["v1", "collections", "c", "points", "\"42\""])
            .unwrap()
            .build()
            .unwrap();
        assert!(request.url().as_str().ends_with("/points/%2242%22"));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = ApiClient::new(
            http_client().unwrap(),
            format!("http://127.0.0.1:{port}"),
            None,
        );
        let e = client.node().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
    }
}
