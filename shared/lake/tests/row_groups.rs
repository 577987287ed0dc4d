//! Row groups end at lumisection boundaries: a file read in `Indices` order never splits one
//! lumisection's rows of a table across two row groups, whatever the row-group size. Its own test
//! binary: the size comes from the environment (`DIALS_ROW_GROUP_ROWS`), set before any thread starts.

mod common;

use common::{expected, ingest_small_fixture_blocking, rows};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

#[test]
fn a_lumisection_never_straddles_two_row_groups() {
    // The fixture has 8 rows per lumisection and table: 12-row groups cut by count alone would
    // split the second lumisection.
    std::env::set_var("DIALS_ROW_GROUP_ROWS", "12");
    let dir = ingest_small_fixture_blocking("row-groups");
    let mut checked = 0;
    for table in ["th1", "th2"] {
        {
            for f in common::committed(&dir.join("default").join(table)) {
                let reader = SerializedFileReader::new(std::fs::File::open(&f).expect("open"))
                    .expect("parquet");
                let meta = reader.metadata();
                let ls_col = meta
                    .file_metadata()
                    .schema_descr()
                    .columns()
                    .iter()
                    .position(|c| c.name() == "ls_number")
                    .expect("ls");
                let ranges: Vec<(i64, i64, i64)> = meta
                    .row_groups()
                    .iter()
                    .map(|rg| match rg.column(ls_col).statistics() {
                        Some(Statistics::Int64(s)) => (
                            *s.min_opt().expect("min"),
                            *s.max_opt().expect("max"),
                            rg.num_rows(),
                        ),
                        other => panic!("ls_number statistics: {other:?}"),
                    })
                    .collect();
                assert!(
                    ranges.len() >= 2,
                    "{table}: several row groups at 12 rows ({ranges:?})"
                );
                for w in ranges.windows(2) {
                    assert!(
                        w[0].1 < w[1].0,
                        "{table}: lumisection split across row groups: {ranges:?}"
                    );
                }
                assert!(ranges.iter().all(|r| r.2 <= 12), "{table}: {ranges:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "th1 and th2 files of both runs");
    // And the rows are still exactly ROOT's.
    assert_eq!(rows(&dir.join("default").join("th1"), 1), expected(1));
    assert_eq!(rows(&dir.join("default").join("th2"), 2), expected(2));
}
