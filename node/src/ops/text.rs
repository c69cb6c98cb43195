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
