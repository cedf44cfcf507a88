//! Writing to stdout without panicking: `println!` panics when the reader
//! went away (`trailvault run --json | head -1`, a closed pipe). Output goes
//! through a buffered, locked stdout; a broken pipe means nobody reads any
//! more and is not an error of the run.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

/// Writes `text` as is.
pub fn text(text: &str) {
    emit(|out| out.write_all(text.as_bytes()));
}

/// Writes `value` as JSON and a newline: pretty for one-shot commands, one
/// line for the daemon's stream of reports. A value that cannot be
/// serialized is reported on stderr; returns whether it could be.
pub fn json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> bool {
    let mut serialized = true;
    emit(|out| {
        let result = if pretty {
            serde_json::to_writer_pretty(&mut *out, value)
        } else {
            serde_json::to_writer(&mut *out, value)
        };
        match result {
            Ok(()) => out.write_all(b"\n"),
            Err(error) if error.is_io() => Err(io::Error::from(error)),
            Err(error) => {
                serialized = false;
                eprintln!("trailvault: cannot serialize the output: {error}");
                Ok(())
            }
        }
    });
    serialized
}

fn emit(write: impl FnOnce(&mut BufWriter<io::StdoutLock<'static>>) -> io::Result<()>) {
    let mut out = BufWriter::new(io::stdout().lock());
    let result = write(&mut out).and_then(|()| out.flush());
    if let Err(error) = result {
        if error.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("trailvault: cannot write to stdout: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_cannot_be_serialized_is_reported_not_printed() {
        // A map with non-string keys is not JSON.
        let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(!json(&bad, true));
        assert!(json(&serde_json::json!({"ok": true}), false));
    }
}
