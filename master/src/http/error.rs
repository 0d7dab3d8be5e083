//! Every error the HTTP API answers with, mapped to an HTTP status in one table
//! ([`ApiError::from_status`]): the body is always JSON, `{"error": "...", "code": "..."}`, and
//! a follower's refusal also names the leader.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;

/// The JSON body of every refusal.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What failed and what the caller can do, for people.
    pub error: String,
    /// A stable code for programs: `unauthenticated`, `forbidden`, `not_found`,
    /// `bad_request`, `not_leader`, `unavailable`, `conflict` or `internal`.
    pub code: String,
    /// On a follower: the id of the master that leads, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// On a follower: the leader's gRPC address (`HOST:PORT`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_grpc_address: Option<String>,
}

/// A refusal: an HTTP status and its JSON body.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// A refusal with `status`, `code` and message `error`.
    pub fn new(status: StatusCode, code: &str, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                code: code.into(),
                leader_id: None,
                leader_grpc_address: None,
            },
        }
    }

    /// 400: the request's parameters are not valid.
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", error)
    }

    /// 404: nothing of that name (that the caller may see).
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", error)
    }

    /// The one table from the gRPC services' statuses (which the shared handlers and the
    /// authorization layer answer with) to HTTP: UNAUTHENTICATED 401, PERMISSION_DENIED 403,
    /// NOT_FOUND 404, INVALID_ARGUMENT and OUT_OF_RANGE 400, FAILED_PRECONDITION and
    /// ALREADY_EXISTS 409, UNAVAILABLE 503 (a not-leader refusal among them), anything else
    /// 500.
    pub fn from_status(status: tonic::Status) -> Self {
        let (http, code) = match status.code() {
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "bad_request"),
            Code::FailedPrecondition | Code::AlreadyExists => (StatusCode::CONFLICT, "conflict"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(http, code, status.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_the_layer_are_401_and_403() {
        let e = ApiError::from_status(tonic::Status::unauthenticated("no token"));
        assert_eq!(
            (e.status, e.body.code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );
        let e = ApiError::from_status(tonic::Status::permission_denied("no right"));
        assert_eq!(
            (e.status, e.body.code.as_str()),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let e = ApiError::from_status(tonic::Status::internal("x"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

/// axum's `Query<T>`, refused with the JSON body of [`ApiError`] (400 `bad_request`) rather
/// than axum's plain text: every answer of the API is JSON, as its OpenAPI document says.
#[derive(Debug)]
pub struct JsonQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for JsonQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(JsonQuery(q)),
            Err(e) => Err(ApiError::bad_request(format!(
                "{}; the parameters are described at /api/v1/openapi.json",
                e.body_text()
            ))),
        }
    }
}

/// axum's `Path<T>`, refused with the JSON body of [`ApiError`] (400 `bad_request`).
#[derive(Debug)]
pub struct JsonPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for JsonPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(p)) => Ok(JsonPath(p)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// The largest number a numeric query parameter may carry (`maximum` in the OpenAPI
/// document): what a JSON schema integer holds everywhere, far above every real page, byte
/// offset or sequence number of this API.
pub const MAX_QUERY_NUMBER: u64 = i32::MAX as u64;

/// 400 unless `value` (parameter `name`) is at most `max`.
pub fn at_most(name: &str, value: Option<u64>, max: u64) -> Result<(), ApiError> {
    match value {
        Some(v) if v > max => Err(ApiError::bad_request(format!(
            "{name} {v} is too large; at most {max} (see /api/v1/openapi.json)"
        ))),
        _ => Ok(()),
    }
}
