//! JSON API (placeholder: being written).
use axum::extract::{Path, State};
use axum::response::Response;

use super::{AppState, WebError};

pub async fn image(
    State(_s): State<AppState>,
    Path(_rest): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn search(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn recent(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn best(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn openapi(State(_s): State<AppState>) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
