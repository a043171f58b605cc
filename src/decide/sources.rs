//! Whether the host's interfaces file makes ifupdown2 read the tool's own file.
//!
//! ifupdown2 (3.0, Debian's and Proxmox's) reads other files only through `source PATTERN`
//! lines, where PATTERN is a glob expanded with Python's `glob` (so `*` does not match `/` or a
//! leading `.`). It does not know `source-directory`, which classic ifupdown reads: such a line
//! is reported, not counted.

use std::path::Path;

use crate::decide::glob;

/// How the interfaces file refers to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sourced {
    /// A `source` line at this 1-based line matches it.
    Yes(usize),
    /// Only a `source-directory` line (at this line) would cover it, and ifupdown2 ignores those.
    DirectoryOnly(usize),
    No,
}

/// Looks for a line in `interfaces` that makes ifupdown2 read `target` (an absolute path).
pub fn sourced(interfaces: &str, target: &Path) -> Sourced {
    let Some(target) = target.to_str() else {
        return Sourced::No;
    };
    let mut directory_only = None;
    for (i, line) in interfaces.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["source", pattern] if path_matches(pattern, target) => return Sourced::Yes(i + 1),
            ["source-directory", dir]
                if Path::new(target).parent() == Some(Path::new(dir.trim_end_matches('/'))) =>
            {
                directory_only.get_or_insert(i + 1);
            }
            _ => {}
        }
    }
    directory_only.map_or(Sourced::No, Sourced::DirectoryOnly)
}

/// The line to add so that ifupdown2 reads `target`.
pub fn line_to_add(target: &Path) -> String {
    match target.parent() {
        Some(dir) => format!("source {}/*", dir.display()),
        None => format!("source {}", target.display()),
    }
}

/// A glob pattern over a whole path, one component at a time, as Python's `glob` expands it.
fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.starts_with('/') {
        return false;
    }
    let p: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let t: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    p.len() == t.len()
        && p.iter().zip(&t).all(|(p, t)| {
            let hidden_by_glob = t.starts_with('.') && !p.starts_with('.');
            !hidden_by_glob && glob::matches(p, t)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "/etc/network/interfaces.d/ovs-autoattach";

    #[test]
    fn proxmoxs_default_line_sources_it() {
        let file = "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n";
        assert_eq!(sourced(file, Path::new(OURS)), Sourced::Yes(4));
    }

    #[test]
    fn other_patterns() {
        for (line, want) in [
            ("source /etc/network/interfaces.d/ovs-autoattach", true),
            ("source /etc/network/interfaces.d/ovs-*", true),
            ("source /etc/network/interfaces.d/[a-z]*", true),
            ("source /etc/network/*/*", true),
            ("source\t/etc/network/interfaces.d/*", true),
            ("source /etc/network/interfaces.d/*.cfg", false),
            ("source /etc/network/interfaces.d/sdn", false),
            ("source /etc/network/*", false),
            ("source interfaces.d/*", false),
            ("# source /etc/network/interfaces.d/*", false),
            ("    source /etc/network/interfaces.d/*", true),
        ] {
            assert_eq!(
                matches!(sourced(line, Path::new(OURS)), Sourced::Yes(_)),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn source_directory_is_reported_apart() {
        assert_eq!(
            sourced(
                "source-directory /etc/network/interfaces.d\n",
                Path::new(OURS)
            ),
            Sourced::DirectoryOnly(1)
        );
        assert_eq!(sourced("", Path::new(OURS)), Sourced::No);
    }

    #[test]
    fn a_glob_never_matches_a_hidden_file() {
        assert!(!path_matches(
            "/etc/network/interfaces.d/*",
            "/etc/network/interfaces.d/.ovs-autoattach.x.tmp"
        ));
    }

    #[test]
    fn the_line_to_add() {
        assert_eq!(
            line_to_add(Path::new(OURS)),
            "source /etc/network/interfaces.d/*"
        );
    }
}
