use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Reading a connection's first bytes failed (the client reset it, say).
///
/// [`Detect`](super::Detect) widens it to a [`BoxError`](crate::BoxError): ask
/// `err.is::<ReadError>()` to tell it from the inner service's errors. The I/O error is its
/// [`source`](StdError::source).
#[derive(Debug)]
pub struct ReadError(io::Error);

// === impl ReadError ===

impl ReadError {
    pub(super) fn new(error: io::Error) -> Self {
        Self(error)
    }

    /// The kind of the I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind()
    }

    /// The I/O error.
    pub fn into_io(self) -> io::Error {
        self.0
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to read the client's first bytes for protocol detection")
    }
}

impl StdError for ReadError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}
