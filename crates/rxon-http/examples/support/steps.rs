//! The PASS/FAIL tally the interop examples print (`#[path]`-included by each).

/// Failed steps so far.
pub(crate) struct Steps(pub(crate) usize);

impl Steps {
    /// Prints `PASS name`, or `FAIL name: detail` and counts it.
    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            println!("PASS {name}");
        } else {
            println!("FAIL {name}: {detail:?}");
            self.0 += 1;
        }
    }
}
