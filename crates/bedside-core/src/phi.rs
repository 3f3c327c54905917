//! Protected health information that must never be printed by accident.

use std::fmt;

/// A value that may contain protected health information (names, identifiers, dates).
///
/// `Debug` and `Display` print `<redacted>`; the value is reached only through the explicit
/// [`Phi::expose`] accessor, which makes every place that handles raw PHI easy to find.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    /// Wraps a value that may carry PHI.
    pub fn new(value: T) -> Self {
        Phi(value)
    }

    /// Returns the raw value. Callers must not log or display it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Consumes the wrapper, returning the raw value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let p = Phi::new("SMITH^JOHN".to_string());
        assert_eq!(format!("{p}"), "<redacted>");
        assert_eq!(format!("{p:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(p.clone())), "Some(<redacted>)");
        assert_eq!(p.expose(), "SMITH^JOHN");
    }
}
