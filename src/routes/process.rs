//! `/process`: validated work requests, the task status, and cleanup of retained memory.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::errors::{ApiError, ErrorBody};
use crate::startup::AppState;
use crate::work::tasks::{CleanupReport, Mode, StatusSnapshot, TaskReport, TaskStarted, WorkSpec};

const MIB: u64 = 1024 * 1024;

/// An integer query parameter: its range and default. `allowed` is what a 422 tells the caller.
struct IntParam {
    name: &'static str,
    min: u64,
    max: u64,
    default: u64,
    allowed: &'static str,
}

macro_rules! int_param {
    ($name:literal, $min:literal..=$max:literal, default $default:literal) => {
        IntParam {
            name: $name,
            min: $min,
            max: $max,
            default: $default,
            allowed: concat!("integer from ", $min, " to ", $max),
        }
    };
}

const CPU_INTENSITY: IntParam = int_param!("cpu_intensity", 1..=10, default 5);
const MEMORY_SIZE: IntParam = int_param!("memory_size", 0..=500, default 50);
const DURATION: IntParam = int_param!("duration", 1..=60, default 10);
const BOOL_ALLOWED: &str = "true or false";

/// Does CPU and memory work; sync answers 200 after it, async answers 202 at once.
#[utoipa::path(post, path = "/process", tag = "work",
    params(
        ("cpu_intensity" = Option<u8>, Query, minimum = 1, maximum = 10, description = "N keeps N/10 of one core busy (default 5)"),
        ("memory_size" = Option<u32>, Query, minimum = 0, maximum = 500, description = "MiB allocated and resident for the duration (default 50)"),
        ("duration" = Option<u8>, Query, minimum = 1, maximum = 60, description = "Seconds of work (default 10)"),
        ("async_mode" = Option<bool>, Query, description = "Answer 202 at once and work in the background (default false)"),
        ("retain" = Option<bool>, Query, description = "Keep the memory until DELETE /process/cleanup (default false)"),
    ),
    responses(
        (status = 200, body = TaskReport, description = "Sync work finished"),
        (status = 202, body = TaskStarted, description = "Async work started"),
        (status = 422, body = ErrorBody, description = "A parameter is out of range or malformed"),
        (status = 503, body = ErrorBody, description = "Memory budget or task cap reached; see Retry-After"),
    ))]
pub async fn process(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let spec = parse_spec(req.query_string())?;
    let admission = state.registry.admit(&spec).map_err(ApiError::Overloaded)?;
    match spec.mode {
        Mode::Sync => {
            let report =
                state.registry.run_sync(admission, spec).await.map_err(|e| ApiError::TaskFailed(e.to_string()))?;
            Ok(HttpResponse::Ok().json(report))
        }
        Mode::Async => Ok(HttpResponse::Accepted().json(state.registry.run_async(admission, spec))),
    }
}

/// Running tasks by kind, retained memory, the budget, totals and the last five finished tasks.
#[utoipa::path(get, path = "/process/status", tag = "work", responses((status = 200, body = StatusSnapshot)))]
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.registry.snapshot())
}

/// Frees all memory kept with `retain=true`.
#[utoipa::path(delete, path = "/process/cleanup", tag = "work", responses((status = 200, body = CleanupReport)))]
pub async fn cleanup(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.registry.cleanup())
}

/// Parses and range-checks the query; unknown parameters are ignored, a repeated one takes its last value.
fn parse_spec(query: &str) -> Result<WorkSpec, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| ApiError::Validation {
        field: "query",
        allowed: "a URL-encoded query string",
        received: e.to_string(),
    })?;
    let value = |name: &str| pairs.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let int =
        |param: &IntParam| -> Result<u64, ApiError> {
            let Some(raw) = value(param.name) else { return Ok(param.default) };
            raw.trim().parse::<u64>().ok().filter(|n| (param.min..=param.max).contains(n)).ok_or_else(|| {
                ApiError::Validation { field: param.name, allowed: param.allowed, received: raw.to_owned() }
            })
        };
    let flag = |name: &'static str| -> Result<bool, ApiError> {
        let Some(raw) = value(name) else { return Ok(false) };
        parse_bool(raw).ok_or_else(|| ApiError::Validation {
            field: name,
            allowed: BOOL_ALLOWED,
            received: raw.to_owned(),
        })
    };
    Ok(WorkSpec {
        cpu_intensity: u8::try_from(int(&CPU_INTENSITY)?).unwrap_or(10),
        memory_bytes: int(&MEMORY_SIZE)? * MIB,
        duration: Duration::from_secs(int(&DURATION)?),
        mode: if flag("async_mode")? { Mode::Async } else { Mode::Sync },
        retain: flag("retain")?,
    })
}

/// The spellings FastAPI accepts for a boolean, so existing callers keep working.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(query: &str) -> &'static str {
        match parse_spec(query) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error for {query:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let spec = parse_spec("").expect("empty query is valid");
        assert_eq!(spec.cpu_intensity, 5);
        assert_eq!(spec.memory_bytes, 50 * MIB);
        assert_eq!(spec.duration, Duration::from_secs(10));
        assert_eq!(spec.mode, Mode::Sync);
        assert!(!spec.retain);
    }

    #[test]
    fn bounds_are_inclusive() {
        let spec = parse_spec("cpu_intensity=10&memory_size=0&duration=60&async_mode=yes&retain=1").expect("valid");
        assert_eq!((spec.cpu_intensity, spec.memory_bytes, spec.duration.as_secs()), (10, 0, 60));
        assert_eq!(spec.mode, Mode::Async);
        assert!(spec.retain);
    }

    #[test]
    fn each_bad_value_names_its_field() {
        assert_eq!(field_of("cpu_intensity=0"), "cpu_intensity");
        assert_eq!(field_of("cpu_intensity=abc"), "cpu_intensity");
        assert_eq!(field_of("memory_size=501"), "memory_size");
        assert_eq!(field_of("memory_size=-1"), "memory_size");
        assert_eq!(field_of("duration=0"), "duration");
        assert_eq!(field_of("duration=1.5"), "duration");
        assert_eq!(field_of("async_mode=maybe"), "async_mode");
        assert_eq!(field_of("retain=2"), "retain");
    }

    #[test]
    fn allowed_text_states_the_range() {
        assert_eq!(CPU_INTENSITY.allowed, "integer from 1 to 10");
        assert_eq!(MEMORY_SIZE.allowed, "integer from 0 to 500");
    }
}
