//! `redwatch sql`: a client of the SQL HTTP API (`POST <url>/api/v1/sql`). With a query it runs
//! it once and prints the result; without one it opens an interactive shell with history.
//!
//! Tables are fetched as Arrow IPC and printed with Arrow's pretty printer; CSV and JSON are the
//! server's own bytes, passed through. This module talks to a running server only — it never
//! starts an engine.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::time::{Duration, Instant};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// The API's JSON: `{"columns": [...], "rows": [...], "elapsed_ms": n}`.
    Json,
}

impl OutputFormat {
    /// The `format` the API is asked for.
    fn wire(self) -> &'static str {
        match self {
            OutputFormat::Table => "arrow",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(OutputFormat::Table),
            "csv" => Some(OutputFormat::Csv),
            "json" => Some(OutputFormat::Json),
            _ => None,
        }
    }
}

/// What `redwatch sql` was asked to do.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// One query to run; `None` opens the interactive shell.
    pub query: Option<String>,
    /// Base URL of the SQL HTTP API, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    pub format: OutputFormat,
    /// Bearer token sent as `Authorization: Bearer <token>` (`--token` / `REDWATCH_TOKEN`).
    pub token: Option<String>,
    /// TLS for an `https://` URL: CA file, optional client certificate and key.
    pub tls: crate::config::TlsClientConfig,
}

/// Why `redwatch sql` failed: bad usage (exit 2) or a failure at run time (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SqlCliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

/// Why one query failed.
#[derive(Debug, thiserror::Error)]
enum QueryFailure {
    /// The server could not be reached or did not answer.
    #[error("cannot reach the redwatch SQL API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error (its `{"error": {"code", "message"}}`).
    #[error("{code}: {message}")]
    Server { code: String, message: String },
    /// The answer could not be read.
    #[error("cannot read the answer: {0}")]
    Decode(String),
}

/// A query's printable result.
enum Output {
    Table {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Text(Vec<u8>),
}

/// Client of one server's SQL API.
struct SqlClient {
    http: reqwest::Client,
    base: String,
    endpoint: reqwest::Url,
    token: Option<String>,
}

impl SqlClient {
    fn new(opts: &SqlOptions) -> Result<Self, SqlCliError> {
        let url = &opts.url;
        let base = url.trim_end_matches('/').to_string();
        let endpoint = reqwest::Url::parse(&format!("{base}/api/v1/sql"))
            .map_err(|e| SqlCliError::Usage(format!("--url {url:?} is not a URL: {e}")))?;
        let tls_flags = opts.tls != crate::config::TlsClientConfig::default();
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        match endpoint.scheme() {
            "http" if tls_flags => {
                return Err(SqlCliError::Usage(format!(
                    "--ca-file/--cert-file/--key-file need an https:// --url, not {url:?}"
                )))
            }
            "http" => {}
            "https" => {
                if let Some((path, problem)) = opts.tls.validate("").into_iter().next() {
                    let flag = format!("--{}", path.trim_start_matches('.').replace('_', "-"));
                    return Err(SqlCliError::Usage(format!("{flag}: {problem}")));
                }
                let tls = redwatch_engine::security::client_config(
                    &opts.tls,
                    redwatch_engine::security::Alpn::Http1,
                )
                .map_err(|e| SqlCliError::Usage(format!("TLS settings: {e}")))?;
                http = http.use_preconfigured_tls(tls);
            }
            other => {
                return Err(SqlCliError::Usage(format!(
                    "--url {url:?}: the scheme must be http:// or https://, not {other}://"
                )))
            }
        }
        let http = http
            .build()
            .map_err(|e| SqlCliError::Runtime(format!("cannot create an HTTP client: {e}")))?;
        Ok(SqlClient {
            http,
            base,
            endpoint,
            token: opts.token.clone().filter(|t| !t.is_empty()),
        })
    }

    async fn query(&self, sql: &str, format: OutputFormat) -> Result<Output, QueryFailure> {
        let body = serde_json::json!({"query": sql, "format": format.wire()}).to_string();
        let unreachable = |e: reqwest::Error| QueryFailure::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        };
        let mut req = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.body(body).send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(server_error(status, &bytes));
        }
        match format {
            OutputFormat::Table => {
                let reader =
                    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                        .map_err(|e| QueryFailure::Decode(e.to_string()))?;
                let schema = reader.schema();
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| QueryFailure::Decode(e.to_string()))?;
                Ok(Output::Table { schema, batches })
            }
            OutputFormat::Csv | OutputFormat::Json => Ok(Output::Text(bytes.to_vec())),
        }
    }
}

/// `source: cause: cause` of an error (reqwest's top line alone hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// The failure an error answer describes: the API's JSON error, else the status and body.
fn server_error(status: reqwest::StatusCode, body: &[u8]) -> QueryFailure {
    let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    match parsed {
        Some((code, message)) if status == reqwest::StatusCode::UNAUTHORIZED => {
            QueryFailure::Server {
                code,
                message: format!("{message} (pass --token or set REDWATCH_TOKEN)"),
            }
        }
        Some((code, message)) => QueryFailure::Server { code, message },
        None => QueryFailure::Server {
            code: format!("HTTP {status}"),
            message: String::from_utf8_lossy(body).trim().to_string(),
        },
    }
}

/// Prints a result to `out`; returns its row count when known.
fn print_output(out: &mut dyn Write, o: &Output) -> Result<Option<usize>, String> {
    let io = |e: std::io::Error| format!("cannot write the result: {e}");
    match o {
        Output::Table { schema, batches } => {
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            // An empty result still shows its columns.
            let shown = if batches.is_empty() {
                vec![RecordBatch::new_empty(schema.clone())]
            } else {
                batches.clone()
            };
            let table = arrow::util::pretty::pretty_format_batches(&shown)
                .map_err(|e| format!("cannot format the result: {e}"))?;
            writeln!(out, "{table}").map_err(io)?;
            Ok(Some(rows))
        }
        Output::Text(bytes) => {
            out.write_all(bytes).map_err(io)?;
            if !bytes.ends_with(b"\n") {
                writeln!(out).map_err(io)?;
            }
            Ok(None)
        }
    }
}

/// Runs `redwatch sql`.
pub fn run(opts: SqlOptions) -> Result<(), SqlCliError> {
    let client = SqlClient::new(&opts)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SqlCliError::Runtime(format!("cannot start a runtime: {e}")))?;
    match opts.query {
        Some(q) => {
            let sql = q.trim().trim_end_matches(';').trim();
            if sql.is_empty() {
                return Err(SqlCliError::Usage("the query is empty".into()));
            }
            let output = rt
                .block_on(client.query(sql, opts.format))
                .map_err(|e| SqlCliError::Runtime(e.to_string()))?;
            let stdout = std::io::stdout();
            print_output(&mut stdout.lock(), &output).map_err(SqlCliError::Runtime)?;
            Ok(())
        }
        None => shell(&rt, &client, opts.format),
    }
}

const HELP: &str = "\
Statements end with `;` and may span lines. Tables: red, red_windows, spans, metric_points,
anomalies, predictions, service_graph, sessions, continuous_results, problems, problem_members
(SHOW TABLES; lists them).
  \\q                      quit (or Ctrl-D)
  \\format table|csv|json  how results are printed
  \\?                      this help";

/// The interactive shell: reads statements (multi-line, ended by `;`) and prints their results.
fn shell(
    rt: &tokio::runtime::Runtime,
    client: &SqlClient,
    mut format: OutputFormat,
) -> Result<(), SqlCliError> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| SqlCliError::Runtime(format!("cannot open the terminal: {e}")))?;
    let history = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| std::path::PathBuf::from(h).join(".redwatch_history"));
    if let Some(h) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(h);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        println!(
            "redwatch {} SQL shell on {} — statements end with `;`, \\? for help, \\q to quit",
            env!("CARGO_PKG_VERSION"),
            client.base
        );
    }
    let mut buffer = StatementBuffer::default();
    loop {
        let prompt = if buffer.is_empty() {
            "redwatch> "
        } else {
            "       -> "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buffer = StatementBuffer::default();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                save_history(&mut editor, history.as_deref());
                return Err(SqlCliError::Runtime(format!("cannot read input: {e}")));
            }
        };
        if buffer.is_empty() {
            let cmd = line.trim();
            if let Some(rest) = cmd.strip_prefix('\\') {
                let _ = editor.add_history_entry(cmd);
                match meta_command(rest, &mut format) {
                    MetaCommand::Quit => break,
                    MetaCommand::Continue(msg) => println!("{msg}"),
                }
                continue;
            }
            if matches!(cmd, "quit" | "exit") {
                break;
            }
        }
        for sql in buffer.push_line(&line) {
            let _ = editor.add_history_entry(format!("{sql};"));
            let started = Instant::now();
            match rt.block_on(client.query(&sql, format)) {
                Ok(output) => {
                    let stdout = std::io::stdout();
                    match print_output(&mut stdout.lock(), &output) {
                        Ok(Some(rows)) if interactive => println!(
                            "({rows} row{} in {:.1} ms)",
                            if rows == 1 { "" } else { "s" },
                            started.elapsed().as_secs_f64() * 1000.0
                        ),
                        Ok(_) => {}
                        Err(e) => eprintln!("error: {e}"),
                    }
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
    if let Some(rest) = buffer.finish() {
        eprintln!("note: unfinished statement discarded (no `;`): {rest}");
    }
    save_history(&mut editor, history.as_deref());
    Ok(())
}

fn save_history(editor: &mut rustyline::DefaultEditor, path: Option<&std::path::Path>) {
    if let Some(p) = path {
        if let Err(e) = editor.save_history(p) {
            eprintln!("note: cannot save the history to {}: {e}", p.display());
        }
    }
}

enum MetaCommand {
    Quit,
    Continue(String),
}

/// A backslash command of the shell (without the backslash).
fn meta_command(cmd: &str, format: &mut OutputFormat) -> MetaCommand {
    let mut words = cmd.split_whitespace();
    match (words.next(), words.next()) {
        (Some("q"), _) => MetaCommand::Quit,
        (Some("?" | "h" | "help"), _) => MetaCommand::Continue(HELP.to_string()),
        (Some("format"), None) => {
            MetaCommand::Continue(format!("format: {}", format!("{format:?}").to_lowercase()))
        }
        (Some("format"), Some(f)) => match OutputFormat::parse(f) {
            Some(f) => {
                *format = f;
                MetaCommand::Continue(format!("format: {}", format!("{f:?}").to_lowercase()))
            }
            None => MetaCommand::Continue(format!("unknown format {f:?}: table, csv or json")),
        },
        _ => MetaCommand::Continue(format!("unknown command \\{cmd}; \\? lists the commands")),
    }
}

/// Collects input lines into statements ended by `;` outside quotes and comments.
#[derive(Debug, Default)]
struct StatementBuffer {
    text: String,
    /// Inside a quoted string or identifier (its quote character).
    quote: Option<char>,
    /// Inside a `/* ... */` comment.
    block_comment: bool,
}

impl StatementBuffer {
    /// Whether no statement has been started.
    fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// Adds one input line; returns the statements it completed (without their `;`).
    fn push_line(&mut self, line: &str) -> Vec<String> {
        let mut done = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if self.block_comment {
                self.text.push(c);
                if c == '*' && chars.peek() == Some(&'/') {
                    self.text.push('/');
                    chars.next();
                    self.block_comment = false;
                }
                continue;
            }
            if let Some(q) = self.quote {
                self.text.push(c);
                if c == q {
                    self.quote = None;
                }
                continue;
            }
            match c {
                '\'' | '"' => {
                    self.quote = Some(c);
                    self.text.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    // A line comment: the rest of the line is not SQL.
                    break;
                }
                '/' if chars.peek() == Some(&'*') => {
                    self.block_comment = true;
                    self.text.push('/');
                    self.text.push('*');
                    chars.next();
                }
                ';' => {
                    let stmt = std::mem::take(&mut self.text);
                    let stmt = stmt.trim();
                    if !stmt.is_empty() {
                        done.push(stmt.to_string());
                    }
                }
                _ => self.text.push(c),
            }
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        done
    }

    /// What is left unfinished at the end of input.
    fn finish(self) -> Option<String> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_semicolons_outside_quotes_and_comments() {
        let mut b = StatementBuffer::default();
        assert!(b
            .push_line("SELECT 'a;b' AS \"x;y\", -- not; here")
            .is_empty());
        assert!(!b.is_empty());
        assert_eq!(
            b.push_line("  1 /* ; */ FROM red; SELECT 2;"),
            vec![
                "SELECT 'a;b' AS \"x;y\", \n  1 /* ; */ FROM red".to_string(),
                "SELECT 2".to_string()
            ]
        );
        assert!(b.is_empty());
        assert!(b.push_line(";;").is_empty());
        assert!(b.push_line("SELECT 3").is_empty());
        assert_eq!(b.finish(), Some("SELECT 3".to_string()));
    }

    #[test]
    fn server_errors_carry_the_api_message() {
        let e = server_error(
            reqwest::StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"invalid_sql","message":"invalid SQL: oops"}}"#,
        );
        assert_eq!(e.to_string(), "invalid_sql: invalid SQL: oops");
        let e = server_error(reqwest::StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(e.to_string(), "HTTP 502 Bad Gateway: upstream down");
    }

    fn opts(url: &str) -> SqlOptions {
        SqlOptions {
            query: None,
            url: url.to_string(),
            format: OutputFormat::Table,
            token: None,
            tls: Default::default(),
        }
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_ca() {
        let usage = |o: SqlOptions| match SqlClient::new(&o) {
            Err(SqlCliError::Usage(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("{} accepted", o.url),
        };
        usage(opts("not a url"));
        usage(opts("ftp://127.0.0.1:7070"));
        // https needs a CA file (there are no built-in roots).
        assert!(usage(opts("https://127.0.0.1:7070")).starts_with("--ca-file:"));
        // TLS flags with an http:// URL are a mistake, not silently ignored.
        let mut o = opts("http://127.0.0.1:7070");
        o.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(usage(o).contains("need an https:// --url"));
        let mut o = opts("https://127.0.0.1:7070");
        o.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(usage(o).contains("cannot read /nonexistent/ca.pem"));
        let c = SqlClient::new(&opts("http://127.0.0.1:7070/")).expect("valid");
        assert_eq!(c.endpoint.as_str(), "http://127.0.0.1:7070/api/v1/sql");
    }

    #[test]
    fn meta_commands() {
        let mut f = OutputFormat::Table;
        assert!(matches!(meta_command("q", &mut f), MetaCommand::Quit));
        assert!(matches!(
            meta_command("format csv", &mut f),
            MetaCommand::Continue(_)
        ));
        assert_eq!(f, OutputFormat::Csv);
        meta_command("format nope", &mut f);
        assert_eq!(f, OutputFormat::Csv);
    }
}
