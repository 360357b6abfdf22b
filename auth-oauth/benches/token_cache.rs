//! What the shared token cache saves: 800 token requests from 8 concurrent
//! tasks through one `TokenCache`, against the baseline of one endpoint
//! request each (what a client without a shared cache does per connection).
//! The endpoint is a wiremock server on loopback.
//!
//! `cargo bench -p mailgate-auth-oauth --bench token_cache`

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate_auth_oauth::{TokenCache, TokenClient, TokenClientConfig};
use mailgate_core::secrecy::SecretString;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TASKS: usize = 8;
const PER_TASK: usize = 100;

fn client(endpoint: &MockServer) -> TokenClient {
    TokenClient::new(TokenClientConfig::new(
        format!("{}/token", endpoint.uri()),
        "bench-client",
        SecretString::from("bench-secret".to_owned()),
        Some("https://outlook.office365.com/.default".to_owned()),
    ))
    .expect("token client")
}

async fn run_tasks<F, Fut>(f: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    f().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let endpoint = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&endpoint)
        .await;

    let baseline_client = Arc::new(client(&endpoint));
    let baseline = run_tasks(move || {
        let c = Arc::clone(&baseline_client);
        async move {
            c.fetch().await.expect("token");
        }
    })
    .await;
    let baseline_requests = endpoint.received_requests().await.unwrap_or_default().len();
    endpoint.reset().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&endpoint)
        .await;

    let cache = Arc::new(TokenCache::new(client(&endpoint)));
    let cached_cache = Arc::clone(&cache);
    let cached = run_tasks(move || {
        let c = Arc::clone(&cached_cache);
        async move {
            c.token().await.expect("token");
        }
    })
    .await;
    let cached_requests = endpoint.received_requests().await.unwrap_or_default().len();

    let n = TASKS * PER_TASK;
    println!("{n} token requests from {TASKS} concurrent tasks");
    println!(
        "baseline  fetch per use:   {baseline:>10.2?} total, {:>9.2?} per token, {baseline_requests} endpoint requests",
        baseline / n as u32
    );
    println!(
        "mailgate  shared cache:    {cached:>10.2?} total, {:>9.2?} per token, {cached_requests} endpoint requests",
        cached / n as u32
    );
    println!(
        "ratio     {:.0}x faster, {}x fewer endpoint requests",
        baseline.as_secs_f64() / cached.as_secs_f64(),
        baseline_requests / cached_requests.max(1)
    );
    assert_eq!(cache.fetch_count(), 1);
}
