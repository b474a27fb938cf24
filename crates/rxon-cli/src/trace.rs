//! W3C Trace Context values the command line passes along: `traceparent` and
//! `tracestate` headers of `POST /admin/tasks` into the task's `tracing_context`, and a
//! task's context into its command's environment (`TRACEPARENT`, `TRACESTATE`, as
//! OpenTelemetry names them for processes). Checked for shape
//! ([`rxon::validate::is_traceparent`]), passed on unchanged.

use rxon::validate::{is_traceparent, is_tracestate};

/// The key of the parent span: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The key of the vendors' entries.
pub(crate) const TRACESTATE: &str = "tracestate";

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
