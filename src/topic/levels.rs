//! Splitting a topic into its levels.

/// The levels of a topic (what `topic.split('/')` gives), found by a byte scan: cheaper than
/// the general `str` pattern search for the short levels topics have, on every message.
#[derive(Clone, Debug)]
pub struct Levels<'t> {
    rest: Option<&'t str>,
}

/// The levels of `topic`.
pub fn levels(topic: &str) -> Levels<'_> {
    Levels { rest: Some(topic) }
}

impl<'t> Iterator for Levels<'t> {
    type Item = &'t str;

    #[inline]
    fn next(&mut self) -> Option<&'t str> {
        let rest = self.rest?;
        match rest.bytes().position(|b| b == b'/') {
            Some(i) => {
                self.rest = rest.get(i + 1..);
                rest.get(..i)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_split_like_str_split() {
        for t in ["", "/", "a", "/a", "a/", "//", "/sys/pk/dn/thing/event/property/post", "sys/pk/integration/up_raw", "é/漢字//🙂/"] {
            assert_eq!(super::levels(t).collect::<Vec<_>>(), t.split('/').collect::<Vec<_>>(), "{t:?}");
        }
    }
}
