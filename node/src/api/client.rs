//! A client of a running daemon's HTTP API, used by the CLI when a daemon holds the
//! repository. Each call mirrors a [`Node`](crate::ops::Node) operation and fails with the
//! same [`Error`] the operation failed with in the daemon.

use std::time::Duration;

use futures::{future::BoxFuture, Stream};
use serde::{de::DeserializeOwned, Serialize};

use super::types::*;
use crate::ops::{Error, Operations, Result};

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

    /// `GET path`, its JSON answer.
    fn get<T: DeserializeOwned + Send + 'static>(&self, path: &str) -> BoxFuture<'_, Result<T>> {
        Box::pin(self.json(self.http.get(self.url(path))))
    }

    /// `POST path` with a JSON body (or none), its JSON answer.
    fn post<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> BoxFuture<'_, Result<T>> {
        let request = self.http.post(self.url(path));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        Box::pin(self.json(request))
    }

    /// `DELETE path`, its JSON answer.
    fn delete_at<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> BoxFuture<'_, Result<T>> {
        Box::pin(self.json(self.http.delete(self.url(path))))
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
}

/// Over HTTP: each operation is its route of the daemon's API (see `/openapi.json`).
impl Operations for Client {
    fn node_info(&self) -> BoxFuture<'_, Result<NodeInfo>> {
        self.get("/v1/node")
    }

    fn config(&self) -> BoxFuture<'_, Result<crate::repo::Config>> {
        self.get("/v1/config")
    }

    fn jobs(&self) -> BoxFuture<'_, Result<JobList>> {
        self.get("/v1/jobs")
    }

    fn id(&self) -> BoxFuture<'_, Result<IdInfo>> {
        self.get("/v1/id")
    }

    fn peers(&self) -> BoxFuture<'_, Result<PeerList>> {
        self.get("/v1/peers")
    }

    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Connected>> {
        let body = Connect {
            address: address.to_string(),
        };
        self.post("/v1/peers/connect", Some(&body))
    }

    fn deny_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>> {
        self.post(&format!("/v1/peers/{}/deny", Self::name(peer)), None::<&()>)
    }

    fn allow_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>> {
        self.post(
            &format!("/v1/peers/{}/allow", Self::name(peer)),
            None::<&()>,
        )
    }

    fn denied_peers(&self) -> BoxFuture<'_, Result<DeniedPeerList>> {
        self.get("/v1/peers/denied")
    }

    fn providers<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<ProviderList>> {
        self.get(&format!("/v1/dht/providers/{}", Self::name(cid)))
    }

    fn dag_fetch<'a>(&'a self, cid: &'a str, from: &'a [String]) -> BoxFuture<'a, Result<Fetched>> {
        let body = DagFetch {
            cid: cid.to_string(),
            from: from.to_vec(),
        };
        self.post("/v1/dag/fetch", Some(&body))
    }

    fn fetch_collection<'a>(
        &'a self,
        id: &'a str,
        name: Option<String>,
        from: &'a [String],
        shards: Option<Vec<u32>>,
    ) -> BoxFuture<'a, Result<CollectionImported>> {
        let body = FetchCollection {
            id: id.to_string(),
            name,
            from: from.to_vec(),
            shards,
        };
        self.post("/v1/collections/fetch", Some(&body))
    }

    fn create_collection(
        &self,
        request: CreateCollection,
    ) -> BoxFuture<'_, Result<CollectionInfo>> {
        self.post("/v1/collections", Some(&request))
    }

    fn list_collections(&self) -> BoxFuture<'_, Result<CollectionList>> {
        self.get("/v1/collections")
    }

    fn collection_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<CollectionInfo>> {
        self.get(&format!("/v1/collections/{}", Self::name(name)))
    }

    fn collection_log<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<VersionList>> {
        self.get(&format!("/v1/collections/{}/log", Self::name(name)))
    }

    fn writers<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<WriterList>> {
        self.get(&format!("/v1/collections/{}/writers", Self::name(name)))
    }

    fn shard_map<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ShardMap>> {
        self.get(&format!("/v1/collections/{}/shards", Self::name(name)))
    }

    fn join(&self, request: JoinCollection) -> BoxFuture<'_, Result<MembershipInfo>> {
        Box::pin(async move { self.post("/v1/collections/join", Some(&request)).await })
    }

    fn leave<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>> {
        self.post(
            &format!("/v1/collections/{}/leave", Self::name(name)),
            None::<&()>,
        )
    }

    fn membership<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>> {
        self.get(&format!("/v1/collections/{}/membership", Self::name(name)))
    }

    fn change_writer<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        allow: bool,
    ) -> BoxFuture<'a, Result<WriterList>> {
        let path = format!(
            "/v1/collections/{}/writers/{}",
            Self::name(name),
            Self::name(key)
        );
        match allow {
            true => Box::pin(self.json(self.http.put(self.url(&path)))),
            false => self.delete_at(&path),
        }
    }

    fn set_quota<'a>(
        &'a self,
        name: &'a str,
        quota: CollectionQuota,
    ) -> BoxFuture<'a, Result<CollectionQuota>> {
        let path = format!("/v1/collections/{}/quota", Self::name(name));
        Box::pin(self.json(self.http.put(self.url(&path)).json(&quota)))
    }

    fn drop_collection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Dropped>> {
        self.delete_at(&format!("/v1/collections/{}", Self::name(name)))
    }

    fn upsert<'a>(
        &'a self,
        name: &'a str,
        points: Vec<PointIn>,
    ) -> BoxFuture<'a, Result<WriteResult>> {
        let path = format!("/v1/collections/{}/points", Self::name(name));
        // In `vector_b64`: half the bytes of JSON numbers, and no decimal text to parse.
        let body = UpsertPoints::compact(points);
        Box::pin(self.json(self.http.put(self.url(&path)).json(&body)))
    }

    fn delete<'a>(
        &'a self,
        name: &'a str,
        ids: Vec<PointId>,
    ) -> BoxFuture<'a, Result<WriteResult>> {
        let path = format!("/v1/collections/{}/points/delete", Self::name(name));
        self.post(&path, Some(&DeletePoints { ids }))
    }

    fn get_point<'a>(&'a self, name: &'a str, id: PointId) -> BoxFuture<'a, Result<PointOut>> {
        self.get(&format!(
            "/v1/collections/{}/points/{}",
            Self::name(name),
            Self::name(&id.spelled())
        ))
    }

    fn points_page<'a>(
        &'a self,
        name: &'a str,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'a, Result<PointPage>> {
        let path = format!("/v1/collections/{}/points/page", Self::name(name));
        self.post(&path, Some(&PagePoints { cursor, limit }))
    }

    fn search<'a>(
        &'a self,
        name: &'a str,
        request: SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResponse>> {
        let path = format!("/v1/collections/{}/search", Self::name(name));
        self.post(&path, Some(&request))
    }

    fn search_batch<'a>(
        &'a self,
        name: &'a str,
        request: BatchSearchRequest,
    ) -> BoxFuture<'a, Result<BatchSearchResponse>> {
        let path = format!("/v1/collections/{}/search/batch", Self::name(name));
        self.post(&path, Some(&request))
    }

    fn dag_put(&self, dag_json: Vec<u8>, pin: bool) -> BoxFuture<'_, Result<DagPut>> {
        let request = self
            .http
            .post(self.url("/v1/dag"))
            .query(&[("pin", pin)])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(dag_json);
        Box::pin(self.json(request))
    }

    fn dag_get<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        let path = format!("/v1/dag/{}", Self::name(cid));
        Box::pin(async move {
            let response = self.send(self.http.get(self.url(&path))).await?;
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| Error::internal(format!("cannot read the daemon's answer: {e}")))
        })
    }

    fn block_stat<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<BlockStat>> {
        self.get(&format!("/v1/blocks/{}", Self::name(cid)))
    }

    fn pins(&self) -> BoxFuture<'_, Result<PinList>> {
        self.get("/v1/pins")
    }

    fn pin_add<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>> {
        self.post(&format!("/v1/pins/{}", Self::name(cid)), None::<&()>)
    }

    fn pin_rm<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>> {
        self.delete_at(&format!("/v1/pins/{}", Self::name(cid)))
    }

    fn gc(&self) -> BoxFuture<'_, Result<GcResult>> {
        self.post("/v1/gc", None::<&()>)
    }

    fn backup_create(
        &self,
        request: crate::ops::backup::BackupRequest,
    ) -> BoxFuture<'_, Result<crate::ops::backup::BackupCreated>> {
        Box::pin(async move { self.post("/v1/backup", Some(&request)).await })
    }

    fn backup_restore(
        &self,
        request: crate::ops::backup::RestoreRequest,
    ) -> BoxFuture<'_, Result<crate::ops::backup::BackupRestored>> {
        Box::pin(async move { self.post("/v1/backup/restore", Some(&request)).await })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::{ops::Node, repo::Repo};

    /// The one operation list answers alike in process and over HTTP: the same values, and
    /// the same errors (kind, message, refused point), since the client reads the daemon's
    /// error bodies back into the operation's error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_client_answers_as_the_node_does() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("repo")).await.unwrap();
        let mut config = repo.config().clone();
        // Each search runs on both sides: with the search cache, the second would answer
        // `cached: true` and differ in that alone.
        config.search.cache_entries = 0;
        let node = Node::new(repo, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = super::super::server::router(node.clone(), None);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(&url, None).unwrap();
        let both: [&dyn Operations; 2] = [&node, &client];

        let create = json!({"name": "c", "dim": 2, "metric": "l2"});
        client
            .create_collection(serde_json::from_value(create).unwrap())
            .await
            .unwrap();
        let points = json!([{"id": 1, "vector": [0.0, 1.0]}, {"id": "b", "vector": [1.0, 0.0]}]);
        node.upsert("c", serde_json::from_value(points).unwrap())
            .await
            .unwrap();
        let search: SearchRequest =
            serde_json::from_value(json!({"vector": [0.0, 0.9], "k": 2})).unwrap();
        let bad_point = json!([{"id": 3, "vector": [1.0, 2.0, 3.0]}]);
        // JSON numbers cannot carry a NaN; the client's `vector_b64` brings it to the
        // daemon, which refuses it as the node does.
        let nan_point = vec![PointIn {
            id: PointId::Int(4),
            text: None,
            vector: vec![f32::NAN, 0.0],
            metadata: None,
        }];
        let bad_search: SearchRequest =
            serde_json::from_value(json!({"vector": [0.0, 0.9], "k": 0})).unwrap();

        let batch: BatchSearchRequest = serde_json::from_value(json!({
            "queries": [{"vector": [0.0, 0.9]}, {"vector_b64": crate::api::types::vectors::encode_b64(&[1.0, 0.1])}],
            "k": 2
        }))
        .unwrap();
        let bad_batch = BatchSearchRequest {
            queries: vec![
                BatchQuery::numbers(vec![0.0, 0.9]),
                BatchQuery::numbers(vec![1.0]),
            ],
            ..batch.clone()
        };

        let mut answers = Vec::new();
        for ops in both {
            answers.push((
                ops.collection_info("c").await.map(|mut c| {
                    // Measured at each call.
                    c.announced_secs_ago = None;
                    c
                }),
                ops.get_point("c", PointId::Int(1)).await,
                ops.search("c", search.clone()).await,
                ops.collection_info("missing").await,
                ops.get_point("c", PointId::from("nothing")).await,
                ops.upsert("c", serde_json::from_value(bad_point.clone()).unwrap())
                    .await,
                ops.search("c", bad_search.clone()).await,
                ops.dag_get("not-a-cid").await,
                ops.drop_collection("missing").await,
                ops.search_batch("c", batch.clone()).await,
                ops.search_batch("c", bad_batch.clone()).await,
                ops.upsert("c", nan_point.clone()).await,
            ));
        }
        let (in_process, over_http) = (&answers[0], &answers[1]);
        assert_eq!(in_process, over_http);
        assert_eq!(in_process.2.as_ref().unwrap().hits.len(), 2);
        assert!(matches!(in_process.3, Err(Error::NotFound(_))));
        assert!(matches!(in_process.4, Err(Error::NotFound(_))));
        let refused = in_process.5.as_ref().unwrap_err().point().unwrap();
        assert_eq!(refused.position, 0);
        assert!(matches!(in_process.6, Err(Error::Invalid(_))));
        assert!(matches!(in_process.7, Err(Error::Invalid(_))));
        // A batch answers what its queries answer alone, whichever form their vectors take.
        let mut alone = Vec::new();
        for vector in [vec![0.0, 0.9], vec![1.0, 0.1]] {
            let request = SearchRequest {
                k: 2,
                ..SearchRequest::new(vector)
            };
            alone.push(node.search("c", request).await.unwrap());
        }
        assert_eq!(in_process.9.as_ref().unwrap().results, alone);
        assert_ne!(
            alone[0].hits[0].id, alone[1].hits[0].id,
            "the queries differ"
        );
        let refused = in_process.10.as_ref().unwrap_err();
        assert!(
            matches!(refused, Error::Invalid(m) if m.starts_with("query 1 of the batch:")),
            "{refused:?}"
        );

        let refused = in_process.11.as_ref().unwrap_err().point().unwrap();
        assert_eq!(refused.position, 0);
        assert!(refused.reason.contains("component 0"), "{refused:?}");

        server.abort();
        node.close().await.unwrap();
    }
}
