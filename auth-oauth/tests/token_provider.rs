//! A `TokenCache` over a provider other than `TokenClient`, built from the
//! public API only, as a third party would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailgate_auth_oauth::{Token, TokenCache, TokenError, TokenProvider};
use mailgate_core::async_trait;
use mailgate_core::secrecy::{ExposeSecret, SecretString};

/// Issues `token-N` after a delay, counting its fetches.
#[derive(Debug, Default)]
struct Sidecar {
    fetches: AtomicU64,
}

#[async_trait]
impl TokenProvider for Sidecar {
    async fn fetch(&self) -> Result<Token, TokenError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        // Slow enough that every caller arrives while the fetch runs.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Token::new(
            SecretString::from(format!("token-{n}")),
            Some(Duration::from_secs(3600)),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_share_one_fetch_of_a_custom_provider() {
    let cache = Arc::new(TokenCache::new(Sidecar::default()));
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                cache.token().await
            })
        })
        .collect();
    for caller in callers {
        let token = caller.await.unwrap().unwrap();
        assert_eq!(token.expose_secret(), "token-1");
    }
    assert_eq!(cache.provider().fetches.load(Ordering::SeqCst), 1);
    assert_eq!(cache.fetch_count(), 1);
}
