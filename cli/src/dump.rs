//! `dials dump`: JSON Lines, one line per element per (run, lumisection).

use std::io::Write;
use std::path::Path;

use dials_dqmio::dump::DumpLine;
use dials_dqmio::Selection;

use crate::CliError;

/// Runs `dials dump`.
pub fn run(path: &Path, me_regex: Option<&str>) -> Result<(), CliError> {
    let file = crate::open(path)?;
    let mut sel = Selection::default();
    if let Some(r) = me_regex {
        sel.name =
            Some(regex::Regex::new(r).map_err(|e| CliError::Usage(format!("--me-regex: {e}")))?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut io_err = None;
    file.for_each(&sel, |me| {
        let line = DumpLine::new(&me);
        let res = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"));
        if let Err(e) = res {
            io_err = Some(e);
            return Err(dials_dqmio::Error::Unsupported("output closed".into()));
        }
        Ok(())
    })
    .or_else(|source| match io_err.take() {
        // The reader went away (`| head`): stop quietly, as Unix tools do.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(CliError::Output(e)),
        None => Err(CliError::Read {
            path: path.display().to_string(),
            source,
        }),
    })?;
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(CliError::Output),
    }
}
