//! Running one SQL query: a fresh DataFusion session per query over the shared live tables, with
//! its own memory budget inside one pool shared by all queries, an admission gate (a bounded
//! number run at once), a timeout that covers planning too, result caps in rows and bytes and
//! read-only SQL options. Queries execute on a dedicated runtime so a heavy query competes with
//! ingest only for CPU, never for the ingest runtime's worker threads.

use crate::admission::{Admission, Refused};
use crate::pool::QueryPool;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::parser::ParserError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a query failed, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid SQL: {0}")]
    InvalidSql(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error("query exceeded the timeout of {0:?} (sql.query_timeout)")]
    Timeout(Duration),
    #[error("query exceeded its memory limit (sql.memory_limit): {0}")]
    MemoryLimit(String),
    #[error("result has more than {0} rows (sql.max_result_rows): add a LIMIT or aggregate")]
    ResultTooLarge(usize),
    #[error("result is larger than {0} bytes (sql.max_result_bytes): add a LIMIT, select fewer columns or aggregate")]
    ResultTooManyBytes(usize),
    #[error("{0}")]
    Busy(String),
    #[error("query failed: {0}")]
    Failed(String),
}

impl QueryError {
    /// Machine-readable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidSql(_) => "invalid_sql",
            QueryError::InvalidQuery(_) => "invalid_query",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::Timeout(_) => "timeout",
            QueryError::MemoryLimit(_) => "memory_limit",
            QueryError::ResultTooLarge(_) | QueryError::ResultTooManyBytes(_) => "result_too_large",
            QueryError::Busy(_) => "busy",
            QueryError::Failed(_) => "query_failed",
        }
    }

    /// HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::InvalidSql(_) | QueryError::InvalidQuery(_) | QueryError::ReadOnly(_) => {
                400
            }
            QueryError::Timeout(_) => 408,
            QueryError::MemoryLimit(_)
            | QueryError::ResultTooLarge(_)
            | QueryError::ResultTooManyBytes(_) => 413,
            QueryError::Busy(_) => 503,
            QueryError::Failed(_) => 500,
        }
    }

    fn from_df(e: DataFusionError) -> QueryError {
        let root = e.find_root();
        let msg = root.to_string();
        match root {
            DataFusionError::SQL(p, _) => match p.as_ref() {
                ParserError::RecursionLimitExceeded => QueryError::InvalidSql("query nests too deeply".into()),
                other => QueryError::InvalidSql(other.to_string()),
            },
            DataFusionError::ResourcesExhausted(m) => QueryError::MemoryLimit(m.clone()),
            DataFusionError::Plan(m)
                if m.contains("not supported") && (m.contains("DDL") || m.contains("DML") || m.contains("Statement")) =>
            {
                QueryError::ReadOnly(format!(
                    "{m} — redwatch tables are live views; only SELECT (and EXPLAIN, SHOW) queries run"
                ))
            }
            DataFusionError::Plan(_) | DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
                QueryError::InvalidQuery(msg)
            }
            _ => QueryError::Failed(msg),
        }
    }
}

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    /// One query's memory budget.
    pub memory_bytes: usize,
    /// What all running queries may hold together.
    pub shared_memory_bytes: usize,
    /// Queries that run at once (more wait, then are refused as busy).
    pub max_concurrent: usize,
    pub max_rows: usize,
    /// Bytes of Arrow data a result may hold.
    pub max_result_bytes: usize,
}

impl QueryLimits {
    /// The limits `sql.*` configures.
    pub fn from_config(c: &crate::config::SqlConfig) -> Self {
        let bytes = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
        QueryLimits {
            timeout: c.query_timeout,
            memory_bytes: bytes(c.memory_limit.as_u64()),
            shared_memory_bytes: bytes(c.shared_memory_limit.as_u64()),
            max_concurrent: c.max_concurrent_queries,
            max_rows: c.max_result_rows,
            max_result_bytes: bytes(c.max_result_bytes.as_u64()),
        }
    }
}

/// The longest SQL text planned (the HTTP API's body limit is the same): planning is CPU work
/// that no memory pool sees.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub elapsed: Duration,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The live tables and how to query them.
#[derive(Clone)]
pub struct QueryEngine {
    tables: Arc<Vec<(String, Arc<dyn TableProvider>)>>,
    limits: QueryLimits,
    runtime: tokio::runtime::Handle,
    shared_pool: Arc<GreedyMemoryPool>,
    admission: Admission,
}

/// Worker threads of the query runtime (and DataFusion's target partitions): one core fewer
/// than the machine has, at least one, so the ingest pipeline keeps a core whatever the query
/// load.
pub fn query_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Starts the runtime queries execute on (owned by a thread that lives as long as the process).
fn query_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(query_threads())
        .thread_name("redwatch-query")
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("redwatch-query-rt".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

impl QueryEngine {
    pub fn new(
        tables: Vec<(String, Arc<dyn TableProvider>)>,
        limits: QueryLimits,
    ) -> std::io::Result<Self> {
        Ok(QueryEngine {
            tables: Arc::new(tables),
            shared_pool: Arc::new(GreedyMemoryPool::new(limits.shared_memory_bytes)),
            admission: Admission::new(limits.max_concurrent),
            limits,
            runtime: query_runtime()?,
        })
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session with the tables and functions registered, read-only, with its own memory pool.
    pub fn session(&self) -> Result<SessionContext, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(QueryPool::new(
                self.limits.memory_bytes,
                self.shared_pool.clone(),
                self.limits.shared_memory_bytes,
            )))
            .build_arc()
            .map_err(QueryError::from_df)?;
        let mut config = SessionConfig::new()
            .with_target_partitions(query_threads())
            .with_information_schema(true);
        // DataFusion reserves this much up front for merging sorted runs; a fixed 10 MiB would
        // make every ORDER BY fail under a small per-query memory limit.
        config.options_mut().execution.sort_spill_reservation_bytes =
            (self.limits.memory_bytes / 8).min(10 << 20);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for (name, t) in self.tables.iter() {
            ctx.register_table(name.as_str(), t.clone())
                .map_err(QueryError::from_df)?;
        }
        crate::udf::register(&ctx);
        crate::udf::bounded::register(&ctx, self.limits.memory_bytes);
        Ok(ctx)
    }

    /// Refuses anything but queries before planning, with a clear message.
    fn check_read_only(sql: &str) -> Result<(), QueryError> {
        use datafusion::sql::parser::{DFParser, Statement as DfStatement};
        use datafusion::sql::sqlparser::ast::Statement;
        if sql.len() > MAX_SQL_BYTES {
            return Err(QueryError::InvalidSql(format!(
                "the query text is {} bytes; at most {MAX_SQL_BYTES} are planned",
                sql.len()
            )));
        }
        let statements =
            DFParser::parse_sql(sql).map_err(|e| QueryError::InvalidSql(e.to_string()))?;
        if statements.len() != 1 {
            return Err(QueryError::InvalidSql(format!(
                "expected exactly one statement, got {}",
                statements.len()
            )));
        }
        let allowed = match &statements[0] {
            DfStatement::Statement(s) => matches!(
                s.as_ref(),
                Statement::Query(_)
                    | Statement::Explain { .. }
                    | Statement::ExplainTable { .. }
                    | Statement::ShowTables { .. }
                    | Statement::ShowColumns { .. }
                    | Statement::ShowFunctions { .. }
                    | Statement::ShowVariable { .. }
            ),
            DfStatement::Explain(_) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(QueryError::ReadOnly(
                "only SELECT, EXPLAIN and SHOW run here: redwatch tables are live views (no DDL, DML or COPY)"
                    .into(),
            ))
        }
    }

    /// Plans a query (read-only checks included) without running it; returns its schema.
    pub async fn plan(
        &self,
        sql: &str,
    ) -> Result<(SessionContext, datafusion::dataframe::DataFrame), QueryError> {
        Self::check_read_only(sql)?;
        let ctx = self.session()?;
        let opts = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, opts)
            .await
            .map_err(QueryError::from_df)?;
        Ok((ctx, df))
    }

    /// Plans `sql` on the query runtime within the query timeout and returns its result schema
    /// (what Flight SQL's `GetFlightInfo` answers); admitted like a query.
    pub async fn schema_of(&self, sql: &str) -> Result<arrow::datatypes::SchemaRef, QueryError> {
        let sql = sql.to_string();
        let this = self.clone();
        self.run_limited(async move {
            let (_ctx, df) = this.plan(&sql).await?;
            Ok(Arc::new(df.schema().as_arrow().clone()))
        })
        .await
    }

    /// Runs one query to completion with the engine's limits.
    pub async fn execute(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let sql = sql.to_string();
        let this = self.clone();
        self.run_limited(async move {
            let started = Instant::now();
            let limits = &this.limits;
            let (_ctx, df) = this.plan(&sql).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let mut stream = df.execute_stream().await.map_err(QueryError::from_df)?;
            let mut batches = Vec::new();
            let (mut rows, mut bytes) = (0usize, 0usize);
            use futures::StreamExt;
            while let Some(b) = stream.next().await {
                let b = b.map_err(QueryError::from_df)?;
                rows += b.num_rows();
                if rows > limits.max_rows {
                    return Err(QueryError::ResultTooLarge(limits.max_rows));
                }
                bytes += result_bytes(&b);
                if bytes > limits.max_result_bytes {
                    return Err(QueryError::ResultTooManyBytes(limits.max_result_bytes));
                }
                batches.push(b);
            }
            Ok(QueryResult {
                schema,
                batches,
                elapsed: started.elapsed(),
            })
        })
        .await
    }

    /// Admits `work`, then runs it on the query runtime within the query timeout (waiting for
    /// admission counts against it).
    async fn run_limited<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let timeout = self.limits.timeout;
        let started = Instant::now();
        let permit = self.admission.enter(timeout).await.map_err(|r| {
            QueryError::Busy(match r {
                Refused::QueueFull => format!(
                    "{} queries are running and too many are waiting (sql.max_concurrent_queries); retry later",
                    self.limits.max_concurrent
                ),
                Refused::WaitedTooLong => format!(
                    "no query slot freed up within {timeout:?} (sql.max_concurrent_queries = {}); retry later",
                    self.limits.max_concurrent
                ),
            })
        })?;
        let left = timeout.saturating_sub(started.elapsed());
        let task = self.runtime.spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(left, work).await {
                Ok(r) => r,
                Err(_) => Err(QueryError::Timeout(timeout)),
            }
        });
        // The timeout above only fires when the query yields; a CPU-bound operator (or planner)
        // that does not is cut off here, on the caller's runtime: the client gets its 408 on time
        // and the task is aborted at its next yield point.
        let grace = left + Duration::from_millis(250);
        let abort = task.abort_handle();
        match tokio::time::timeout(grace, task).await {
            Ok(joined) => joined
                .map_err(|e| QueryError::Failed(format!("query task ended abnormally: {e}")))?,
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(timeout))
            }
        }
    }
}

/// The bytes a result batch holds for its rows (a slice of a larger batch counts only its own
/// rows, unlike `get_array_memory_size`).
fn result_bytes(b: &RecordBatch) -> usize {
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}
