//! A client of a running daemon's HTTP API, used by the CLI when a daemon holds the
//! repository. Each call mirrors a [`Node`](crate::ops::Node) operation and fails with the
//! same [`Error`] the operation failed with in the daemon.

use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;

use super::types::*;
use crate::ops::Error;

/// A daemon's API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the API at `base` (`http://127.0.0.1:5080`), sending `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; a non-2xx answer becomes the daemon's error.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            Error::unavailable(format!("cannot reach the daemon at {}: {e}", self.base))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => Error::from_code(&error.code, error.message, error.point),
            Err(_) => Error::internal(format!(
                "the daemon answered {status}: {}",
                String::from_utf8_lossy(&body)
            )),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| Error::internal(format!("cannot read the daemon's answer: {e}")))
    }

    fn name(name: &str) -> String {
        // Collection names are letters, digits, '-' and '_'; anything else is refused by the
        // daemon, but must still form a valid URL.
        name.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Whether the daemon answers `/health` within `timeout`.
    pub async fn alive(&self, timeout: Duration) -> bool {
        self.http
            .get(self.url("/health"))
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /v1/node`.
    pub async fn node_info(&self) -> Result<NodeInfo, Error> {
        self.json(self.http.get(self.url("/v1/node"))).await
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<crate::repo::Config, Error> {
        self.json(self.http.get(self.url("/v1/config"))).await
    }

    /// `GET /v1/jobs`.
    pub async fn jobs(&self) -> Result<JobList, Error> {
        self.json(self.http.get(self.url("/v1/jobs"))).await
    }

    /// `GET /v1/id`.
    pub async fn id(&self) -> Result<IdInfo, Error> {
        self.json(self.http.get(self.url("/v1/id"))).await
    }

    /// `POST /v1/collections/fetch`.
    pub async fn fetch_collection(
        &self,
        id: &str,
        name: Option<String>,
        from: &[String],
    ) -> Result<CollectionImported, Error> {
        let body = FetchCollection {
            id: id.to_string(),
            name,
            from: from.to_vec(),
        };
        self.json(
            self.http
                .post(self.url("/v1/collections/fetch"))
                .json(&body),
        )
        .await
    }

    /// `POST /v1/dag/fetch`.
    pub async fn dag_fetch(&self, cid: &str, from: &[String]) -> Result<Fetched, Error> {
        let body = DagFetch {
            cid: cid.to_string(),
            from: from.to_vec(),
        };
        self.json(self.http.post(self.url("/v1/dag/fetch")).json(&body))
            .await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<PeerList, Error> {
        self.json(self.http.get(self.url("/v1/peers"))).await
    }

    /// `POST /v1/peers/connect`.
    pub async fn connect(&self, address: &str) -> Result<Connected, Error> {
        let body = Connect {
            address: address.to_string(),
        };
        self.json(self.http.post(self.url("/v1/peers/connect")).json(&body))
            .await
    }

    /// `GET /v1/dht/providers/{cid}`.
    pub async fn providers(&self, cid: &str) -> Result<ProviderList, Error> {
        let path = format!("/v1/dht/providers/{}", Self::name(cid));
        self.json(self.http.get(self.url(&path))).await
    }

    /// `POST /v1/collections`.
    pub async fn create_collection(
        &self,
        request: &CreateCollection,
    ) -> Result<CollectionInfo, Error> {
        self.json(self.http.post(self.url("/v1/collections")).json(request))
            .await
    }

    /// `GET /v1/collections`.
    pub async fn list_collections(&self) -> Result<CollectionList, Error> {
        self.json(self.http.get(self.url("/v1/collections"))).await
    }

    /// `GET /v1/collections/{name}`.
    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        let path = format!("/v1/collections/{}", Self::name(name));
        self.json(self.http.get(self.url(&path))).await
    }

    /// `GET /v1/collections/{name}/log`.
    pub async fn collection_log(&self, name: &str) -> Result<VersionList, Error> {
        let path = format!("/v1/collections/{}/log", Self::name(name));
        self.json(self.http.get(self.url(&path))).await
    }

    /// `DELETE /v1/collections/{name}`.
    pub async fn drop_collection(&self, name: &str) -> Result<Dropped, Error> {
        let path = format!("/v1/collections/{}", Self::name(name));
        self.json(self.http.delete(self.url(&path))).await
    }

    /// `PUT /v1/collections/{name}/points`.
    pub async fn upsert(&self, name: &str, points: Vec<PointIn>) -> Result<WriteResult, Error> {
        let path = format!("/v1/collections/{}/points", Self::name(name));
        let body = UpsertPoints { points };
        self.json(self.http.put(self.url(&path)).json(&body)).await
    }

    /// `POST /v1/collections/{name}/points/delete`.
    pub async fn delete(&self, name: &str, ids: Vec<PointId>) -> Result<WriteResult, Error> {
        let path = format!("/v1/collections/{}/points/delete", Self::name(name));
        let body = DeletePoints { ids };
        self.json(self.http.post(self.url(&path)).json(&body)).await
    }

    /// `GET /v1/collections/{name}/points/{id}`.
    pub async fn get_point(&self, name: &str, id: &PointId) -> Result<PointOut, Error> {
        let path = format!(
            "/v1/collections/{}/points/{}",
            Self::name(name),
            Self::name(&id.spelled())
        );
        self.json(self.http.get(self.url(&path))).await
    }

    /// `POST /v1/collections/{name}/search`.
    pub async fn search(
        &self,
        name: &str,
        request: &SearchRequest,
    ) -> Result<SearchResponse, Error> {
        let path = format!("/v1/collections/{}/search", Self::name(name));
        self.json(self.http.post(self.url(&path)).json(request))
            .await
    }

    /// `GET /v1/collections/{name}/export` or `/v1/dag/{cid}/export`: the CAR as a stream.
    pub async fn export(
        &self,
        what: ExportTarget<'_>,
    ) -> Result<impl Stream<Item = reqwest::Result<bytes::Bytes>>, Error> {
        let path = match what {
            ExportTarget::Collection(name) => {
                format!("/v1/collections/{}/export", Self::name(name))
            }
            ExportTarget::Dag(cid) => format!("/v1/dag/{}/export", Self::name(cid)),
        };
        Ok(self
            .send(self.http.get(self.url(&path)))
            .await?
            .bytes_stream())
    }

    /// `POST /v1/dag/import`: a CAR streamed from `body`.
    pub async fn import_car(
        &self,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<CarImported, Error> {
        let mut request = self
            .http
            .post(self.url("/v1/dag/import"))
            .header(reqwest::header::CONTENT_TYPE, super::server::CAR_MEDIA_TYPE)
            .body(body);
        if let Some(n) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, n);
        }
        self.json(request).await
    }

    /// `POST /v1/collections/import`: a collection export streamed from `body`.
    pub async fn import_collection(
        &self,
        body: reqwest::Body,
        length: Option<u64>,
        name: Option<&str>,
    ) -> Result<CollectionImported, Error> {
        let mut request = self
            .http
            .post(self.url("/v1/collections/import"))
            .header(reqwest::header::CONTENT_TYPE, super::server::CAR_MEDIA_TYPE)
            .body(body);
        if let Some(name) = name {
            request = request.query(&[("name", name)]);
        }
        if let Some(n) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, n);
        }
        self.json(request).await
    }

    /// `POST /v1/dag`.
    pub async fn dag_put(&self, dag_json: Vec<u8>, pin: bool) -> Result<DagPut, Error> {
        let request = self
            .http
            .post(self.url("/v1/dag"))
            .query(&[("pin", pin)])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(dag_json);
        self.json(request).await
    }

    /// `GET /v1/dag/{cid}`: DAG-JSON.
    pub async fn dag_get(&self, cid: &str) -> Result<Vec<u8>, Error> {
        let path = format!("/v1/dag/{}", Self::name(cid));
        let response = self.send(self.http.get(self.url(&path))).await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| Error::internal(format!("cannot read the daemon's answer: {e}")))
    }

    /// `GET /v1/blocks/{cid}`.
    pub async fn block_stat(&self, cid: &str) -> Result<BlockStat, Error> {
        let path = format!("/v1/blocks/{}", Self::name(cid));
        self.json(self.http.get(self.url(&path))).await
    }

    /// `GET /v1/pins`.
    pub async fn pins(&self) -> Result<PinList, Error> {
        self.json(self.http.get(self.url("/v1/pins"))).await
    }

    /// `POST /v1/pins/{cid}`.
    pub async fn pin_add(&self, cid: &str) -> Result<Pin, Error> {
        let path = format!("/v1/pins/{}", Self::name(cid));
        self.json(self.http.post(self.url(&path))).await
    }

    /// `DELETE /v1/pins/{cid}`.
    pub async fn pin_rm(&self, cid: &str) -> Result<Pin, Error> {
        let path = format!("/v1/pins/{}", Self::name(cid));
        self.json(self.http.delete(self.url(&path))).await
    }

    /// `POST /v1/gc`.
    pub async fn gc(&self) -> Result<GcResult, Error> {
        self.json(self.http.post(self.url("/v1/gc"))).await
    }
}

/// Whether the daemon at `url` (`http://host:port`) answers `/ready` with 200: a plain
/// HTTP/1.0 request over a blocking socket, for callers without an async runtime (scripts,
/// tests, benchmarks waiting for a daemon to start).
pub fn ready_blocking(url: &str, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    if stream.write_all(b"GET /ready HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .lines()
        .next()
        .is_some_and(|status| status.split(' ').nth(1) == Some("200"))
}

/// What to export as a CAR.
#[derive(Debug, Clone, Copy)]
pub enum ExportTarget<'a> {
    /// A collection's current version (root: its signed head).
    Collection(&'a str),
    /// The DAG under a CID.
    Dag(&'a str),
}
