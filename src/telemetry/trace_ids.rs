//! The current span's W3C trace and span ids, for log lines and task records that link to their trace.

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The trace and span id of the current span, when a trace is active (hex, as W3C traceparent spells them).
pub struct TraceIds {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

pub fn current_trace_ids() -> TraceIds {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        TraceIds {
            trace_id: Some(span_context.trace_id().to_string()),
            span_id: Some(span_context.span_id().to_string()),
        }
    } else {
        TraceIds { trace_id: None, span_id: None }
    }
}
