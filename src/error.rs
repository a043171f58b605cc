//! The one error kind that is not a runtime failure.

/// An error in what the user asked for: bad arguments or a bad configuration. Nothing has been
/// touched when it is returned; `main` maps it to exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
