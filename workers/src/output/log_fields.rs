//! How log lines print their fields: keys, operations and errors carry the
//! member's words, so every field value (the message too) is written with
//! control characters escaped — a key with a newline cannot forge a log
//! line, one with ESC cannot drive the terminal of whoever reads the log.

use std::fmt::Write as _;

use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use trailvault_pipeline::model::text::escape_control;

/// One field as `name=value` (the message bare), its value escaped.
fn write_field(
    writer: &mut Writer<'_>,
    field: &Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    let mut text = String::new();
    let _ = write!(text, "{value:?}");
    let text = escape_control(&text);
    if field.name() == "message" {
        writer.write_str(&text)
    } else {
        write!(writer, "{}={text}", field.name())
    }
}

/// The fields formatter of the log subscriber.
pub fn escaped_fields() -> impl for<'writer> FormatFields<'writer> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(write_field).delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn log_lines_escape_control_characters_in_every_field() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(escaped_fields())
            .with_writer(captured.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let key = "AWSLogs/x\n2026-01-01T00:00:00Z  INFO collection finished\u{1b}[2J";
            let span = tracing::info_span!("account", account_id = %"evil\r\nid");
            let _entered = span.enter();
            tracing::warn!(%key, error = ?"body\u{7}", "copy failed: {}", key);
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one line: {text:?}");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\r'));
        assert!(text.contains("account_id=evil\\r\\nid"), "{text}");
        assert!(
            text.contains(
                "copy failed: AWSLogs/x\\n2026-01-01T00:00:00Z  INFO collection finished\\x1b[2J"
            ),
            "{text}"
        );
        assert!(text.contains("key=AWSLogs/x\\n"), "{text}");
    }
}
