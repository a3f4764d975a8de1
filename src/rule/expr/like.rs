//! `LIKE` patterns, compiled once.

use smallvec::SmallVec;

/// A compiled LIKE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LikePattern {
    toks: Vec<LikeTok>,
    case_insensitive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LikeTok {
    Char(char),
    One,
    Any,
}

impl LikePattern {
    /// Compiles `%` (any run) and `_` (one character); `escape` makes the next character literal.
    pub fn new(pattern: &str, escape: Option<char>, case_insensitive: bool) -> LikePattern {
        let mut toks = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let tok = match c {
                c if Some(c) == escape => LikeTok::Char(chars.next().unwrap_or(c)),
                '%' => LikeTok::Any,
                '_' => LikeTok::One,
                c if case_insensitive => LikeTok::Char(c.to_ascii_lowercase()),
                c => LikeTok::Char(c),
            };
            if !(tok == LikeTok::Any && toks.last() == Some(&LikeTok::Any)) {
                toks.push(tok);
            }
        }
        LikePattern { toks, case_insensitive }
    }

    /// Whether `text` matches (iterative wildcard matching with backtracking to the last `%`).
    pub fn matches(&self, text: &str) -> bool {
        let text: SmallVec<[char; 64]> = if self.case_insensitive { text.chars().map(|c| c.to_ascii_lowercase()).collect() } else { text.chars().collect() };
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.toks.get(p) {
                Some(LikeTok::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(LikeTok::One) => {
                    p += 1;
                    t += 1;
                }
                Some(LikeTok::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == LikeTok::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        let p = LikePattern::new("dev%_1", None, false);
        assert!(p.matches("device_1"));
        assert!(p.matches("dev_1"));
        assert!(!p.matches("dev1"));
        assert!(LikePattern::new("%", None, false).matches(""));
        assert!(LikePattern::new("a\\%", Some('\\'), false).matches("a%"));
        assert!(!LikePattern::new("a\\%", Some('\\'), false).matches("ab"));
        assert!(LikePattern::new("ON%", None, true).matches("online"));
        assert!(LikePattern::new("%a%b%", None, false).matches("xxaxxbxx"));
    }
}
