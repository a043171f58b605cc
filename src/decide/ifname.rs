//! Interface and bridge names.
//!
//! Every name that reaches OVSDB, a host file or a log line passes through [`validate`] first, so
//! hostile input (a hook argument, a guest configuration value) stops at the edge. The accepted
//! alphabet is deliberately narrower than what Linux allows: names end up unquoted in
//! `/etc/network/interfaces` and in `ovs-vsctl` command lines that ifupdown2 builds from it.

/// The longest name Linux accepts (`IFNAMSIZ` - 1).
pub const MAX_LEN: usize = 15;

/// Checks `name` as a Linux interface name: 1–15 bytes, not `.` or `..`, and only ASCII
/// letters, digits, `-`, `_` and `.` (so no `/`, whitespace, `:` or shell metacharacters).
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "{name:?} is {} bytes long; Linux interface names have at most {MAX_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; interface names are limited to letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Like [`validate`], for raw bytes from the command line (which need not be UTF-8).
pub fn validate_os(name: &std::ffi::OsStr) -> Result<&str, String> {
    let s = name
        .to_str()
        .ok_or_else(|| format!("{name:?} is not valid UTF-8, so it is not an interface name"))?;
    validate(s).map(|()| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_names() {
        for n in [
            "tap100i0",
            "veth999999999i3",
            "vmbr0",
            "bond0.100",
            "enp3s0f0",
            "a",
            "x_y-z",
        ] {
            assert_eq!(validate(n), Ok(()), "{n}");
        }
        assert_eq!(validate("veth1234567890a"), Ok(())); // exactly 15 bytes
    }

    #[test]
    fn rejects_hostile_names() {
        for n in [
            "",
            ".",
            "..",
            "veth1234567890ab",
            "a/b",
            "a b",
            "a\tb",
            "a\nb",
            "a:b",
            "tap$(id)",
            "tap;rm",
            "tap`x`",
            "tap|x",
            "tap'x",
            "t\u{e4}p",
            "tap\0",
        ] {
            assert!(validate(n).is_err(), "{n:?} should be refused");
        }
    }

    #[test]
    fn rejects_non_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"tap\xff0");
        assert!(validate_os(raw).unwrap_err().contains("UTF-8"));
        assert_eq!(validate_os(std::ffi::OsStr::new("tap1i0")), Ok("tap1i0"));
    }
}
