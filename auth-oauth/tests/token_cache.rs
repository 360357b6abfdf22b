//! The token cache: reuse, single flight, refresh before expiry, back-off, invalidation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailgate_auth_oauth::{CachePolicy, Refusal, TokenCache, TokenClient};
use mailgate_core::secrecy::{ExposeSecret, SecretString};
use mailgate_core::{ErrorKind, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn cache(server: &MockServer, policy: CachePolicy) -> TokenCache {
    TokenCache::with_policy(TokenClient::new(config(&server.uri())).unwrap(), policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_response(TOKEN, 3600).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                // 100 requests over 8 tasks: 13 each for the first four, 12 for the rest.
                let n = if task < 4 { 13 } else { 12 };
                for _ in 0..n {
                    let token = cache.token().await.unwrap();
                    assert_eq!(token.expose_secret(), TOKEN);
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_before_use() {
    let server = MockServer::start().await;
    // 2 s lifetime: the 60 s margin is capped at half of it, so the token is
    // reused for 1 s and replaced while it is still valid.
    Mock::given(method("POST"))
        .respond_with(token_response("first-token", 2))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(token_response("second-token", 3600))
        .expect(1)
        .mount(&server)
        .await;
    let cache = cache(&server, CachePolicy::default());
    assert_eq!(cache.token().await.unwrap().expose_secret(), "first-token");
    assert_eq!(cache.token().await.unwrap().expose_secret(), "first-token");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(cache.token().await.unwrap().expose_secret(), "second-token");
    assert_eq!(cache.token().await.unwrap().expose_secret(), "second-token");
    assert_eq!(cache.fetch_count(), 2);
    server.verify().await;
}

#[tokio::test]
async fn configured_margin_is_respected() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 3600))
        .expect(2)
        .mount(&server)
        .await;
    // A margin longer than the token lives is capped at half its lifetime.
    let cache = cache(
        &server,
        CachePolicy {
            refresh_margin: Duration::from_secs(3600),
            ..CachePolicy::default()
        },
    );
    cache.token().await.unwrap();
    // Capped at 1800 s: still reused.
    cache.token().await.unwrap();
    assert_eq!(cache.fetch_count(), 1);
    cache.invalidate(&SecretString::from(TOKEN.to_owned()));
    cache.token().await.unwrap();
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetch_backs_off() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    let first = cache.token().await.unwrap_err();
    assert_eq!(first.kind(), ErrorKind::Temporary);
    // 20 more calls within the 1 s back-off, some of them concurrent.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let err = cache.token().await.unwrap_err();
                assert_eq!(err.exit_code(), 75);
                let msg = err.to_string();
                assert!(msg.contains("HTTP 500"), "{msg}");
                assert!(msg.contains("asked again in"), "{msg}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test]
async fn back_off_ends_and_doubles_and_success_resets_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&server)
        .await;
    let cache = cache(
        &server,
        CachePolicy {
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            ..CachePolicy::default()
        },
    );
    cache.token().await.unwrap_err(); // fetch 1 fails: 200 ms back-off
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache.token().await.unwrap_err(); // fetch 2 fails: 400 ms back-off
    tokio::time::sleep(Duration::from_millis(100)).await;
    cache.token().await.unwrap_err(); // still backing off, no request
    assert_eq!(cache.fetch_count(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.token().await.unwrap().expose_secret(), TOKEN); // fetch 3
    server.verify().await;
}

#[tokio::test]
async fn invalidate_drops_only_the_current_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response("token-a", 3600))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(token_response("token-b", 3600))
        .mount(&server)
        .await;
    let cache = cache(&server, CachePolicy::default());
    let a = cache.token().await.unwrap();
    assert!(!cache.invalidate(&SecretString::from("something-else".to_owned())));
    assert_eq!(cache.token().await.unwrap().expose_secret(), "token-a");
    assert!(cache.invalidate(&a));
    let b = cache.token().await.unwrap();
    assert_eq!(b.expose_secret(), "token-b");
    // A late refusal of the old token must not drop the new one.
    assert!(!cache.invalidate(&a));
    assert_eq!(cache.token().await.unwrap().expose_secret(), "token-b");
    assert_eq!(cache.fetch_count(), 2);
}

#[tokio::test]
async fn token_source_and_debug_hide_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&server)
        .await;
    let cache = cache(&server, CachePolicy::default());
    let source: &dyn TokenSource = &cache;
    assert_eq!(source.access_token().await.unwrap().expose_secret(), TOKEN);
    let debug = format!("{cache:?}");
    assert!(debug.contains("has_token: true"), "{debug}");
    assert!(!debug.contains(TOKEN) && !debug.contains(SECRET), "{debug}");
}

#[tokio::test]
async fn errors_through_the_cache_hide_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error_response(
            401,
            "invalid_client",
            &format!("bad secret {SECRET}"),
        ))
        .mount(&server)
        .await;
    let cache = cache(&server, CachePolicy::default());
    for _ in 0..2 {
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.exit_code(), 77);
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(SECRET), "{text}");
        }
    }
}

/// `n` concurrent `token()` calls; returns their results.
async fn concurrent(
    cache: &Arc<TokenCache>,
    n: usize,
) -> Vec<Result<SecretString, mailgate_core::Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let cache = Arc::clone(cache);
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_holds_for_tokens_that_are_due_at_once() {
    // expires_in 0: the token is due for refresh the moment it arrives.
    // Callers that queued while it was fetched take it; none fetches again.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 0).set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    for r in concurrent(&cache, 8).await {
        assert_eq!(r.unwrap().expose_secret(), TOKEN);
    }
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_holds_when_the_fetch_is_slower_than_half_the_lifetime() {
    // 1 s token, 600 ms fetch: due for refresh (at 500 ms) when it arrives.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 1).set_delay(Duration::from_millis(600)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    for r in concurrent(&cache, 8).await {
        assert_eq!(r.unwrap().expose_secret(), TOKEN);
    }
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_queued_behind_a_failed_fetch_take_its_error() {
    // Without a back-off, waiters used to fetch again one after another.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(
        &server,
        CachePolicy {
            min_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            ..CachePolicy::default()
        },
    ));
    for r in concurrent(&cache, 8).await {
        let err = r.unwrap_err();
        assert_eq!(err.exit_code(), 75);
        assert!(err.to_string().contains("HTTP 500"), "{err}");
    }
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 3600).set_delay(Duration::from_millis(400)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    // The first caller starts the fetch and is dropped (a send timeout, select!, Ctrl-C).
    let gave_up = tokio::time::timeout(Duration::from_millis(50), cache.token()).await;
    assert!(gave_up.is_err(), "timed out");
    assert_eq!(cache.fetch_count(), 1, "counted when sent");
    // A caller arriving meanwhile joins the same fetch.
    let started = std::time::Instant::now();
    assert_eq!(cache.token().await.unwrap().expose_secret(), TOKEN);
    assert!(started.elapsed() < Duration::from_millis(600));
    // And later callers reuse its token.
    assert_eq!(cache.token().await.unwrap().expose_secret(), TOKEN);
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test]
async fn a_fetch_completes_and_is_cached_with_nobody_waiting() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_response(TOKEN, 3600).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let cache = Arc::new(cache(&server, CachePolicy::default()));
    let gave_up = tokio::time::timeout(Duration::from_millis(20), cache.token()).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        format!("{cache:?}").contains("has_token: true"),
        "{cache:?}"
    );
    assert_eq!(cache.token().await.unwrap().expose_secret(), TOKEN);
    assert_eq!(cache.fetch_count(), 1);
    server.verify().await;
}

#[tokio::test]
async fn refused_tokens_are_dropped_at_most_once_per_back_off() {
    let server = MockServer::start().await;
    for token in ["token-a", "token-b"] {
        Mock::given(method("POST"))
            .respond_with(token_response(token, 3600))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(token_response("token-c", 3600))
        .mount(&server)
        .await;
    let cache = cache(
        &server,
        CachePolicy {
            refusal_backoff: Duration::from_millis(300),
            ..CachePolicy::default()
        },
    );
    let a = cache.token().await.unwrap();
    assert_eq!(cache.refused(&a), Refusal::Dropped);
    assert!(Refusal::Dropped.retry());
    let b = cache.token().await.unwrap();
    assert_eq!(b.expose_secret(), "token-b");
    assert_eq!(cache.fetch_count(), 2);
    // Refused again within the back-off: kept, final, no new request.
    let kept = cache.refused(&b);
    assert!(matches!(kept, Refusal::Kept { ago } if ago < Duration::from_millis(300)));
    assert!(!kept.retry());
    assert_eq!(cache.token().await.unwrap().expose_secret(), "token-b");
    assert_eq!(cache.fetch_count(), 2);
    // A late refusal of the old token: already replaced, retry with the current one.
    assert_eq!(cache.refused(&a), Refusal::Replaced);
    assert!(Refusal::Replaced.retry());
    assert_eq!(cache.token().await.unwrap().expose_secret(), "token-b");
    // After the back-off a refusal drops the token again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cache.refused(&b), Refusal::Dropped);
    assert_eq!(cache.token().await.unwrap().expose_secret(), "token-c");
    assert_eq!(cache.fetch_count(), 3);
    assert_eq!(
        CachePolicy::default().refusal_backoff,
        mailgate_auth_oauth::REFUSAL_BACKOFF
    );
}
