//! Webhooks (placeholder: being written).
use axum::extract::{Path, State};
use axum::response::Response;

use super::{AppState, WebError};

pub async fn dockerhub(
    State(_s): State<AppState>,
    Path(_rest): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn dockerhub_legacy(
    State(_s): State<AppState>,
    Path(_rest): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
pub async fn registry(
    State(_s): State<AppState>,
    Path(_token): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
