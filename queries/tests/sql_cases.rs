//! Runs the SQL case files `queries/tests/sql/*.sql` against the deterministic data set of
//! `common/mod.rs` and compares each result with its expected table exactly.
//!
//! Case file format (every file stays valid SQL, the expectations being comments):
//!
//! ```text
//! -- case: name_of_the_case
//! -- free text: what the case shows, hand computations of expected values
//! -- rowsort                      (optional: compare rows sorted, for statements without ORDER BY)
//! SELECT ... ORDER BY ...;
//! -- expected:
//! -- +-----+
//! -- | col |                     (arrow's pretty_format_batches_with_schema)
//! -- +-----+
//! ```
//!
//! or, for a query that must fail, `-- expected error: <substring of the message>` instead of
//! the table. Results are compared as printed, so cases must ORDER BY (or say `rowsort`).
//!
//! `UPDATE_EXPECTED=1 cargo test -p redwatch-queries --test sql_cases` rewrites the expected
//! tables from the current results (error expectations are kept); review the diff by hand.

mod common;

use arrow::util::pretty::pretty_format_batches_with_schema;
use redwatch_queries::query::QueryEngine;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug)]
enum Expected {
    Table(Vec<String>),
    Error(String),
}

#[derive(Debug)]
struct Case {
    name: String,
    /// 1-based line of the `-- case:` header.
    line: usize,
    sql: String,
    rowsort: bool,
    expected: Expected,
    /// Line range (0-based, end exclusive) of the expected table lines, for rewriting.
    table_lines: Option<(usize, usize)>,
}

const CASE: &str = "-- case:";
const EXPECTED: &str = "-- expected:";
const EXPECTED_ERROR: &str = "-- expected error:";

fn is_table_line(l: &str) -> bool {
    l.starts_with("-- +") || l.starts_with("-- |")
}

fn parse(path: &Path, text: &str) -> Result<Vec<Case>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut i = 0;
    // Anything before the first case is the file's header comment.
    while i < lines.len() && !lines[i].starts_with(CASE) {
        i += 1;
    }
    while i < lines.len() {
        let header = lines[i];
        let name = header[CASE.len()..].trim().to_string();
        let line = i + 1;
        let at = |n: usize| format!("{}:{}", path.display(), n + 1);
        i += 1;
        let mut rowsort = false;
        let mut sql = String::new();
        let mut expected = None;
        let mut table_lines = None;
        while i < lines.len() && !lines[i].starts_with(CASE) {
            let l = lines[i];
            if let Some(msg) = l.strip_prefix(EXPECTED_ERROR) {
                expected = Some(Expected::Error(msg.trim().to_string()));
                i += 1;
            } else if l.trim_end() == EXPECTED {
                let start = i + 1;
                let mut end = start;
                while end < lines.len() && is_table_line(lines[end]) {
                    end += 1;
                }
                let table = lines[start..end]
                    .iter()
                    .map(|l| l[3..].to_string())
                    .collect();
                expected = Some(Expected::Table(table));
                table_lines = Some((start, end));
                i = end;
            } else if l.trim_end() == "-- rowsort" {
                rowsort = true;
                i += 1;
            } else if l.trim_start().starts_with("--") || l.trim().is_empty() {
                // Description, hand computations, blank lines.
                i += 1;
            } else {
                if expected.is_some() {
                    return Err(format!(
                        "{}: SQL after the expected block of case {name}",
                        at(i)
                    ));
                }
                sql.push_str(l);
                sql.push('\n');
                i += 1;
            }
        }
        let sql = sql.trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err(format!("{}: case {name} has no SQL", at(line - 1)));
        }
        let Some(expected) = expected else {
            return Err(format!(
                "{}: case {name} has no `{EXPECTED}` or `{EXPECTED_ERROR}` line",
                at(line - 1)
            ));
        };
        cases.push(Case {
            name,
            line,
            sql,
            rowsort,
            expected,
            table_lines,
        });
    }
    Ok(cases)
}

/// The printed result, one string per line; with `rowsort` the data rows are sorted.
async fn run(engine: &QueryEngine, case: &Case) -> Result<Vec<String>, String> {
    let r = engine.execute(&case.sql).await.map_err(|e| e.to_string())?;
    let text = pretty_format_batches_with_schema(r.schema.clone(), &r.batches)
        .map_err(|e| format!("formatting: {e}"))?
        .to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if case.rowsort && lines.len() > 4 {
        // +---+ / header / +---+ / rows... / +---+
        let n = lines.len();
        lines[3..n - 1].sort();
    }
    Ok(lines)
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
}

fn rewrite(text: &str, cases: &[Case], results: &[Option<Vec<String>>]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut replace: Vec<(usize, usize, &Vec<String>)> = cases
        .iter()
        .zip(results)
        .filter_map(|(c, r)| Some((c.table_lines?.0, c.table_lines?.1, r.as_ref()?)))
        .collect();
    replace.sort_by_key(|r| r.0);
    let mut out = String::new();
    let mut i = 0;
    for (start, end, table) in replace {
        for l in &lines[i..start] {
            out.push_str(l);
            out.push('\n');
        }
        for l in table {
            let _ = writeln!(out, "-- {l}");
        }
        i = end;
    }
    for l in &lines[i..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[test]
fn sql_case_files() {
    let update = std::env::var("UPDATE_EXPECTED").is_ok_and(|v| v == "1");
    let engine = common::engine(common::build_red_table(), common::limits());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    let files = case_files();
    assert!(!files.is_empty(), "no case files in queries/tests/sql");
    let mut failures = Vec::new();
    let mut total = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("case file readable");
        let cases = match parse(path, &text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        assert!(!cases.is_empty(), "{} holds no case", path.display());
        let mut results = Vec::new();
        for case in &cases {
            total += 1;
            let got = rt.block_on(run(&engine, case));
            let place = format!("{}:{} ({})", path.display(), case.line, case.name);
            match (&case.expected, &got) {
                (Expected::Table(want), Ok(got)) if want == got => {}
                (Expected::Table(want), Ok(got)) => failures.push(format!(
                    "{place}: result differs\n--- expected\n{}\n--- got\n{}\n--- query\n{}",
                    want.join("\n"),
                    got.join("\n"),
                    case.sql
                )),
                (Expected::Table(_), Err(e)) => failures.push(format!(
                    "{place}: query failed: {e}\n--- query\n{}",
                    case.sql
                )),
                (Expected::Error(want), Err(e)) if e.contains(want.as_str()) => {}
                (Expected::Error(want), Err(e)) => failures.push(format!(
                    "{place}: error message `{e}` does not contain `{want}`"
                )),
                (Expected::Error(want), Ok(got)) => failures.push(format!(
                    "{place}: expected an error containing `{want}`, got\n{}",
                    got.join("\n")
                )),
            }
            results.push(got.ok());
        }
        if update {
            let new = rewrite(&text, &cases, &results);
            if new != text {
                std::fs::write(path, new).expect("case file writable");
                eprintln!("updated {}", path.display());
            }
        }
    }
    if update {
        eprintln!("UPDATE_EXPECTED=1: expected tables rewritten; review the diff by hand");
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {total} SQL cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{total} SQL cases passed in {} files", files.len());
}

#[test]
fn parser_reads_tables_errors_and_directives() {
    let text = "-- header\n-- case: a\n-- note\n-- rowsort\nSELECT 1\n  AS x;\n-- expected:\n-- +---+\n-- | x |\n-- +---+\n\n-- case: b\nDROP TABLE red;\n-- expected error: read-only\n";
    let cases = parse(Path::new("t.sql"), text).expect("parses");
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].name, "a");
    assert_eq!(cases[0].sql, "SELECT 1\n  AS x");
    assert!(cases[0].rowsort);
    assert!(matches!(&cases[0].expected, Expected::Table(t) if t == &["+---+", "| x |", "+---+"]));
    assert_eq!(cases[0].table_lines, Some((7, 10)));
    assert!(matches!(&cases[1].expected, Expected::Error(e) if e == "read-only"));
    let new = rewrite(text, &cases, &[Some(vec!["+-+".into()]), None]);
    assert!(new.contains("-- expected:\n-- +-+\n\n-- case: b"), "{new}");
    assert!(parse(Path::new("t.sql"), "-- case: c\nSELECT 1;\n").is_err());
}
