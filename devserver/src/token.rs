//! The development OAuth 2.0 token endpoint (RFC 6749 section 4.4, client
//! credentials grant) and the registry of the tokens it issued.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::shared::{FaultSlot, lock};
use crate::smtp::sasl::BASE64_LENIENT;

const MAX_BODY: usize = 64 * 1024;

/// A token the endpoint issued (or a test inserted).
#[derive(Clone)]
pub struct IssuedToken {
    /// The access token.
    pub token: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The scope granted.
    pub scope: String,
    /// When it was issued.
    pub issued_at: Instant,
    /// When it stops being valid.
    pub expires_at: Instant,
    /// The user (mailbox) it is bound to: the SMTP server's
    /// [`crate::DevSmtpServerBuilder::token_registry`] then accepts it only
    /// for this XOAUTH2/OAUTHBEARER user. `None`: for any user.
    pub user: Option<String>,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Default)]
struct RegistryInner {
    tokens: HashMap<String, (u64, IssuedToken)>,
    next: u64,
}

/// A shared set of issued tokens. Cloning shares it. Give one to both the
/// token endpoint ([`DevTokenEndpointBuilder::registry`]) and the SMTP
/// server ([`crate::DevSmtpServerBuilder::token_registry`]) so the server
/// accepts exactly the unexpired, unrevoked tokens the endpoint issued.
///
/// A token may be bound to a user ([`TokenRegistry::insert_for_user`],
/// [`DevTokenEndpointBuilder::client_user`]); by default it is not, and is
/// then good for any user.
#[derive(Clone, Default)]
pub struct TokenRegistry {
    inner: Arc<Mutex<RegistryInner>>,
}

impl fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRegistry")
            .field("tokens", &self.len())
            .finish()
    }
}

impl TokenRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token valid for `ttl`, for any user (for tests that make their
    /// own).
    pub fn insert(&self, token: impl Into<String>, ttl: Duration) {
        self.add(token.into(), String::new(), String::new(), ttl, None);
    }

    /// Adds a token valid for `ttl` and bound to `user`: see
    /// [`TokenRegistry::is_valid_for`].
    pub fn insert_for_user(
        &self,
        token: impl Into<String>,
        user: impl Into<String>,
        ttl: Duration,
    ) {
        let user = Some(user.into());
        self.add(token.into(), String::new(), String::new(), ttl, user);
    }

    fn add(
        &self,
        token: String,
        client_id: String,
        scope: String,
        ttl: Duration,
        user: Option<String>,
    ) {
        let now = Instant::now();
        let issued = IssuedToken {
            token: token.clone(),
            client_id,
            scope,
            issued_at: now,
            expires_at: now.checked_add(ttl).unwrap_or(now),
            user,
        };
        let mut inner = lock(&self.inner);
        inner.next += 1;
        let seq = inner.next;
        inner.tokens.insert(token, (seq, issued));
    }

    /// Whether `token` is known, not revoked and not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        lock(&self.inner)
            .tokens
            .get(token)
            .is_some_and(|(_, t)| Instant::now() < t.expires_at)
    }

    /// Whether `token` is valid ([`TokenRegistry::is_valid`]) for `user`:
    /// a token bound to a user is valid only for that user (ASCII
    /// case-insensitive), an unbound one for any user.
    pub fn is_valid_for(&self, token: &str, user: &str) -> bool {
        lock(&self.inner).tokens.get(token).is_some_and(|(_, t)| {
            Instant::now() < t.expires_at
                && t.user
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(user))
        })
    }

    /// Forgets `token`; true if it was known.
    pub fn revoke(&self, token: &str) -> bool {
        lock(&self.inner).tokens.remove(token).is_some()
    }

    /// Forgets every token.
    pub fn revoke_all(&self) {
        lock(&self.inner).tokens.clear();
    }

    /// The known tokens, oldest first.
    pub fn tokens(&self) -> Vec<String> {
        self.issued().into_iter().map(|t| t.token).collect()
    }

    /// The known tokens with their details, oldest first.
    pub fn issued(&self) -> Vec<IssuedToken> {
        let inner = lock(&self.inner);
        let mut all: Vec<&(u64, IssuedToken)> = inner.tokens.values().collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, t)| t.clone()).collect()
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        lock(&self.inner).tokens.len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a [`TokenFault`] makes the endpoint do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFaultKind {
    /// 401 `{"error":"invalid_client"}`.
    InvalidClient,
    /// 400 `{"error":"invalid_scope"}`.
    InvalidScope,
    /// 500 `{"error":"server_error"}`.
    ServerError,
    /// 200 with an HTML page (a login page where JSON was expected).
    Html,
    /// Wait, then answer normally (or as the next fault says).
    Delay(Duration),
    /// Any response.
    Status {
        /// HTTP status.
        status: u16,
        /// Content-Type.
        content_type: String,
        /// Body.
        body: String,
    },
}

/// A fault of the token endpoint, optionally only for the first `n`
/// requests it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFault {
    kind: TokenFaultKind,
    times: Option<u64>,
}

impl TokenFault {
    /// A fault of this kind, every time.
    pub fn new(kind: TokenFaultKind) -> Self {
        Self { kind, times: None }
    }

    /// 401 invalid_client.
    pub fn invalid_client() -> Self {
        Self::new(TokenFaultKind::InvalidClient)
    }

    /// 400 invalid_scope.
    pub fn invalid_scope() -> Self {
        Self::new(TokenFaultKind::InvalidScope)
    }

    /// 500 server_error.
    pub fn server_error() -> Self {
        Self::new(TokenFaultKind::ServerError)
    }

    /// 200 text/html.
    pub fn html() -> Self {
        Self::new(TokenFaultKind::Html)
    }

    /// Answer after `delay`.
    pub fn delay(delay: Duration) -> Self {
        Self::new(TokenFaultKind::Delay(delay))
    }

    /// Any status, content type and body.
    pub fn status(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Self::new(TokenFaultKind::Status {
            status,
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// Only for the first `n` requests it applies to.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// What it does.
    pub fn kind(&self) -> &TokenFaultKind {
        &self.kind
    }
}

impl TokenFault {
    fn slot(self) -> FaultSlot<Self> {
        let times = self.times;
        FaultSlot::new(self, times)
    }
}

/// How the client authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `Authorization: Basic` (client_secret_basic).
    Basic,
    /// `client_id` and `client_secret` in the form (client_secret_post).
    Post,
    /// Both at once (refused with invalid_request).
    Both,
}

/// One request the endpoint received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// How the client authenticated, if it tried.
    pub client_auth: Option<ClientAuthMethod>,
    /// The client id presented.
    pub client_id: Option<String>,
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// Configures and starts a [`DevTokenEndpoint`].
#[must_use]
pub struct DevTokenEndpointBuilder {
    path: String,
    clients: HashMap<String, String>,
    client_users: HashMap<String, String>,
    scopes: Option<Vec<String>>,
    expires_in: Duration,
    registry: TokenRegistry,
    faults: Vec<TokenFault>,
}

impl fmt::Debug for DevTokenEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevTokenEndpointBuilder")
            .field("path", &self.path)
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("client_users", &self.client_users)
            .field("scopes", &self.scopes)
            .field("expires_in", &self.expires_in)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl Default for DevTokenEndpointBuilder {
    fn default() -> Self {
        Self {
            path: "/token".into(),
            clients: HashMap::new(),
            client_users: HashMap::new(),
            scopes: None,
            expires_in: Duration::from_secs(3600),
            registry: TokenRegistry::new(),
            faults: Vec::new(),
        }
    }
}

impl DevTokenEndpointBuilder {
    /// The token path (default `/token`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// Accepts this client id with this secret (may be called again).
    pub fn client(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.insert(client_id.into(), secret.into());
        self
    }

    /// Binds the tokens issued to `client_id` from now on to `user` (the
    /// mailbox the client may send as): the SMTP server's
    /// [`crate::DevSmtpServerBuilder::token_registry`] accepts them only
    /// with that XOAUTH2/OAUTHBEARER user. Default: tokens are not bound and
    /// are accepted for any user.
    pub fn client_user(mut self, client_id: impl Into<String>, user: impl Into<String>) -> Self {
        self.client_users.insert(client_id.into(), user.into());
        self
    }

    /// The scopes a client may ask for (default: any non-empty scope).
    pub fn allowed_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Lifetime of issued tokens, sent as `expires_in` (whole seconds;
    /// default 3600 s).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = lifetime;
        self
    }

    /// Records issued tokens in this (shared) registry.
    pub fn registry(mut self, registry: TokenRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: TokenFault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Binds 127.0.0.1 on an ephemeral port and starts serving. Needs a
    /// tokio runtime.
    pub async fn start(self) -> io::Result<DevTokenEndpoint> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(EndpointState {
            path: self.path,
            clients: self.clients,
            client_users: self.client_users,
            scopes: self.scopes,
            expires_in: Mutex::new(self.expires_in),
            registry: self.registry,
            faults: Mutex::new(self.faults.into_iter().map(TokenFault::slot).collect()),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicU64::new(0),
            issued: AtomicU64::new(0),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), shutdown_rx));
        tracing::debug!(%addr, "dev token endpoint listening");
        Ok(DevTokenEndpoint {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

struct EndpointState {
    path: String,
    clients: HashMap<String, String>,
    client_users: HashMap<String, String>,
    scopes: Option<Vec<String>>,
    expires_in: Mutex<Duration>,
    registry: TokenRegistry,
    faults: Mutex<Vec<FaultSlot<TokenFault>>>,
    requests: Mutex<Vec<TokenRequest>>,
    request_count: AtomicU64,
    issued: AtomicU64,
}

/// A running OAuth 2.0 token endpoint on 127.0.0.1 (plain HTTP). Dropping
/// it shuts it down.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use mailgate_devserver::{DevSmtpServer, DevTokenEndpoint, Mechanism};
/// let endpoint = DevTokenEndpoint::builder()
///     .client("my-client", "my-secret")
///     .expires_in(std::time::Duration::from_secs(3600))
///     .start()
///     .await?;
/// let smtp = DevSmtpServer::builder()
///     .implicit_tls()
///     .mechanisms([Mechanism::XOAuth2])
///     .token_registry(endpoint.registry())
///     .start()
///     .await?;
/// println!("token URL {}, SMTP {}", endpoint.url(), smtp.addr());
/// # Ok(()) }
/// ```
pub struct DevTokenEndpoint {
    addr: SocketAddr,
    state: Arc<EndpointState>,
    shutdown: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DevTokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevTokenEndpoint")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl DevTokenEndpoint {
    /// A builder: path `/token`, no clients, any scope, tokens for 3600 s.
    pub fn builder() -> DevTokenEndpointBuilder {
        DevTokenEndpointBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token URL, e.g. `http://127.0.0.1:43123/token`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.state.path)
    }

    /// The registry of the tokens it issued.
    pub fn registry(&self) -> TokenRegistry {
        self.state.registry.clone()
    }

    /// The tokens issued and not revoked, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.registry.tokens()
    }

    /// How many tokens it issued (revoked ones included).
    pub fn issued_count(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// How many HTTP requests it received (any path, any outcome).
    pub fn request_count(&self) -> u64 {
        self.state.request_count.load(Ordering::SeqCst)
    }

    /// The requests it received, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.requests).clone()
    }

    /// Adds a fault while running.
    pub fn add_fault(&self, fault: TokenFault) {
        lock(&self.state.faults).push(fault.slot());
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_expires_in(&self, lifetime: Duration) {
        *lock(&self.state.expires_in) = lifetime;
    }

    /// Stops accepting and waits for open connections to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DevTokenEndpoint {
    fn drop(&mut self) {
        self.shutdown.take();
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<EndpointState>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dev token endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<EndpointState>,
    mut shutdown: watch::Receiver<()>,
) {
    let service = service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "dev token endpoint connection error");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }
}

type HttpResponse = Response<Full<Bytes>>;

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 section 5.2 error response.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let body = serde_json::json!({ "error": error, "error_description": description });
    response(status, "application/json", body.to_string())
}

fn invalid_client(basic: bool) -> HttpResponse {
    let mut r = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed",
    );
    if basic {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mailgate-devserver\""),
        );
    }
    r
}

async fn handle(state: &EndpointState, request: Request<Incoming>) -> HttpResponse {
    state.request_count.fetch_add(1, Ordering::SeqCst);
    let mut record = TokenRequest {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        client_auth: None,
        client_id: None,
        grant_type: None,
        scope: None,
        status: 0,
    };
    let response = respond(state, request, &mut record).await;
    record.status = response.status().as_u16();
    tracing::debug!(path = %record.path, status = record.status, "dev token endpoint request");
    lock(&state.requests).push(record);
    response
}

fn fault_response(kind: &TokenFaultKind) -> Option<HttpResponse> {
    Some(match kind {
        TokenFaultKind::InvalidClient => invalid_client(false),
        TokenFaultKind::InvalidScope => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The requested scope is invalid",
        ),
        TokenFaultKind::ServerError => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server encountered an unexpected condition",
        ),
        TokenFaultKind::Html => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
             <body><h1>Sign in to your account</h1></body></html>\n",
        ),
        TokenFaultKind::Status {
            status,
            content_type,
            body,
        } => response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type,
            body.clone(),
        ),
        TokenFaultKind::Delay(_) => return None,
    })
}

async fn respond(
    state: &EndpointState,
    request: Request<Incoming>,
    record: &mut TokenRequest,
) -> HttpResponse {
    if request.uri().path() != state.path {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", "No such path");
    }
    if request.method() != Method::POST {
        let mut r = oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "The token endpoint takes POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }

    // Faults: delays add up; the first response fault answers.
    let (delay, injected) = {
        let mut delay = Duration::ZERO;
        let mut injected = None;
        for slot in lock(&state.faults).iter_mut() {
            match &slot.fault.kind {
                TokenFaultKind::Delay(d) => {
                    let d = *d;
                    if slot.fire() {
                        delay += d;
                    }
                }
                kind if injected.is_none() => {
                    let kind = kind.clone();
                    if slot.fire() {
                        injected = Some(kind);
                    }
                }
                _ => {}
            }
        }
        (delay, injected)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(r) = injected.as_ref().and_then(fault_response) {
        return r;
    }

    let form_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned));
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "Request body too large",
            );
        }
    };
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let mut form: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        if form.insert(key.to_string(), value.into_owned()).is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Parameter {key} given more than once"),
            );
        }
    }
    record.grant_type = form.get("grant_type").cloned();
    record.scope = form.get("scope").cloned();

    // Client authentication (RFC 6749 section 2.3.1).
    let basic = match authorization {
        None => None,
        Some(Ok(value)) => match parse_basic(&value) {
            Some(pair) => Some(pair),
            None => return invalid_client(true),
        },
        Some(Err(_)) => return invalid_client(true),
    };
    let post_secret = form.get("client_secret");
    let (client_id, secret, used_basic) = match (basic, post_secret) {
        (Some(_), Some(_)) => {
            record.client_auth = Some(ClientAuthMethod::Both);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "More than one client authentication method was used",
            );
        }
        (Some((id, secret)), None) => {
            record.client_auth = Some(ClientAuthMethod::Basic);
            if form.get("client_id").is_some_and(|body_id| *body_id != id) {
                record.client_id = Some(id);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id in the body differs from the Authorization header",
                );
            }
            (id, secret, true)
        }
        (None, Some(secret)) => {
            record.client_auth = Some(ClientAuthMethod::Post);
            let Some(id) = form.get("client_id") else {
                return invalid_client(false);
            };
            (id.clone(), secret.clone(), false)
        }
        (None, None) => {
            record.client_id = form.get("client_id").cloned();
            return invalid_client(false);
        }
    };
    record.client_id = Some(client_id.clone());
    if state.clients.get(&client_id) != Some(&secret) {
        return invalid_client(used_basic);
    }

    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }
    let scope = form.get("scope").map(|s| s.trim()).unwrap_or_default();
    if scope.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "A scope is required",
        );
    }
    if let Some(allowed) = &state.scopes
        && !scope.split(' ').all(|s| allowed.iter().any(|a| a == s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The requested scope is invalid, unknown or malformed",
        );
    }

    let seq = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let mut random = [0u8; 24];
    crate::tls::random_bytes(&mut random);
    let token = format!(
        "dev-{seq}-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let lifetime = *lock(&state.expires_in);
    let user = state.client_users.get(&client_id).cloned();
    state
        .registry
        .add(token.clone(), client_id, scope.to_owned(), lifetime, user);
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": scope,
    });
    response(StatusCode::OK, "application/json", body.to_string())
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64_LENIENT.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// application/x-www-form-urlencoded decoding of one component.
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("my%20id:s%3Ac+r&t=")
        );
        assert_eq!(
            parse_basic(&value),
            Some(("my id".to_owned(), "s:c r&t=".to_owned()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn registry_expiry_and_revocation() {
        let registry = TokenRegistry::new();
        registry.insert("a", Duration::from_secs(60));
        registry.insert("b", Duration::ZERO);
        assert!(registry.is_valid("a"));
        assert!(!registry.is_valid("b"));
        assert!(!registry.is_valid("c"));
        assert_eq!(registry.tokens(), vec!["a", "b"]);
        assert!(registry.revoke("a"));
        assert!(!registry.is_valid("a"));
        assert_eq!(registry.len(), 1);
    }
}
