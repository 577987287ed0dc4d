//! The response budget: every response must fit the deployed path.
//!
//! The query function answers through API Gateway with Lambda's buffered response, whose whole JSON
//! envelope (`{"statusCode":..,"headers":..,"body":"..","isBase64Encoded":..}`) may be at most 6 MB.
//! Text bodies travel as a JSON string (each `"` and `\` escaped: one byte more each); binary bodies
//! (Arrow, Parquet) travel base64-encoded (4 bytes per 3). So bodies are budgeted by their size *on
//! that wire*, not their raw size: list pages hold fewer rows than `page_size` when the budget is hit
//! (with `next` set, and `X-Dials-Truncated` saying why), bulk exports paginate the same way, and an
//! item that alone exceeds the budget is a 413 that names a way around it instead of a response the
//! function cannot return. The same router serves `dials serve`, so local and deployed pages match.

/// Default budget of a response body on the wire: 6 MB less room for the envelope and headers.
pub const DEFAULT_MAX_BYTES: usize = 5_500_000;

/// Bytes kept for what a page adds around its rows (`next`/`previous` URLs, brackets, envelope).
pub const PAGE_OVERHEAD: usize = 16 * 1024;

/// Header set on a page or export that holds fewer rows than asked because of the budget.
pub const TRUNCATED_HEADER: &str = "x-dials-truncated";

/// The budget in wire bytes: `DIALS_RESPONSE_MAX_BYTES`, default [`DEFAULT_MAX_BYTES`]; `0` lifts it
/// (a local server with no Lambda in front). Read per request, so it can be changed without a rebuild.
pub fn max_bytes() -> usize {
    match std::env::var("DIALS_RESPONSE_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => DEFAULT_MAX_BYTES,
    }
}

/// Size of a text body inside the Lambda envelope (JSON string escaping of `"` and `\`; our bodies
/// hold no raw control characters, JSON escapes them already).
pub fn text_wire_len(body: &[u8]) -> usize {
    body.len() + body.iter().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// Size of a binary body inside the Lambda envelope (base64).
pub fn binary_wire_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Raw bytes of a binary body whose base64 fits `wire` bytes.
pub fn binary_raw_budget(wire: usize) -> usize {
    (wire / 4).saturating_mul(3)
}

/// How many leading rows fit `budget` wire bytes, given each row's wire size; a JSON array adds one
/// byte per row (the `,` or `]`) and one for `[`.
pub fn rows_that_fit(row_wire: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let mut used = 1usize;
    let mut n = 0;
    for w in row_wire {
        used = used.saturating_add(w + 1);
        if used > budget {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_sizes() {
        assert_eq!(text_wire_len(br#"{"a":"b\\c"}"#), 12 + 4 + 2);
        assert_eq!(binary_wire_len(0), 0);
        assert_eq!(binary_wire_len(3), 4);
        assert_eq!(binary_wire_len(4), 8);
        assert!(binary_wire_len(binary_raw_budget(6_000_000)) <= 6_000_000);
        assert_eq!(rows_that_fit([3, 3, 3], 1 + 4 + 4), 2);
        assert_eq!(rows_that_fit([10], 5), 0);
    }
}
