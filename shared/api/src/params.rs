//! Query-string filters with DIALS semantics, turned into SQL conditions with `$n` placeholders.

use datafusion::scalar::ScalarValue;
use regex::Regex;

use crate::error::ApiError;

/// Largest regular expression we compile (bytes of the compiled program): keeps costly patterns out.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a parameter filters.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `col = int`.
    IntEq,
    /// `col >= int`.
    IntGte,
    /// `col <= int`.
    IntLte,
    /// `col IN (ints)` (comma-separated).
    IntIn,
    /// `col = text`.
    StrEq,
    /// `col ~ regex` (unanchored search, PostgreSQL `~` semantics).
    Regex,
    /// `col = stable_id(namespace, text)`: name filters resolved to ids without a lookup.
    NameToId(&'static str),
    /// `file_id IN (files whose logical_file_name ~ regex)`.
    LfnRegex,
}

/// One accepted parameter.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// Query parameter name.
    pub param: &'static str,
    /// Column (SQL expression) it filters.
    pub column: &'static str,
    /// How.
    pub op: Op,
}

/// Conditions and their parameter values.
#[derive(Debug, Default)]
pub struct Conditions {
    /// SQL conditions (ANDed).
    pub sql: Vec<String>,
    /// Values for `$1..`.
    pub values: Vec<ScalarValue>,
}

impl Conditions {
    /// Adds a placeholder for `v` and returns its name (`$n`).
    pub fn bind(&mut self, v: ScalarValue) -> String {
        self.values.push(v);
        format!("${}", self.values.len())
    }

    /// The WHERE clause (`WHERE a AND b` or empty).
    pub fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// Parses an integer parameter (DIALS/DRF message on failure).
pub fn int(param: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad(param, "Enter a whole number."))
}

/// Compiles a user regex with a size limit (400 when invalid or too costly).
pub fn user_regex(param: &str, v: &str) -> Result<String, ApiError> {
    if v.len() > 1000 {
        return Err(ApiError::bad(
            param,
            "Regular expression too long (max 1000 characters).",
        ));
    }
    regex::RegexBuilder::new(v)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_: Regex| v.to_string())
        .map_err(|e| ApiError::bad(param, format!("Invalid regular expression: {e}")))
}

/// Applies every known filter present in `query` to `conds`. `lfn_table` is the file_index table
/// used by `logical_file_name__regex`.
pub fn apply(
    filters: &[Filter],
    query: &[(String, String)],
    conds: &mut Conditions,
    lfn_table: &str,
) -> Result<(), ApiError> {
    for f in filters {
        for (_, v) in query.iter().filter(|(k, _)| k == f.param) {
            let c = f.column;
            let cond = match f.op {
                Op::IntEq => format!(
                    "{c} = {}",
                    conds.bind(ScalarValue::Int64(Some(int(f.param, v)?)))
                ),
                Op::IntGte => format!(
                    "{c} >= {}",
                    conds.bind(ScalarValue::Int64(Some(int(f.param, v)?)))
                ),
                Op::IntLte => format!(
                    "{c} <= {}",
                    conds.bind(ScalarValue::Int64(Some(int(f.param, v)?)))
                ),
                Op::IntIn => {
                    let items: Vec<&str> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect();
                    if items.is_empty() || items.len() > 1000 {
                        return Err(ApiError::bad(
                            f.param,
                            "Give 1 to 1000 comma-separated whole numbers.",
                        ));
                    }
                    let mut ph = Vec::with_capacity(items.len());
                    for it in items {
                        let n = int(f.param, it)?;
                        ph.push(conds.bind(ScalarValue::Int64(Some(n))));
                    }
                    format!("{c} IN ({})", ph.join(", "))
                }
                Op::StrEq => format!("{c} = {}", conds.bind(ScalarValue::Utf8(Some(v.clone())))),
                Op::Regex => format!(
                    "{c} ~ {}",
                    conds.bind(ScalarValue::Utf8(Some(user_regex(f.param, v)?)))
                ),
                Op::NameToId(ns) => {
                    format!(
                        "{c} = {}",
                        conds.bind(ScalarValue::Int64(Some(dials_lake::ids::stable_id(ns, v))))
                    )
                }
                Op::LfnRegex => {
                    let p = conds.bind(ScalarValue::Utf8(Some(user_regex(f.param, v)?)));
                    format!(
                        "{c} IN (SELECT file_id FROM {lfn_table} WHERE logical_file_name ~ {p})"
                    )
                }
            };
            conds.sql.push(cond);
        }
    }
    Ok(())
}
