//! The web tier's one error type. Handlers return `Result<_, WebError>`; the status code for
//! each variant is decided in one `match` ([`WebError::status`]); the body is rendered by
//! [`render`] in the form the client expects: a JSON envelope under `/v1/` and
//! `/hooks/`, an SVG badge under `/badges/`, an HTML page elsewhere. Internal errors are logged
//! with their details and shown only as "internal error".

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A malformed image name or tag: the reason is safe to show.
    #[error("{0}")]
    BadName(String),
    #[error("{0}")]
    BadRequest(String),
    /// The registry is not on the allow-list.
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    NotFound(String),
    /// A webhook token that does not match.
    #[error("bad token")]
    BadToken,
    #[error("too many requests; slow down")]
    TooManyRequests,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("service unavailable")]
    Unavailable,
    /// Anything else: logged in full, shown as "internal error".
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadName(_) | WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotAllowed(_) | WebError::BadToken => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            WebError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short stable code for the JSON envelope.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::BadName(_) => "bad_name",
            WebError::BadRequest(_) => "bad_request",
            WebError::NotAllowed(_) => "not_allowed",
            WebError::NotFound(_) => "not_found",
            WebError::BadToken => "bad_token",
            WebError::TooManyRequests => "too_many_requests",
            WebError::PayloadTooLarge => "payload_too_large",
            WebError::Unavailable => "unavailable",
            WebError::Internal(_) => "internal",
        }
    }

    /// Wrap any internal failure (store, queue, template).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        WebError::internal(e)
    }
}

impl From<crate::queue::QueueError> for WebError {
    fn from(e: crate::queue::QueueError) -> Self {
        WebError::internal(e)
    }
}

/// What [`render`] needs to render an error body.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let info = ErrorInfo {
            status: self.status(),
            code: self.code(),
            message: self.to_string(),
        };
        let mut resp = (info.status, info.message.clone()).into_response();
        resp.extensions_mut().insert(info);
        resp
    }
}

/// The form an error body takes, decided from the request before it is handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorForm {
    /// `/v1/`, `/hooks/` and every POST (old webhook paths too): machines, a JSON envelope.
    Json,
    /// `/badges/`: an error badge, so a broken README image still says why.
    Svg,
    /// Everything else: an HTML page.
    Html,
}

impl ErrorForm {
    pub fn of(method: &axum::http::Method, path: &str) -> ErrorForm {
        if path.starts_with("/v1/")
            || path.starts_with("/hooks/")
            || method == axum::http::Method::POST
        {
            ErrorForm::Json
        } else if path.starts_with("/badges/") {
            ErrorForm::Svg
        } else {
            ErrorForm::Html
        }
    }
}

/// Render an error response's body in the form the route's clients expect (called by the one
/// middleware for every response; anything but a [`WebError`] passes untouched).
pub fn render(form: ErrorForm, resp: Response) -> Response {
    let Some(info) = resp.extensions().get::<ErrorInfo>().cloned() else {
        return resp;
    };
    let (mut parts, _) = resp.into_parts();
    let (content_type, body) = match form {
        ErrorForm::Json => (
            "application/json",
            serde_json::json!({"error": {"code": info.code, "message": info.message}}).to_string(),
        ),
        ErrorForm::Svg => (
            "image/svg+xml;charset=utf-8",
            crate::badge::error_badge(&info.message),
        ),
        ErrorForm::Html => (
            "text/html; charset=utf-8",
            super::pages::error_page(info.status, &info.message),
        ),
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
