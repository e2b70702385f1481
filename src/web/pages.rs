//! HTML pages (placeholder: being written).
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{AppState, WebError};

pub async fn home(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn search(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn image(
    State(_s): State<AppState>,
    Path(_rest): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn api_docs(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn static_file(Path(_file): Path<String>) -> Result<Response, WebError> {
    Err(WebError::NotFound("no such file".into()))
}
/// A complete HTML error page; `message` is escaped.
pub fn error_page(status: StatusCode, message: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!(
        "<!doctype html><title>{}</title><p>{escaped}</p>",
        status.as_u16()
    )
}
