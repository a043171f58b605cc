//! What the run directory says about the runs since boot, for the monitoring formats: when the
//! last successful `apply` ended and how long it took (the `last-apply` stamp, whose text is
//! rendered and parsed here), how many runs failed (the `failures` counter), and this `status`
//! run's own time. The adapter (`host::runstate`) reads and writes the files.

/// The `last-apply` stamp: `<Unix seconds> <duration in seconds>`, one line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LastApply {
    /// When it ended, in Unix seconds.
    pub(crate) at: u64,
    /// How long it took, in seconds.
    pub(crate) took: f64,
}

impl LastApply {
    pub(crate) fn render(&self) -> String {
        format!("{} {:.3}\n", self.at, self.took)
    }

    /// The stamp as [`LastApply::render`] writes it; `None` for anything else (a damaged stamp
    /// reads as no apply since boot).
    pub(crate) fn parse(text: &str) -> Option<LastApply> {
        let mut words = text.split_whitespace();
        let at = words.next()?.parse().ok()?;
        let took: f64 = words.next()?.parse().ok()?;
        (words.next().is_none() && took.is_finite() && took >= 0.0)
            .then_some(LastApply { at, took })
    }
}

/// The runs since boot, as `status` reports them beside the host's state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RunStats {
    /// The last successful `apply` since boot, if any.
    pub(crate) last_apply: Option<LastApply>,
    /// Runs of `apply`, `plug` and `clear` that failed since boot.
    pub(crate) failures: u64,
    /// Now, in Unix seconds.
    pub(crate) now: u64,
    /// How long this `status` run took to observe and decide, in seconds.
    pub(crate) took: f64,
}

impl RunStats {
    /// Seconds since the last successful `apply`.
    pub(crate) fn last_apply_age(&self) -> Option<u64> {
        self.last_apply.map(|a| self.now.saturating_sub(a.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip_and_damage() {
        let a = LastApply {
            at: 1_767_225_600,
            took: 0.25,
        };
        assert_eq!(a.render(), "1767225600 0.250\n");
        assert_eq!(LastApply::parse(&a.render()), Some(a));
        for bad in ["", "12", "x 1", "12 y", "12 1 3", "12 -1", "12 NaN", "-5 1"] {
            assert_eq!(LastApply::parse(bad), None, "{bad:?}");
        }
        let stats = RunStats {
            last_apply: Some(a),
            now: a.at + 30,
            ..RunStats::default()
        };
        assert_eq!(stats.last_apply_age(), Some(30));
        let clock_back = RunStats {
            now: a.at - 1,
            ..stats
        };
        assert_eq!(clock_back.last_apply_age(), Some(0));
    }
}
