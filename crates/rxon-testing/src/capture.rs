//! [`Captured`]: an in-memory writer for checking what a program logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Collects every byte written to it (or to any of its clones): give a clone to a log
/// subscriber as its writer, then read [`text`](Self::text) to check what was logged.
///
/// ```
/// use std::io::Write;
/// let logs = rxon_testing::Captured::default();
/// let mut writer = logs.clone();
/// writer.write_all(b"hello").unwrap();
/// assert_eq!(logs.text(), "hello");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
