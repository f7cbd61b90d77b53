//! Error answers: always JSON, always with a machine-readable code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, for programs. Each code has one HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a query or path parameter is malformed (an id that is not hex, a bad format).
    BadRequest,
    /// 401: no `Authorization: Bearer <token>` header, or the wrong token.
    Unauthorized,
    /// 404: no such trace, intent or endpoint.
    NotFound,
    /// 409: an id prefix matches more than one id (`candidates` lists some).
    AmbiguousId,
    /// 413: the body is larger than the API takes ([`crate::MAX_BODY_BYTES`]).
    PayloadTooLarge,
    /// 415: a body was sent without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 422: the body is JSON but not a valid request (unknown field, wrong type, a field rule
    /// broken: both `input` and `input_hex`, a committee member that is not a key, ...).
    InvalidRequest,
    /// 503: the node cannot do it now (no peer to publish to, shutting down).
    Unavailable,
    /// 504: waited for an outcome longer than asked.
    Timeout,
    /// 500: the node failed (its store, for instance).
    Internal,
}

impl ErrorCode {
    /// The HTTP status answered with this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::AmbiguousId => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidRequest => 422,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// The code a bare HTTP status stands for (for answers that did not come from a pvl
    /// node, such as a proxy's).
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            400 => ErrorCode::BadRequest,
            401 | 403 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::AmbiguousId,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::InvalidRequest,
            503 => ErrorCode::Unavailable,
            504 => ErrorCode::Timeout,
            _ => ErrorCode::Internal,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// What went wrong, one line for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// For [`ErrorCode::AmbiguousId`]: some of the ids the prefix matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// For a publication that failed after the intent was signed and recorded: its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub trace_id: Option<pvl_protocol::ObjectId>,
}

impl ErrorBody {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            code,
            candidates: Vec::new(),
            trace_id: None,
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        if !self.candidates.is_empty() {
            write!(f, " (matches {})", self.candidates.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_status() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::AmbiguousId,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::InvalidRequest,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_status(code.status()), code);
        }
    }
}
