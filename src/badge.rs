//! Badge rendering (placeholder: being written).

/// A badge that reports an error message.
pub fn error_badge(message: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<svg xmlns=\"http://www.w3.org/2000/svg\"><text>{escaped}</text></svg>")
}
