//! The two error kinds that are not runtime failures: a usage error (exit 2) and a command that
//! already printed its whole result with its own exit status.

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

/// A command that printed its whole result and ends with this exit status (a monitoring
/// plugin's 2 or 3); `main` logs nothing more.
#[derive(Debug)]
pub struct Finished(pub u8);

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Finished {}
