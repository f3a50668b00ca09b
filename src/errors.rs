//! Every error the API returns, as JSON: 422 names the field and its allowed range, 503 says when to retry.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::work::answers::Overload;

/// The body of every 4xx and 5xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<crate::work::answers::OverloadReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl ErrorBody {
    fn message(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            field: None,
            allowed: None,
            received: None,
            reason: None,
            retry_after_seconds: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid value {received:?} for {field}: expected {allowed}")]
    Validation { field: &'static str, allowed: &'static str, received: String },
    #[error("memory_size of {requested_mib} MiB is larger than this pod's whole memory budget of {budget_mib} MiB")]
    LargerThanBudget { requested_mib: u64, budget_mib: u64 },
    #[error("overloaded: {}", .0.message)]
    Overloaded(Overload),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("no task {0}: never accepted, or its record has expired")]
    UnknownTask(uuid::Uuid),
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("task failed: {0}")]
    TaskFailed(String),
    #[error("this Idempotency-Key was first sent with other parameters, for task {task_id}")]
    IdempotencyConflict { task_id: uuid::Uuid },
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation { .. } | Self::LargerThanBudget { .. } | Self::IdempotencyConflict { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) | Self::UnknownTask(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::TaskFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        let body = match self {
            Self::Validation { field, allowed, received } => ErrorBody {
                field: Some(field),
                allowed: Some(Cow::Borrowed(allowed)),
                received: Some(received.clone()),
                ..ErrorBody::message(self.to_string())
            },
            Self::LargerThanBudget { requested_mib, budget_mib } => ErrorBody {
                field: Some("memory_size"),
                allowed: Some(Cow::Owned(format!("integer from 0 to {budget_mib} (this pod's memory budget in MiB)"))),
                received: Some(requested_mib.to_string()),
                ..ErrorBody::message(self.to_string())
            },
            Self::Overloaded(overload) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(overload.retry_after_seconds)));
                ErrorBody {
                    reason: Some(overload.reason),
                    retry_after_seconds: Some(overload.retry_after_seconds),
                    ..ErrorBody::message(overload.message.clone())
                }
            }
            Self::IdempotencyConflict { task_id } => ErrorBody {
                field: Some("Idempotency-Key"),
                allowed: Some(Cow::Owned(format!(
                    "the parameters it was first sent with (task {task_id}), or a new key"
                ))),
                ..ErrorBody::message(self.to_string())
            },
            Self::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, *allow));
                ErrorBody { allowed: Some(Cow::Borrowed(allow)), ..ErrorBody::message("method not allowed") }
            }
            Self::NotFound(_) | Self::UnknownTask(_) | Self::TaskFailed(_) => ErrorBody::message(self.to_string()),
        };
        response.json(body)
    }
}
