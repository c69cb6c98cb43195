//! The HTTP provider and the cache against a real server on loopback that speaks the
//! OpenAI and Ollama embedding APIs and answers from a script. Timeouts and pauses run in
//! tokio's virtual time.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::*;

/// One scripted answer.
#[derive(Debug, Clone)]
enum Reply {
    /// Embeddings of this dimension.
    Vectors(usize),
    /// This status and body, with a `Retry-After` header when given.
    Error(u16, String, Option<u64>),
    /// No answer for an hour.
    Hang,
    /// 200 with this body.
    Raw(String),
}

#[derive(Debug, Default)]
struct Script {
    replies: VecDeque<Reply>,
    /// The inputs of every request, in order.
    requests: Vec<Vec<String>>,
    /// The Authorization header of the last request.
    auth: Option<String>,
}

type Shared = Arc<Mutex<Script>>;

/// A test vector for a text: its length, its first byte, then ones.
fn vector_of(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![1.0; dimension];
    v[0] = text.len() as f32;
    if dimension > 1 {
        v[1] = f32::from(text.bytes().next().unwrap_or(0));
    }
    v
}

async fn answer(state: Shared, headers: HeaderMap, body: Value, openai: bool) -> Response {
    let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
    let reply = {
        let mut script = state.lock().unwrap();
        script.requests.push(inputs.clone());
        script.auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        script.replies.pop_front().unwrap_or(Reply::Vectors(3))
    };
    match reply {
        Reply::Vectors(d) if openai => {
            // Listed last first: the client must order them by index.
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .rev()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(t, d)}))
                .collect();
            Json(json!({"object": "list", "data": data, "model": body["model"]})).into_response()
        }
        Reply::Vectors(d) => {
            let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| vector_of(t, d)).collect();
            Json(json!({"model": body["model"], "embeddings": embeddings})).into_response()
        }
        Reply::Error(status, text, retry_after) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            response
        }
        Reply::Raw(body) => body.into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// Starts the server on 127.0.0.1:0 with these scripted replies (then vectors of 3).
async fn server(replies: Vec<Reply>) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, replies)
}

/// Serves on `listener` with these scripted replies (then vectors of 3).
fn serve(listener: tokio::net::TcpListener, replies: Vec<Reply>) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Script {
        replies: replies.into(),
        ..Script::default()
    }));
    let app = Router::new()
        .route(
            "/v1/embeddings",
            post(
                |State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>| answer(s, h, b, true),
            ),
        )
        .route(
            "/api/embed",
            post(
                |State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>| {
                    answer(s, h, b, false)
                },
            ),
        )
        .with_state(state.clone());
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn settings(url: &str, api: HttpApi) -> HttpSettings {
    HttpSettings {
        url: url.to_string(),
        model: "test-model".into(),
        api,
        api_key: None,
        batch_size: 32,
        timeout: Duration::from_secs(2),
        max_retries: 3,
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn requests(state: &Shared) -> Vec<Vec<String>> {
    state.lock().unwrap().requests.clone()
}

#[tokio::test]
async fn both_apis_answer_in_order_in_batches_with_progress() {
    for api in [HttpApi::OpenAi, HttpApi::Ollama] {
        let (url, state) = server(vec![]).await;
        let embedder = HttpEmbedder::new(HttpSettings {
            batch_size: 2,
            api_key: Some("sk-test".into()),
            ..settings(&url, api)
        })
        .unwrap();
        let input = texts(&["a", "bb", "ccc", "dddd", "eeeee"]);
        let seen = Mutex::new(Vec::new());
        let vectors = embedder
            .embed_with_progress(&input, &|p| seen.lock().unwrap().push(p.done))
            .await
            .unwrap();
        let expected: Vec<Vec<f32>> = input.iter().map(|t| vector_of(t, 3)).collect();
        assert_eq!(vectors, expected, "{api:?}");
        let sizes: Vec<usize> = requests(&state).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1], "{api:?}");
        assert_eq!(*seen.lock().unwrap(), [2, 4, 5]);
        assert_eq!(
            state.lock().unwrap().auth.as_deref(),
            Some("Bearer sk-test")
        );
        assert_eq!(embedder.model().dimension, 3);
        assert_eq!(embedder.model().model, "test-model");
    }
}

#[tokio::test]
async fn an_error_answer_is_quoted_with_the_endpoint_and_not_retried() {
    let long = format!(
        "{{\"error\": \"model 'test-model' not found\"}}{}",
        "x".repeat(2_000)
    );
    let (url, state) = server(vec![Reply::Error(404, long, None)]).await;
    let embedder = HttpEmbedder::new(settings(&url, HttpApi::Ollama)).unwrap();
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, EmbedError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(message.contains(&format!("{url}/api/embed")), "{message}");
    assert!(
        message.contains("model 'test-model' not found"),
        "{message}"
    );
    assert!(message.len() < 800, "the answer is truncated: {message}");
    assert_eq!(requests(&state).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_times_out_is_tried_again_after_a_pause() {
    let (url, state) = server(vec![Reply::Hang]).await;
    let embedder = HttpEmbedder::new(settings(&url, HttpApi::OpenAi)).unwrap();
    let start = Instant::now();
    let vectors = embedder.embed(&texts(&["a"])).await.unwrap();
    assert_eq!(vectors, [vector_of("a", 3)]);
    assert_eq!(requests(&state).len(), 2);
    // The 2 s deadline, then the first pause (0.25 to 0.5 s: half of it jittered).
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2_250) && waited <= Duration::from_millis(2_500),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let (url, state) = server(vec![Reply::Error(429, "slow down".into(), Some(7))]).await;
    let embedder = HttpEmbedder::new(settings(&url, HttpApi::OpenAi)).unwrap();
    let start = Instant::now();
    embedder.embed(&texts(&["a", "b"])).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7_500),
        "{waited:?}"
    );
    assert_eq!(requests(&state).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_doubling_then_give_up() {
    let busy = Reply::Error(503, "overloaded".into(), None);
    let (url, state) = server(vec![busy.clone(), busy.clone(), busy]).await;
    let embedder = HttpEmbedder::new(HttpSettings {
        max_retries: 2,
        ..settings(&url, HttpApi::Ollama)
    })
    .unwrap();
    let start = Instant::now();
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Unreachable { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("overloaded"), "{err}");
    assert_eq!(requests(&state).len(), 3);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(750) && waited <= Duration::from_millis(1_500),
        "pauses of 0.25-0.5 s and 0.5-1 s: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_opens_its_breaker_and_calls_resume_once_it_answers() {
    use crate::{
        outbound::{BreakerState, Outbound, TargetKind},
        repo::OutboundConfig,
    };
    // A loopback port nothing listens on: connections are refused.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let outbound = Outbound::new(&OutboundConfig {
        breaker_failures: 3,
        breaker_open_ms: 30_000,
        ..OutboundConfig::default()
    });
    let embedder = HttpEmbedder::new(HttpSettings {
        max_retries: 0,
        ..settings(&url, HttpApi::Ollama)
    })
    .unwrap()
    .with_outbound(outbound.clone());
    let endpoint = embedder.endpoint().to_string();
    for i in 0..3 {
        let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
        assert!(
            matches!(err, EmbedError::Unreachable { .. }),
            "{i}: {err:?}"
        );
    }
    let state = |outbound: &Outbound| {
        outbound
            .report(TargetKind::Embedding)
            .iter()
            .map(|r| (r.target.clone(), r.state, r.failures))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        state(&outbound),
        [(endpoint.clone(), BreakerState::Open, 3)]
    );
    assert_eq!(outbound.opened(TargetKind::Embedding), 1);

    // The server comes up on that port, but the breaker is open: calls fail at once,
    // naming the endpoint, without reaching it.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (_, script) = serve(listener, vec![]);
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    let EmbedError::BreakerOpen(open) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(open.failures, 3);
    assert!(open.retry_in <= Duration::from_secs(30), "{open:?}");
    let message = err.to_string();
    assert!(
        message.contains(&endpoint) && message.contains("tried again in"),
        "{message}"
    );
    assert!(requests(&script).is_empty(), "nothing was sent");

    // Once the open time is over, the next call is the trial; it succeeds and closes it.
    tokio::time::advance(open.retry_in).await;
    let vectors = embedder.embed(&texts(&["a"])).await.unwrap();
    assert_eq!(vectors, [vector_of("a", 3)]);
    assert_eq!(requests(&script).len(), 1);
    assert!(state(&outbound).is_empty(), "closed, and forgotten");
    embedder.embed(&texts(&["b"])).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_retries_open_the_breaker_waits_for_the_trial() {
    use crate::{outbound::Outbound, repo::OutboundConfig};
    let busy = Reply::Error(502, "bad gateway".into(), None);
    let (url, state) = server(vec![busy.clone(), busy.clone(), busy]).await;
    let outbound = Outbound::new(&OutboundConfig {
        breaker_failures: 3,
        breaker_open_ms: 20_000,
        ..OutboundConfig::default()
    });
    let embedder = HttpEmbedder::new(HttpSettings {
        max_retries: 5,
        ..settings(&url, HttpApi::Ollama)
    })
    .unwrap()
    .with_outbound(outbound.clone());
    let start = Instant::now();
    let vectors = embedder.embed(&texts(&["a"])).await.unwrap();
    assert_eq!(vectors, [vector_of("a", 3)]);
    assert_eq!(requests(&state).len(), 4, "three failures, then the trial");
    assert!(
        start.elapsed() >= Duration::from_secs(20),
        "the fourth request waited for the breaker: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn vectors_of_another_length_than_before_are_refused() {
    let (url, _state) = server(vec![Reply::Vectors(3), Reply::Vectors(4)]).await;
    let embedder = HttpEmbedder::new(settings(&url, HttpApi::OpenAi)).unwrap();
    embedder.embed(&texts(&["a"])).await.unwrap();
    let err = embedder.embed(&texts(&["b"])).await.unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::DimensionMismatch {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_answer_of_another_api_is_a_clear_error() {
    let (url, _state) = server(vec![Reply::Raw(r#"{"data": []}"#.into())]).await;
    let embedder = HttpEmbedder::new(settings(&url, HttpApi::Ollama)).unwrap();
    let err = embedder.embed(&texts(&["a"])).await.unwrap_err();
    assert!(matches!(err, EmbedError::BadResponse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("embeddings") && message.contains("http_api"),
        "{message}"
    );
    let err = HttpEmbedder::new(HttpSettings {
        url: "localhost:11434".into(),
        ..settings(&url, HttpApi::Ollama)
    })
    .unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}

#[tokio::test]
async fn the_cache_sends_only_texts_it_has_not_seen() {
    let (url, state) = server(vec![]).await;
    let provider = Arc::new(HttpEmbedder::new(settings(&url, HttpApi::Ollama)).unwrap());
    let cached = CachedEmbedder::new(provider, EmbeddingCache::new(100));
    let first = cached.embed(&texts(&["a", "bb", "a"])).await.unwrap();
    assert_eq!(
        first,
        [vector_of("a", 3), vector_of("bb", 3), vector_of("a", 3)]
    );
    let second = cached.embed(&texts(&["bb", "ccc"])).await.unwrap();
    assert_eq!(second, [vector_of("bb", 3), vector_of("ccc", 3)]);
    cached.embed(&texts(&["ccc", "a"])).await.unwrap();
    assert_eq!(
        requests(&state),
        [texts(&["a", "bb"]), texts(&["ccc"])],
        "each text is sent once"
    );
    assert_eq!((cached.hits(), cached.misses()), (3, 4));
}

#[test]
fn from_config_names_what_is_missing() {
    let config = crate::repo::EmbeddingConfig::default();
    let err = from_config(&config, Some(ProviderKind::Local)).unwrap_err();
    assert!(matches!(err, EmbedError::ModelDirUnset), "{err:?}");
    assert!(err.to_string().contains("embedding.model_dir"), "{err}");
    let err = ProviderKind::from_name("magic").unwrap_err();
    assert!(err.to_string().contains("local or http"), "{err}");
}

#[tokio::test]
async fn a_text_collections_http_model_is_chosen_by_name_probed_and_kept() {
    let (url, state) = server(vec![Reply::Vectors(5), Reply::Vectors(5)]).await;
    let config = EmbeddingConfig {
        http_url: url,
        http_api: "openai".into(),
        http_model: "base".into(),
        cache_entries: 0,
        ..EmbeddingConfig::default()
    };
    let models = Models::new(config);
    let (model, dimension) = models.choose("http:tiny").await.unwrap();
    let tiny = EmbeddingModel {
        provider: "openai".into(),
        model: "tiny".into(),
        normalized: false,
    };
    assert_eq!(
        (model.clone(), dimension),
        (tiny, 5),
        "the server's answer gives the length"
    );
    assert_eq!(requests(&state).len(), 1, "one text asked for it");
    let (bare, _) = models.choose("http").await.unwrap();
    assert_eq!(
        bare.model, "base",
        "embedding.http_model when no model is named"
    );
    let first = models.get(&model).await.unwrap();
    let again = models.get(&model).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "one embedder per model, kept");

    // A collection embedded through another API than this node's, a model name that is no
    // provider, and the local model with no folder: each says what to change.
    let ollama = EmbeddingModel {
        provider: "ollama".into(),
        ..model
    };
    let err = models.get(&ollama).await.unwrap_err().to_string();
    assert!(err.contains("embedding.http_api"), "{err}");
    let err = models.choose("bert").await.unwrap_err().to_string();
    assert!(err.contains("http:MODEL"), "{err}");
    assert!(matches!(
        models.choose("local").await.unwrap_err(),
        EmbedError::ModelDirUnset
    ));
}
