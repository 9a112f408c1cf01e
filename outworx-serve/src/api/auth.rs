//! Authentication: the API key of a request, checked against the configured keys in constant
//! time, becomes its project; `POST /api/sdk/verify` answers which.

use std::sync::Arc;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::{ApiError, App};

/// The project of a request: a stable, non-secret id of its API key. As an extractor it
/// answers 401 without a known key, before the handler runs.
pub(super) struct Project(pub(super) String);

impl axum::extract::FromRequestParts<Arc<App>> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer <api key>",
                )
            })?;
        let known = app.config.api_keys.iter().fold(false, |hit, k| {
            hit | bool::from(k.as_bytes().ct_eq(given.as_bytes()))
        });
        if !known {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key"));
        }
        Ok(Project(project_id(given)))
    }
}

/// A stable, non-secret id for an API key (events and keys are scoped by it).
pub(crate) fn project_id(api_key: &str) -> String {
    hex::encode(&sha2::Sha256::digest(api_key.as_bytes())[..8])
}

pub(super) async fn verify(Project(project): Project) -> Response {
    Json(json!({ "ok": true, "project": project })).into_response()
}
