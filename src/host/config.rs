//! Reading the tool's configuration file (its rules are [`crate::decide::config`]).

use std::path::{Path, PathBuf};

use crate::decide::config::{Config, ConfigError};
use crate::error::UsageError;

pub const DEFAULT_PATH: &str = "/etc/ovs-autoattach/config.yaml";

/// Largest configuration file accepted.
const MAX_BYTES: u64 = 1024 * 1024;

/// Why a configuration file was refused.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read (an explicit file that is missing included), or is too large.
    Read(String),
    /// Its contents are refused.
    Invalid(ConfigError),
}

/// Loads `path`, or the default file when `path` is `None`: a missing default file means the
/// built-in defaults; a missing explicit file is an error. A refusal is a [`UsageError`] (exit
/// 2) that names the file and the line.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    read(path).map_err(|(path, e)| {
        let message = match e {
            LoadError::Read(message) => message,
            LoadError::Invalid(e) => format!("{}: {e}", path.display()),
        };
        UsageError(message).into()
    })
}

/// [`load`], with the refusal as data: the file it concerns and what is wrong.
pub fn read(path: Option<&Path>) -> Result<Config, (PathBuf, LoadError)> {
    let (path, explicit) = match path {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_PATH), false),
    };
    let refused = |e| (path.to_path_buf(), e);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Config::default());
        }
        Err(e) => {
            return Err(refused(LoadError::Read(format!(
                "reading {}: {e}",
                path.display()
            ))));
        }
    };
    if meta.len() > MAX_BYTES {
        return Err(refused(LoadError::Read(format!(
            "{}: {} bytes is too large for a configuration file",
            path.display(),
            meta.len()
        ))));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| refused(LoadError::Read(format!("reading {}: {e}", path.display()))))?;
    Config::parse(&text).map_err(|e| refused(LoadError::Invalid(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_default_file_is_defaults_but_explicit_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.yaml");
        let e = load(Some(&missing)).unwrap_err();
        assert!(e.is::<UsageError>());
        std::fs::write(&missing, "bridge: x y\n").unwrap();
        let e = load(Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("none.yaml"), "{e}");
    }
}
