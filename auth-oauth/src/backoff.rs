//! How far apart failed token fetches are spaced: the cache's policy, and
//! the bound on a `Retry-After` the token response parser accepts.

use std::time::Duration;

/// Back-off after the first failed fetch; doubles with each further failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// Longest back-off after failed fetches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
