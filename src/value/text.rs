//! Text forms: base64 of bytes, and floats as JSON writes them.

/// Standard base64 with padding.
pub fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Decodes standard base64 (padding required, surrounding whitespace ignored).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|e| format!("not base64: {e}"))
}

/// Formats a float the way it is written in JSON (shortest round-trip form, `.0` kept).
pub fn format_float(f: f64) -> String {
    if f.is_finite() {
        serde_json::Number::from_f64(f).map_or_else(|| "null".into(), |n| n.to_string())
    } else if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}
