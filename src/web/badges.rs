//! Badge routes (placeholder: being written).
use axum::extract::{Path, State};
use axum::response::Response;

use super::{AppState, WebError};

pub async fn badge(
    State(_s): State<AppState>,
    Path(_rest): Path<String>,
) -> Result<Response, WebError> {
    Err(WebError::Unavailable)
}
