//! Text collections: the texts of points and queries turned into vectors with the model the
//! collection's manifest names, by this node, before a write or a search runs. A federated
//! search embeds its question here once and sends the peers the vector.

use ipvec_protocol::{
    api::{PointIn, SearchRequest},
    manifest::EmbeddingModel,
};

use super::{Error, Node};
use crate::collection::CollectionError;

impl Node {
    /// The embedding model (none for a collection of vectors) and dimension of collection
    /// `name`, held here.
    pub(super) async fn text_model(
        &self,
        name: &str,
    ) -> Result<(Option<EmbeddingModel>, u32), Error> {
        let shared = self.collection(name).await?;
        let c = shared.read().await;
        let manifest = c.manifest();
        Ok((manifest.embedding.clone(), manifest.dimension))
    }

    /// One vector per text, made by `model` (collection `what`'s; none for a collection of
    /// vectors, which is refused), each checked to have the collection's `dimension`.
    pub(super) async fn embed_texts(
        &self,
        what: &str,
        model: Option<&EmbeddingModel>,
        dimension: u32,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, Error> {
        let Some(model) = model else {
            return Err(Error::invalid(format!(
                "collection {what} holds vectors, not texts: it was created without an \
                 embedding model, so give a vector (or create a text collection with \
                 `ipvec collection create NAME --embedding local`)"
            )));
        };
        let embedder = self.inner.models.get(model).await?;
        let vectors = embedder.embed(texts).await?;
        if let Some(wrong) = vectors.iter().find(|v| v.len() != dimension as usize) {
            return Err(Error::unavailable(format!(
                "model {} gave a {}-dimensional vector, and collection {what} holds \
                 {dimension}-dimensional ones; the node's embedding settings serve another \
                 model than the one the collection was made with",
                model.id(),
                wrong.len()
            )));
        }
        self.inner.metrics.embedded(texts.len() as u64);
        Ok(vectors)
    }

    /// Gives each point of a batch for collection `name` that has a text and no vector the
    /// text's embedding; a point with neither is refused, named by its position.
    pub(super) async fn embed_points(
        &self,
        name: &str,
        points: &mut [PointIn],
    ) -> Result<(), Error> {
        let mut texts = Vec::new();
        let mut at = Vec::new();
        for (position, point) in points.iter().enumerate() {
            if !point.vector.is_empty() {
                continue;
            }
            match &point.text {
                Some(text) => {
                    texts.push(text.clone());
                    at.push(position);
                }
                None => {
                    return Err(CollectionError::BadPoint {
                        position,
                        id: point.id.to_string(),
                        reason: "no vector: give `vector`, `vector_b64` or, in a text \
                                 collection, `text`"
                            .into(),
                    }
                    .into())
                }
            }
        }
        if texts.is_empty() {
            return Ok(());
        }
        let (model, dimension) = {
            let shared = self.collection(name).await?;
            let c = shared.read().await;
            // A replica refuses the write anyway: do not embed for nothing.
            if !c.writable() {
                return Err(CollectionError::ReadOnly(name.to_string()).into());
            }
            (c.manifest().embedding.clone(), c.manifest().dimension)
        };
        let vectors = self
            .embed_texts(name, model.as_ref(), dimension, &texts)
            .await?;
        for (position, vector) in at.into_iter().zip(vectors) {
            points[position].vector = vector;
        }
        Ok(())
    }

    /// Sets the vector of each request that gives a `text` instead (collection `what`'s,
    /// whose `model` and `dimension` they are), embedding all of their texts at once.
    pub(super) async fn embed_queries(
        &self,
        what: &str,
        model: Option<&EmbeddingModel>,
        dimension: u32,
        requests: &mut [SearchRequest],
    ) -> Result<(), Error> {
        let mut texts = Vec::new();
        let mut at = Vec::new();
        for (i, request) in requests.iter_mut().enumerate() {
            if let Some(text) = request.text.take() {
                texts.push(text);
                at.push(i);
            }
        }
        if texts.is_empty() {
            return Ok(());
        }
        let vectors = self.embed_texts(what, model, dimension, &texts).await?;
        for (i, vector) in at.into_iter().zip(vectors) {
            requests[i].vector = vector;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use axum::{routing::post, Json, Router};
    use serde_json::{json, Value};

    use super::*;
    use crate::repo::Repo;

    /// An OpenAI-style embedding server that answers its first request (the probe of the
    /// collection's dimension) and never the others.
    async fn answers_once() -> String {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new().route(
            "/v1/embeddings",
            post(move |Json(body): Json<Value>| {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                        std::future::pending::<()>().await;
                    }
                    let n = body["input"].as_array().map_or(0, Vec::len);
                    let data: Vec<Value> = (0..n)
                        .map(|i| json!({"index": i, "embedding": [1.0, 0.0, 0.5, 0.25]}))
                        .collect();
                    Json(json!({"object": "list", "data": data}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_question_embedded_past_the_deadline_is_stopped_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("repo")).await.unwrap();
        let mut config = repo.config().clone();
        config.embedding.http_url = answers_once().await;
        config.embedding.http_api = "openai".into();
        config.embedding.http_model = "m".into();
        config.embedding.cache_entries = 0;
        let node = Node::new(repo, config);
        let create: ipvec_protocol::api::CreateCollection =
            serde_json::from_value(json!({"name": "notes", "embedding": "http"})).unwrap();
        node.create_collection(create).await.unwrap();

        let mut request = SearchRequest::text("where do owls sleep?");
        request.deadline_ms = Some(300);
        let err = node.search("notes", request).await.unwrap_err();
        assert!(
            matches!(&err, Error::DeadlineExceeded(m) if m.contains("embedding the question")
                && m.contains("300 ms")),
            "{err:?}"
        );
        node.close().await.unwrap();
    }
}
