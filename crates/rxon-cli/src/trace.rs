//! W3C Trace Context values the command line passes along: `traceparent` and
//! `tracestate` headers of `POST /admin/tasks` into the task's `tracing_context`, and a
//! task's context into its command's environment (`TRACEPARENT`, `TRACESTATE`, as
//! OpenTelemetry names them for processes). Checked for shape, passed on unchanged.

/// The key of the parent span: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The key of the vendors' entries.
pub(crate) const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` passed on (what W3C asks implementations to propagate).
const MAX_TRACESTATE: usize = 512;

/// A version-00 `traceparent` whose trace and span ids are not all zero.
pub(crate) fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts.as_slice(), [v, trace, span, flags]
        if *v == "00" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && nonzero(trace) && nonzero(span))
}

/// A `tracestate` of printable ASCII within [`MAX_TRACESTATE`] bytes.
pub(crate) fn is_tracestate(value: &str) -> bool {
    value.len() <= MAX_TRACESTATE && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The trace context `get` finds, each key only when well-formed; `tracestate` only
/// beside a `traceparent`.
pub(crate) fn context<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Vec<(&'static str, String)> {
    let Some(parent) = get(TRACEPARENT).filter(|v| is_traceparent(v)) else {
        return Vec::new();
    };
    let mut out = vec![(TRACEPARENT, parent.to_owned())];
    if let Some(state) = get(TRACESTATE).filter(|v| !v.is_empty() && is_tracestate(v)) {
        out.push((TRACESTATE, state.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn only_well_formed_values_pass() {
        assert!(is_traceparent(PARENT));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(!is_traceparent(bad), "{bad:?}");
        }
        assert!(is_tracestate("rxon=1,vendor=a b"));
        assert!(!is_tracestate("a=\n"));
        assert!(!is_tracestate(&"a".repeat(MAX_TRACESTATE + 1)));
    }

    #[test]
    fn a_tracestate_travels_only_with_a_valid_parent() {
        let both = |p: &'static str, s: &'static str| {
            context(move |k| match k {
                TRACEPARENT => Some(p),
                TRACESTATE => Some(s),
                _ => None,
            })
        };
        assert_eq!(
            both(PARENT, "a=1"),
            vec![
                (TRACEPARENT, PARENT.to_owned()),
                (TRACESTATE, "a=1".to_owned())
            ]
        );
        assert!(both("junk", "a=1").is_empty());
        assert_eq!(
            both(PARENT, "a=\u{7f}"),
            vec![(TRACEPARENT, PARENT.to_owned())]
        );
    }
}
