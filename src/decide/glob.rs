//! Shell-style glob patterns for the `exclude` setting: `*`, `?` and `[...]` classes (with ranges
//! and `!`/`^` negation). Interface names are ASCII, so matching is byte-wise.

/// Checks that `pattern` is well formed (every `[` closed), so a typo in the configuration is a
/// usage error at load time rather than a pattern that silently never matches.
pub fn validate(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an exclude pattern cannot be empty".into());
    }
    let p = pattern.as_bytes();
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'[' {
            match class_end(p, i) {
                Some(end) => i = end,
                None => return Err(format!("exclude pattern {pattern:?} has an unclosed '['")),
            }
        }
        i += 1;
    }
    Ok(())
}

/// Whether `name` matches `pattern` as a whole.
pub fn matches(pattern: &str, name: &str) -> bool {
    matches_at(pattern.as_bytes(), name.as_bytes())
}

fn matches_at(p: &[u8], n: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice and no recursion depth
    // to worry about for long hostile patterns.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                b'[' => {
                    if let Some(end) = class_end(p, pi) {
                        if class_matches(&p[pi + 1..end], n[ni]) {
                            pi = end + 1;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == b'[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Index of the `]` closing the class opened at `open`, if any. A `]` right after the opening
/// (or after its negation) is a literal, as in POSIX.
fn class_end(p: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if i < p.len() && (p[i] == b'!' || p[i] == b'^') {
        i += 1;
    }
    if i < p.len() && p[i] == b']' {
        i += 1;
    }
    while i < p.len() {
        if p[i] == b']' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negated, class) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' {
            hit |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            hit |= class[i] == c;
            i += 1;
        }
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_star_question() {
        assert!(matches("tap100i0", "tap100i0"));
        assert!(!matches("tap100i0", "tap100i1"));
        assert!(matches("tap9*", "tap900i0"));
        assert!(matches("*i1", "veth100i1"));
        assert!(!matches("*i1", "veth100i10"));
        assert!(matches("veth???i0", "veth100i0"));
        assert!(!matches("veth???i0", "veth1000i0"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn classes() {
        assert!(matches("tap[12]*", "tap100i0"));
        assert!(!matches("tap[!12]*", "tap100i0"));
        assert!(matches("tap[3-5]00i0", "tap400i0"));
        assert!(!matches("tap[3-5]00i0", "tap600i0"));
        assert!(matches("veth[^0-9]*", "vethAbC"));
    }

    #[test]
    fn validation() {
        assert!(validate("tap*").is_ok());
        assert!(validate("tap[1-3]").is_ok());
        assert!(validate("tap[1-3").is_err());
        assert!(validate("").is_err());
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let name = "a".repeat(15);
        assert!(!matches(
            &"*a".repeat(40).to_string().replace("a", "a*b"),
            &name
        ));
    }
}
