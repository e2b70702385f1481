//! A test token issuer implementing the Docker registry token flow
//! (`GET /token?service=...&scope=repository:NAME:pull,push`, optionally with Basic auth;
//! and the OAuth2 `POST /token` password grant).
//!
//! Tokens are ES256 JWTs whose header carries `x5c` with a self-signed certificate generated at
//! start; the registry trusts that same certificate as its `rootcertbundle`.
//!
//! Policy: anonymous requests are granted `pull` (see [`TokenIssuer::set_anonymous_pull`]);
//! requests with Basic credentials are granted `pull`, `push`, `delete` (and catalog access).
//! Any credentials are accepted unless [`TokenIssuer::set_credentials`] fixes them.

use super::Creds;
use super::http::{HttpServer, Request, Response, parse_form};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl AccessEntry {
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        AccessEntry {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"type": self.kind, "name": self.name, "actions": self.actions})
    }
}

/// What the issuer saw in one token request.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` (Docker token flow) or `POST` (OAuth2 form).
    pub method: String,
    pub service: Option<String>,
    /// The `scope` parameters as sent.
    pub scopes: Vec<String>,
    /// Basic-auth (or form) user name; `None` for anonymous requests.
    pub user: Option<String>,
    /// HTTP status answered (200, or 401 for rejected credentials).
    pub status: u16,
    /// Access granted in the token (empty when rejected).
    pub granted: Vec<AccessEntry>,
}

struct State {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    rng: SystemRandom,
    expiry_secs: AtomicU64,
    anonymous_pull: AtomicBool,
    issue_expired: AtomicBool,
    credentials: Mutex<Option<Creds>>,
    requests: Mutex<Vec<TokenRequest>>,
    jti: AtomicU64,
}

/// A running token issuer on a free 127.0.0.1 port; stops on drop.
pub struct TokenIssuer {
    state: Arc<State>,
    cert_pem: String,
    server: HttpServer,
}

impl TokenIssuer {
    /// The `service` the test registry announces (token `aud`).
    pub const SERVICE: &'static str = "test-registry";
    /// The token `iss` the test registry expects.
    pub const ISSUER: &'static str = "test-issuer";
    /// Default token lifetime.
    pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(300);

    /// Generates a P-256 key and self-signed certificate and starts serving `/token`.
    pub fn start() -> Self {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec!["test-issuer".to_string()]).expect("cert params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "microbadger test token issuer");
        let cert = params.self_signed(&key_pair).expect("self-sign");
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .expect("load key into ring");
        let state = Arc::new(State {
            key,
            cert_der: cert.der().to_vec(),
            rng,
            expiry_secs: AtomicU64::new(Self::DEFAULT_EXPIRY.as_secs()),
            anonymous_pull: AtomicBool::new(true),
            issue_expired: AtomicBool::new(false),
            credentials: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            jti: AtomicU64::new(0),
        });
        let server = {
            let state = state.clone();
            HttpServer::start(move |req| handle(&state, req))
        };
        TokenIssuer {
            state,
            cert_pem: cert.pem(),
            server,
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.base_url())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// PEM of the signing certificate (the registry's `rootcertbundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Number of HTTP token requests received so far (tokens minted in-process by the
    /// harness with [`TokenIssuer::mint`] are not counted).
    pub fn token_requests(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Every HTTP token request received so far.
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Lifetime of tokens issued from now on (`expires_in` and `exp`). Whole seconds, at least 1.
    /// The registry (2.8) accepts a token until 60 s past its `exp` (clock-skew leeway), so a
    /// short lifetime tests client-side refresh through `expires_in`; to make the registry
    /// reject tokens now, use [`set_issue_expired`](Self::set_issue_expired).
    pub fn set_expiry(&self, lifetime: Duration) {
        self.state
            .expiry_secs
            .store(lifetime.as_secs().max(1), Ordering::SeqCst);
    }

    /// `Some`: only these Basic credentials are accepted (others get 401). `None` (default):
    /// any Basic credentials are accepted. Fixture pushes use [`TokenIssuer::push_creds`]:
    /// push before fixing other credentials, or fix those.
    pub fn set_credentials(&self, creds: Option<Creds>) {
        *self.state.credentials.lock().unwrap() = creds;
    }

    /// Whether anonymous requests get `pull` (default `true`). When `false` they get a token
    /// with empty access, so the registry answers 401 and a client must send credentials.
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.state.anonymous_pull.store(allowed, Ordering::SeqCst);
    }

    /// When `true`, tokens are issued already expired beyond the registry's leeway
    /// (`exp` two minutes ago) while `expires_in` still claims the configured lifetime: the
    /// registry answers 401 with `error="invalid_token"` in its challenge.
    pub fn set_issue_expired(&self, expired: bool) {
        self.state.issue_expired.store(expired, Ordering::SeqCst);
    }

    /// Mints a token directly (not counted as a request), for harness API calls.
    pub fn mint(&self, subject: &str, access: &[AccessEntry]) -> String {
        mint(&self.state, subject, TokenIssuer::SERVICE, access)
    }

    /// The credentials the harness pushes fixtures with in token mode.
    pub fn push_creds() -> Creds {
        Creds::new("pusher", "push-password")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn mint(state: &State, subject: &str, audience: &str, access: &[AccessEntry]) -> String {
    let header = json!({
        "alg": "ES256",
        "typ": "JWT",
        "x5c": [STANDARD.encode(&state.cert_der)],
    });
    let mut now = now_secs();
    let lifetime = state.expiry_secs.load(Ordering::SeqCst);
    if state.issue_expired.load(Ordering::SeqCst) {
        now = now.saturating_sub(120 + lifetime);
    }
    let claims = json!({
        "iss": TokenIssuer::ISSUER,
        "sub": subject,
        "aud": audience,
        "exp": now + lifetime,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("test-{}", state.jti.fetch_add(1, Ordering::SeqCst)),
        "access": access.iter().map(AccessEntry::to_json).collect::<Vec<_>>(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = state
        .key
        .sign(&state.rng, signing_input.as_bytes())
        .expect("ES256 sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// Parses `type:name:actions` (the name may not contain ':' but be safe anyway).
fn parse_scope(scope: &str) -> Option<AccessEntry> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(AccessEntry {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn grant(scopes: &[String], authenticated: bool, anonymous_pull: bool) -> Vec<AccessEntry> {
    let allowed: &[&str] = if authenticated {
        &["pull", "push", "delete", "*"]
    } else if anonymous_pull {
        &["pull"]
    } else {
        &[]
    };
    scopes
        .iter()
        .flat_map(|s| s.split(' ')) // some clients join several scopes with spaces
        .filter_map(parse_scope)
        .filter_map(|mut e| {
            if e.kind == "registry" && !authenticated {
                return None;
            }
            e.actions.retain(|a| allowed.contains(&a.as_str()));
            (!e.actions.is_empty()).then_some(e)
        })
        .collect()
}

fn basic_auth(req: &Request) -> Option<Creds> {
    let value = req.header("Authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(Creds::new(user, password))
}

fn handle(state: &State, req: &Request) -> Response {
    if req.path() != "/token" {
        return Response::new(404).body("not found");
    }
    let params = match req.method.as_str() {
        "GET" => req.query(),
        "POST" => parse_form(&String::from_utf8_lossy(&req.body)),
        _ => return Response::new(405),
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let service = get("service");
    // A refresh token we issued earlier stands for its user without a password.
    let (creds, trusted) = if req.method == "POST" {
        match get("grant_type").as_deref() {
            Some("password") => (
                get("username").map(|u| Creds::new(&u, &get("password").unwrap_or_default())),
                false,
            ),
            Some("refresh_token") => (
                get("refresh_token")
                    .and_then(|t| t.strip_prefix("refresh:").map(|u| Creds::new(u, ""))),
                true,
            ),
            _ => (None, false),
        }
    } else {
        (basic_auth(req), false)
    };
    let required = state.credentials.lock().unwrap().clone();
    let rejected = match (&creds, &required) {
        (Some(c), Some(r)) if !trusted => c != r,
        _ => false,
    };
    let mut record = TokenRequest {
        method: req.method.clone(),
        service: service.clone(),
        scopes: scopes.clone(),
        user: creds.as_ref().map(|c| c.user.clone()),
        status: 401,
        granted: Vec::new(),
    };
    if rejected {
        state.requests.lock().unwrap().push(record);
        return Response::json(
            401,
            &json!({"errors":[{"code":"UNAUTHORIZED","message":"invalid credentials"}]}),
        )
        .header("WWW-Authenticate", "Basic realm=\"test-issuer\"");
    }
    let granted = grant(
        &scopes,
        creds.is_some(),
        state.anonymous_pull.load(Ordering::SeqCst),
    );
    let subject = creds.as_ref().map(|c| c.user.clone()).unwrap_or_default();
    let audience = service.unwrap_or_else(|| TokenIssuer::SERVICE.to_string());
    let token = mint(state, &subject, &audience, &granted);
    record.status = 200;
    record.granted = granted;
    state.requests.lock().unwrap().push(record);
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": state.expiry_secs.load(Ordering::SeqCst),
        "issued_at": issued_at,
    });
    if req.method == "POST" && !subject.is_empty() {
        body["refresh_token"] = json!(format!("refresh:{subject}"));
    }
    Response::json(200, &body)
}
