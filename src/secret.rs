//! Bearer-token checks that take the same time whatever the token: SHA-256 digests compared
//! byte for byte without stopping early, so neither where a token differs nor its length shows
//! in the answer's timing. Used by the rules API and the HTTP upload.

use sha2::{Digest, Sha256};

/// Whether `given` is one of `tokens` (`None`: nothing to match, e.g. an unknown orgId), in a
/// time that depends on neither where the token differs nor which of them matched; with no
/// tokens it still compares against a dummy.
pub fn token_matches(tokens: Option<&[String]>, given: &[u8]) -> bool {
    let given = Sha256::digest(given);
    match tokens {
        Some(ts) => ts.iter().fold(false, |ok, t| ok | digest_is(t.as_bytes(), &given)),
        None => {
            let _ = std::hint::black_box(digest_is(b"sluice-unknown-token", &given));
            false
        }
    }
}

/// Whether `given` is `token`, in constant time.
pub fn same_secret(given: &[u8], token: &str) -> bool {
    digest_is(token.as_bytes(), &Sha256::digest(given))
}

/// Whether `token`'s digest is `digest`, comparing every byte.
fn digest_is(token: &[u8], digest: &[u8]) -> bool {
    Sha256::digest(token).iter().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let ts = vec!["a-token".to_string(), "other".to_string()];
        assert!(token_matches(Some(&ts), b"other"));
        assert!(!token_matches(Some(&ts), b"a-toke"));
        assert!(!token_matches(Some(&ts), b""));
        assert!(!token_matches(None, b"a-token"));
        assert!(same_secret(b"s3cret", "s3cret"));
        assert!(!same_secret(b"s3cret ", "s3cret"));
    }
}
