//! The stdout JSON line: `timestamp`, `level`, `target`, `message`, then the event's own fields, each key once.
//!
//! Why not tracing-subscriber's JSON formatter: it goes through serde with a UTF-8 check on every write, costs about
//! as much as the request it logs, and writes `message` twice when an event also has a field of that name. Span
//! fields are left out on purpose: they would repeat on every line (trace ids are fields of the lines that need them).

use std::cell::RefCell;
use std::fmt::{self, Write};

use chrono::{DateTime, Utc};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Keys the line itself writes; an event field of the same name is written as `field.<name>`.
const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str(r#"{"timestamp":""#)?;
        write_timestamp(&mut writer, chrono::Utc::now())?;
        write!(writer, r#"","level":"{}","target":"#, metadata.level())?;
        write_json_str(&mut writer, metadata.target())?;
        let mut fields = FieldsVisitor { writer: &mut writer, message: None, result: Ok(()) };
        event.record(&mut fields);
        let FieldsVisitor { message, result, .. } = fields;
        result?;
        if let Some(message) = message {
            writer.write_str(r#","message":"#)?;
            write_json_str(&mut writer, &message)?;
        }
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value` as it is visited; the message is kept to be written after.
struct FieldsVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    message: Option<String>,
    result: fmt::Result,
}

impl FieldsVisitor<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        let prefix = if RESERVED.contains(&name) { "field." } else { "" };
        write!(self.writer, r#","{prefix}{name}":"#)
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.writer));
        }
    }
}

impl Visit for FieldsVisitor<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities.
        self.put(field, |w| if value.is_finite() { write!(w, "{value}") } else { w.write_str("null") });
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && self.message.is_none() {
            self.message = Some(value.to_owned());
            return;
        }
        self.put(field, |w| write_json_str(w, value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && self.message.is_none() {
            self.message = Some(format!("{value:?}"));
            return;
        }
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// RFC 3339 in UTC with microseconds. The date and time of day are formatted once a second per thread: chrono
/// parses its format string on every call, a cost paid per log line otherwise.
fn write_timestamp(writer: &mut impl Write, now: DateTime<Utc>) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.timestamp() {
            *second = now.timestamp();
            text.clear();
            write!(text, "{}", now.format("%Y-%m-%dT%H:%M:%S"))?;
        }
        write!(writer, "{text}.{:06}Z", now.timestamp_subsec_micros().min(999_999))
    })
}

fn write_json_str(writer: &mut impl Write, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut clean = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[clean..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            clean = at + 1;
        }
        self.0.write_str(&text[clean..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().event_format(JsonLines).with_writer(captured.clone()).finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().expect("capture").clone()).expect("utf-8");
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }

    #[test]
    fn a_line_is_one_json_object_with_the_event_fields() {
        let lines = lines_of(|| {
            tracing::info!(status = 503_u16, duration_ms = 1.5, ok = false, delta = -3_i64, "request");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["status"], 503);
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["ok"], false);
        assert_eq!(line["delta"], -3);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 27), "{line}");
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().expect("test time");
        let mut out = String::new();
        write_timestamp(&mut out, at("2026-11-24T21:30:05.123456789Z")).expect("write");
        out.push(' ');
        write_timestamp(&mut out, at("2026-11-24T21:30:05.000001Z")).expect("write");
        out.push(' ');
        write_timestamp(&mut out, at("2026-11-24T21:30:06Z")).expect("write");
        assert_eq!(out, "2026-11-24T21:30:05.123456Z 2026-11-24T21:30:05.000001Z 2026-11-24T21:30:06.000000Z");
    }

    #[test]
    fn awkward_text_is_escaped_and_reserved_names_are_moved_aside() {
        let detail = "quote \" backslash \\ newline \n tab \t bell \u{7} é";
        let lines = lines_of(|| {
            tracing::warn!(detail, level = "mine", debug = ?("a\"b"), ratio = f64::NAN, "said {}", "\"this\"");
        });
        let line = &lines[0];
        assert_eq!(line["detail"], detail);
        assert_eq!(line["field.level"], "mine");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["debug"], r#""a\"b""#);
        assert_eq!(line["ratio"], serde_json::Value::Null);
        assert_eq!(line["message"], r#"said "this""#);
    }
}
