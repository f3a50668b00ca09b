//! `/process`: validated work requests, the task status, and cleanup of retained memory.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use surge_capacity::request;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorBody};
use crate::peer::{client_closed_request, PeerSocket};
use crate::queue::{AsyncAccepted, SharedStatus};
use crate::state::AppState;
use crate::work::answers::{CleanupReport, Refusal, StatusSnapshot, TaskAccepted, TaskReport};
use crate::work::records::{RecordStatus, TaskRecord};
use crate::work::spec::{Mode, WorkSpec};

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
// The literals above (a 422's text is built from them at compile time) are the ranges stated in surge_capacity.
const _: () = assert!(
    same(&CPU_INTENSITY, request::CPU_INTENSITY)
        && same(&MEMORY_SIZE, request::MEMORY_MIB)
        && same(&DURATION, request::DURATION_SECS)
);

const fn same(param: &IntParam, bounds: request::Bounds) -> bool {
    param.min == bounds.min && param.max == bounds.max
}
const BOOL_ALLOWED: &str = "true or false";
/// The header a client repeats on its retries of one async request.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const IDEMPOTENCY_KEY_ALLOWED: &str = "1 to 255 visible ASCII characters";

/// The 200 body of `POST /process`: one of two shapes, by mode.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProcessAnswer {
    /// Sync: the finished task.
    Report(TaskReport),
    /// Async: accepted, started or queued.
    Accepted(TaskAccepted),
    /// Async with an `Idempotency-Key` accepted before with the same parameters: that task, nothing added.
    Repeated(RepeatedTask),
}

/// The task an `Idempotency-Key` was first accepted for, as it is now.
#[derive(Serialize, ToSchema)]
pub struct RepeatedTask {
    pub task_id: uuid::Uuid,
    pub status: RecordStatus,
    /// Always true: this answer adds nothing.
    pub idempotent_replay: bool,
    pub message: String,
}

/// Does CPU and memory work. Sync work that cannot start now waits in the pod's backlog, and answers 200 with the
/// report once it has run (its latency includes the wait). Async answers 200 at once, `queued` or `started`: with the
/// memory queue it waits in this pod's backlog; with the Redis queue only once it is in the shared stream, which any
/// replica with room takes from (follow it at `GET /process/{task_id}`). Async is 200 and not 202 because the Python
/// service's clients, its load generator first, count only 200 as success.
#[utoipa::path(post, path = "/process", tag = "work",
    params(
        ("cpu_intensity" = Option<u8>, Query, minimum = 1, maximum = 10, description = "N asks for N/10 of a core for `duration` seconds: N/10 × duration core-seconds of work, stretched when the pod's CPU is shared (default 5)"),
        ("memory_size" = Option<u32>, Query, minimum = 0, maximum = 500, description = "MiB allocated and resident while the task runs (default 50); more than the pod's budget is a 422"),
        ("duration" = Option<u8>, Query, minimum = 1, maximum = 60, description = "Seconds of work on a pod with room (default 10)"),
        ("async_mode" = Option<bool>, Query, description = "Answer at once and work in the background (default false)"),
        ("retain" = Option<bool>, Query, description = "Keep the memory until DELETE /process/cleanup (default false)"),
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Async with the shared backlog (redis): the same key within the result retention answers the first task and adds nothing; with other parameters, 422. 1 to 255 visible ASCII characters. The memory queue keeps no keys"),
    ),
    responses(
        (status = 200, body = ProcessAnswer, description = "Sync: the task's report once it has run. Async: accepted, started or queued, with estimates"),
        (status = 422, body = ErrorBody, description = "A parameter is out of range or malformed, memory_size exceeds the pod's whole budget, or the Idempotency-Key was first sent with other parameters"),
        (status = 503, body = ErrorBody, description = "The backlog (or the shared backlog) is full, retained memory leaves no room, the pod is draining, or the shared backlog cannot be reached (`queue_unavailable`); see Retry-After"),
    ))]
pub async fn process(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let spec = parse_spec(req.query_string())?;
    let idempotency_key = idempotency_key(&req)?;
    let refused = |refusal| match refusal {
        Refusal::IdempotencyConflict { task_id } => ApiError::IdempotencyConflict { task_id },
        Refusal::Overloaded(overload) => ApiError::Overloaded(overload),
        Refusal::LargerThanBudget { budget_bytes } => {
            ApiError::LargerThanBudget { requested_mib: spec.memory_bytes / MIB, budget_mib: budget_bytes / MIB }
        }
    };
    match spec.mode {
        Mode::Sync => {
            let accepted = state.registry.submit(spec).map_err(refused)?;
            let finished = match req.conn_data::<PeerSocket>().copied() {
                Some(peer) => tokio::select! {
                    finished = accepted.finish() => finished,
                    // Dropping `finish` cancels the task; nobody reads this answer (nginx logs such requests 499).
                    () = peer.closed() => {
                        return Ok(HttpResponse::build(client_closed_request()).finish());
                    },
                },
                None => accepted.finish().await,
            };
            let finished = finished.map_err(|e| ApiError::TaskFailed(e.to_string()))?;
            if !finished.started {
                return Err(ApiError::Overloaded(state.registry.drained_while_queued()));
            }
            Ok(HttpResponse::Ok().json(ProcessAnswer::Report(finished.report)))
        }
        Mode::Async => {
            // A memory-size refusal must come from the pod that would run it: the budget check stays local.
            if spec.memory_bytes > state.registry.limits().budget_bytes {
                return Err(refused(Refusal::LargerThanBudget { budget_bytes: state.registry.limits().budget_bytes }));
            }
            let answer = match state.backlog.submit(&state.registry, spec, idempotency_key).await.map_err(refused)? {
                AsyncAccepted::Local(accepted) => accepted.answer,
                AsyncAccepted::Shared(answer) => answer,
                AsyncAccepted::Repeated { task_id, status } => {
                    return Ok(HttpResponse::Ok().json(ProcessAnswer::Repeated(RepeatedTask {
                        task_id,
                        status,
                        idempotent_replay: true,
                        message: format!("{IDEMPOTENCY_KEY} seen before: task {task_id}, nothing added"),
                    })));
                }
            };
            Ok(HttpResponse::Ok().json(ProcessAnswer::Accepted(answer)))
        }
    }
}

/// The request's `Idempotency-Key`, if any: 1 to 255 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let invalid = || ApiError::Validation {
        field: IDEMPOTENCY_KEY,
        allowed: IDEMPOTENCY_KEY_ALLOWED,
        received: String::from_utf8_lossy(value.as_bytes()).chars().take(64).collect(),
    };
    let key = value.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key))
}

/// The `/process/status` body: this pod's work, and the shared backlog when there is one.
#[derive(Serialize, ToSchema)]
pub struct ProcessStatus {
    #[serde(flatten)]
    pub pod: StatusSnapshot,
    /// Where async tasks wait: `memory` (this pod's backlog, `queue` above) or `redis` (the shared backlog).
    pub queue_mode: &'static str,
    /// The shared backlog (Redis queue; absent in memory mode or while Redis cannot be reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedStatus>,
}

/// Running and queued tasks, CPU capacity and demand, retained memory, the budget, totals and the last five tasks;
/// with the Redis queue, also the shared backlog (waiting, handed out, dead letters).
#[utoipa::path(get, path = "/process/status", tag = "work", responses((status = 200, body = ProcessStatus)))]
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let shared = state.backlog.status().await;
    HttpResponse::Ok().json(ProcessStatus { pod: state.registry.snapshot(), queue_mode: state.backlog.kind(), shared })
}

/// A task from acceptance to its end: queued, running (on which pod), completed, cancelled or failed, with its times.
/// A sync task, or an async one in the memory queue, from the pod that took it; with the Redis queue any replica
/// answers for async tasks. Records expire after `RESULT_RETENTION_SECS` (default an hour).
#[utoipa::path(get, path = "/process/{task_id}", tag = "work",
    params(("task_id" = uuid::Uuid, Path, description = "The `task_id` an async `POST /process` answered")),
    responses(
        (status = 200, body = TaskRecord),
        (status = 404, body = ErrorBody, description = "No such task, or its record has expired"),
        (status = 422, body = ErrorBody, description = "task_id is not a UUID"),
        (status = 503, body = ErrorBody, description = "The shared backlog cannot be reached; see Retry-After"),
    ))]
pub async fn task(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = uuid::Uuid::parse_str(&raw).map_err(|_| ApiError::Validation {
        field: "task_id",
        allowed: "a UUID, as an async POST /process answered",
        received: raw.clone(),
    })?;
    let mut records = records(&state, &[id]).await?;
    match records.pop().flatten() {
        Some(record) => Ok(HttpResponse::Ok().json(record)),
        None => Err(ApiError::UnknownTask(id)),
    }
}

/// Most task ids one `GET /process/results` reads.
const MAX_RESULTS: usize = 100;

/// The records found, and the ids this replica has none for.
#[derive(Serialize, ToSchema)]
pub struct TaskResults {
    /// In the order asked.
    pub records: Vec<TaskRecord>,
    /// No record here: unknown, expired, or (memory queue) held by another pod, which a later call may reach.
    pub unknown: Vec<uuid::Uuid>,
}

/// Many tasks' records in one call (one Redis round trip), for clients that follow their tasks to the end.
#[utoipa::path(get, path = "/process/results", tag = "work",
    params(("task_ids" = String, Query, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}){0,99}$",
        description = "Comma-separated task ids (hyphenated UUIDs), 1 to 100")),
    responses(
        (status = 200, body = TaskResults),
        (status = 422, body = ErrorBody, description = "task_ids missing, over 100, or one is not a UUID"),
        (status = 503, body = ErrorBody, description = "The shared backlog cannot be reached; see Retry-After"),
    ))]
pub async fn results(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    const ALLOWED: &str = "1 to 100 comma-separated UUIDs (hyphenated), as async POST /process answered";
    let invalid = |received: String| ApiError::Validation { field: "task_ids", allowed: ALLOWED, received };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).map_err(|e| invalid(e.to_string()))?;
    let raw = pairs.into_iter().rev().find(|(name, _)| name == "task_ids").map(|(_, value)| value);
    let raw = raw.ok_or_else(|| invalid("nothing".into()))?;
    // Hyphenated only, as the schema's pattern says (parse_str also takes the simple, braced and URN forms).
    let ids: Vec<uuid::Uuid> = raw
        .split(',')
        .map(|id| uuid::Uuid::parse_str(id).ok().filter(|_| id.len() == 36).ok_or_else(|| invalid(id.to_owned())))
        .collect::<Result<_, _>>()?;
    if ids.len() > MAX_RESULTS {
        return Err(invalid(format!("{} ids", ids.len())));
    }
    let found = records(&state, &ids).await?;
    let unknown = ids.iter().zip(&found).filter(|(_, record)| record.is_none()).map(|(&id, _)| id).collect();
    Ok(HttpResponse::Ok().json(TaskResults { records: found.into_iter().flatten().collect(), unknown }))
}

/// Records from this pod or the shared backlog; one held here in the memory queue names this pod.
async fn records(state: &AppState, ids: &[uuid::Uuid]) -> Result<Vec<Option<TaskRecord>>, ApiError> {
    let mut found = state.backlog.records(&state.registry, ids).await.map_err(ApiError::Overloaded)?;
    for record in found.iter_mut().flatten().filter(|record| record.queue == "memory") {
        record.pod = Some(state.identity.pod_name.clone());
    }
    Ok(found)
}

/// Frees all memory kept with `retain=true`, and starts queued work that now fits.
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

/// Property tests: whatever a client sends as a query string, the parser answers a spec inside the documented ranges
/// or a 422 naming a field it knows; it never panics. Bounded by proptest's case count, so it runs in `make test`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const FIELDS: [&str; 6] = ["cpu_intensity", "memory_size", "duration", "async_mode", "retain", "query"];

    fn check(query: &str) {
        match parse_spec(query) {
            Ok(spec) => {
                assert!((1..=10).contains(&spec.cpu_intensity), "{query}");
                assert!(spec.memory_bytes <= 500 * MIB && spec.memory_bytes % MIB == 0, "{query}");
                assert!((1..=60).contains(&spec.duration.as_secs()), "{query}");
            }
            Err(ApiError::Validation { field, allowed, .. }) => {
                assert!(FIELDS.contains(&field), "{query}: unknown field {field}");
                assert!(!allowed.is_empty(), "{query}");
            }
            Err(other) => panic!("{query}: not a validation error: {other:?}"),
        }
    }

    /// A value as clients send them: numbers in and around each range, booleans, junk, percent-escapes.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            (-5i64..600).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec!["true", "FALSE", "on", "1", "0", " 5 ", "", "1e3", "0x10", "%FF", "+3"])
                .prop_map(str::to_owned),
            "[ -~]{0,12}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn any_string_is_a_spec_in_range_or_a_422_naming_a_field(query in any::<String>()) {
            check(&query);
        }

        #[test]
        fn any_mix_of_known_and_unknown_parameters_is_a_spec_or_a_422(
            pairs in prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 0..8),
        ) {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            check(&query.join("&"));
        }

        #[test]
        fn values_in_range_are_taken_as_given(cpu in 1u64..=10, memory in 0u64..=500, duration in 1u64..=60) {
            let spec = parse_spec(&format!("cpu_intensity={cpu}&memory_size={memory}&duration={duration}"));
            let spec = spec.expect("in range");
            prop_assert_eq!((u64::from(spec.cpu_intensity), spec.memory_bytes / MIB), (cpu, memory));
            prop_assert_eq!(spec.duration.as_secs(), duration);
        }

        #[test]
        fn values_out_of_range_are_refused_naming_their_field(field in 0usize..3, excess in 1u64..1_000_000) {
            let (name, max) = [("cpu_intensity", 10), ("memory_size", 500), ("duration", 60)][field];
            match parse_spec(&format!("{name}={}", max + excess)) {
                Err(ApiError::Validation { field, .. }) => prop_assert_eq!(field, name),
                _ => prop_assert!(false, "{} above {} was accepted", name, max),
            }
        }
    }
}
