//! Arrow Flight SQL on `sql.flight_endpoint`: the same read-only queries as the HTTP API, for
//! standard clients (ADBC, JDBC, the Rust `FlightSqlServiceClient`).
//!
//! The service is stateless: a statement ticket and a prepared-statement handle both carry the
//! SQL text itself, so there is no handle store to leak, expire or share between connections —
//! a "prepared" statement is planned again when it runs, against the tables as they are then.
//! Queries run through [`QueryEngine`] with its limits (timeout, memory, result rows); catalog
//! listings come from DataFusion's `information_schema`. Anything that writes (DoPut updates,
//! ingestion, transactions) is refused: redwatch tables are live views of the engine's windows.

use crate::query::{QueryEngine, QueryError, QueryResult};
use crate::sql_metrics::QueryMetrics;
use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Largest request message accepted (prepared-statement parameters, handshakes).
const MAX_REQUEST_BYTES: usize = 16 << 20;

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

/// The gRPC status of a query error: the client's fault (bad SQL, unknown column, a write)
/// → `INVALID_ARGUMENT`, timeout → `DEADLINE_EXCEEDED`, a limit → `RESOURCE_EXHAUSTED`, too many
/// queries at once → `UNAVAILABLE`.
pub fn status_of(e: &QueryError) -> Status {
    let message = format!("[{}] {e}", e.code());
    match e {
        QueryError::InvalidSql(_) | QueryError::InvalidQuery(_) | QueryError::ReadOnly(_) => {
            Status::invalid_argument(message)
        }
        QueryError::Timeout(_) => Status::deadline_exceeded(message),
        QueryError::MemoryLimit(_)
        | QueryError::ResultTooLarge(_)
        | QueryError::ResultTooManyBytes(_) => Status::resource_exhausted(message),
        // Retryable: the client may try again once fewer queries run.
        QueryError::Busy(_) => Status::unavailable(message),
        QueryError::Failed(_) => Status::internal(message),
    }
}

fn read_only(what: &str) -> Status {
    Status::permission_denied(format!(
        "read-only: {what} is not supported — redwatch tables are live views of the engine's \
         windows; only SELECT, EXPLAIN and SHOW run here"
    ))
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// The SQL text of a ticket or handle.
fn sql_of(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not a redwatch SQL handle")))
}

/// A Flight SQL service over the live tables.
#[derive(Clone)]
pub struct FlightSql {
    engine: QueryEngine,
    info: Arc<SqlInfoData>,
    /// The same SQL self-metrics as the HTTP API's: a statement (or prepared statement) counts
    /// once, when it runs or when planning it fails; catalog listings are not counted.
    metrics: Arc<QueryMetrics>,
}

impl FlightSql {
    pub fn new(engine: QueryEngine, metrics: Arc<QueryMetrics>) -> Result<Self, Status> {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "redwatch");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        // The Arrow IPC format version (Schema.fbs MetadataVersion V5 = "1.3").
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
        b.append(
            SqlInfo::FlightSqlServerStatementTimeout,
            engine.limits().timeout.as_millis().min(i32::MAX as u128) as i32,
        );
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        let info = b.build().map_err(|e| internal("building SqlInfo", e))?;
        Ok(FlightSql {
            engine,
            info: Arc::new(info),
            metrics,
        })
    }

    /// Plans a client's statement (read-only checks included) and returns its result schema;
    /// a statement that cannot be planned counts as a query received and failed (the client
    /// never gets to run it).
    async fn statement_schema(&self, sql: &str) -> Result<Schema, Status> {
        match self.engine.schema_of(sql).await {
            Ok(schema) => Ok(schema.as_ref().clone()),
            Err(e) => {
                self.metrics.received();
                self.metrics.failed(e.code());
                Err(status_of(&e))
            }
        }
    }

    /// Runs `sql` with the engine's limits.
    async fn run(&self, sql: &str) -> Result<QueryResult, Status> {
        self.engine.execute(sql).await.map_err(|e| status_of(&e))
    }

    /// Runs a client's statement (counted in the SQL metrics) and streams its result.
    async fn stream_query(&self, sql: &str) -> Result<Response<DoGetStream>, Status> {
        self.metrics.received();
        match self.engine.execute(sql).await {
            Ok(r) => {
                self.metrics.succeeded(r.elapsed);
                Ok(stream_batches(r.schema, r.batches))
            }
            Err(e) => {
                self.metrics.failed(e.code());
                Err(status_of(&e))
            }
        }
    }

    /// Rows of an `information_schema` query, every column as text (NULL = "").
    async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, Status> {
        let r = self.run(sql).await?;
        let mut rows = Vec::new();
        for b in &r.batches {
            let cols: Vec<StringArray> = b
                .columns()
                .iter()
                .map(|c| {
                    arrow::compute::cast(c, &DataType::Utf8)
                        .map_err(|e| internal("reading information_schema", e))
                        .and_then(|a| {
                            a.as_any()
                                .downcast_ref::<StringArray>()
                                .cloned()
                                .ok_or_else(|| internal("reading information_schema", "not text"))
                        })
                })
                .collect::<Result<_, _>>()?;
            for i in 0..b.num_rows() {
                rows.push(
                    cols.iter()
                        .map(|c| {
                            if c.is_null(i) {
                                String::new()
                            } else {
                                c.value(i).to_string()
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(rows)
    }
}

/// A FlightInfo whose single endpoint is fetched with `ticket` from this same server.
fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(ticket.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| internal("encoding the schema", e))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(Response::new(info))
}

/// Streams batches as Flight data (the schema first, so an empty result still has one).
fn stream_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// Streams one metadata batch built by an arrow-flight builder.
fn stream_built<E: std::fmt::Display>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| internal("building the listing", e))?;
    Ok(stream_batches(schema, vec![batch]))
}

/// Flight SQL's table types for information_schema's (`BASE TABLE` is what clients call `TABLE`).
fn table_type(information_schema: &str) -> &str {
    match information_schema {
        "BASE TABLE" => "TABLE",
        other => other,
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// No authentication: every handshake succeeds (the listener binds loopback by default).
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let out = futures::stream::once(async {
            Ok(HandshakeResponse {
                protocol_version: 0,
                payload: Bytes::new(),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    // -- statements -------------------------------------------------------------------------

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.statement_schema(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: Bytes::from(query.query.into_bytes()),
        };
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = sql_of(&ticket.statement_handle, "statement ticket")?;
        self.stream_query(&sql).await
    }

    // -- prepared statements (ADBC and JDBC prepare every query) ----------------------------

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.statement_schema(&query.query).await?;
        let IpcMessage(dataset_schema) =
            SchemaAsIpc::new(&schema, &arrow::ipc::writer::IpcWriteOptions::default())
                .try_into()
                .map_err(|e: arrow::error::ArrowError| internal("encoding the schema", e))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::from(query.query.into_bytes()),
            dataset_schema,
            parameter_schema: Bytes::new(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = sql_of(&cmd.prepared_statement_handle, "prepared statement handle")?;
        let schema = self.statement_schema(&sql).await?;
        flight_info(&schema, cmd, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = sql_of(&cmd.prepared_statement_handle, "prepared statement handle")?;
        self.stream_query(&sql).await
    }

    /// Binding parameters: accepted only when there are none (clients send an empty binding).
    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let mut stream = request.into_inner();
        while let Some(msg) = stream.next().await {
            if !msg?.data_body.is_empty() {
                return Err(Status::invalid_argument(
                    "query parameters are not supported: put the values into the SQL text",
                ));
            }
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are the SQL text: nothing is held for them.
        Ok(())
    }

    // -- server and catalog metadata --------------------------------------------------------

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.info).schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.info);
        stream_built(builder.schema(), builder.build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let rows = self
            .text_rows(
                "SELECT DISTINCT catalog_name FROM information_schema.schemata \
                 ORDER BY catalog_name",
            )
            .await?;
        let mut builder = query.into_builder();
        for r in rows {
            builder.append(&r[0]);
        }
        stream_built(builder.schema(), builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let rows = self
            .text_rows(
                "SELECT catalog_name, schema_name FROM information_schema.schemata \
                 ORDER BY catalog_name, schema_name",
            )
            .await?;
        // The builder applies the request's catalog and schema-pattern filters.
        let mut builder = query.into_builder();
        for r in rows {
            builder.append(&r[0], &r[1]);
        }
        stream_built(builder.schema(), builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let rows = self
            .text_rows(
                "SELECT table_catalog, table_schema, table_name, table_type \
                 FROM information_schema.tables \
                 ORDER BY table_catalog, table_schema, table_name",
            )
            .await?;
        let include_schema = query.include_schema;
        let ctx = if include_schema {
            Some(self.engine.session().map_err(|e| status_of(&e))?)
        } else {
            None
        };
        // The builder applies the request's catalog, pattern and table-type filters.
        let mut builder = query.into_builder();
        for r in rows {
            let schema = match &ctx {
                Some(ctx) => {
                    let name = datafusion::common::TableReference::full(
                        r[0].as_str(),
                        r[1].as_str(),
                        r[2].as_str(),
                    );
                    match ctx.table_provider(name).await {
                        Ok(t) => t.schema().as_ref().clone(),
                        Err(e) => {
                            return Err(internal(
                                &format!("reading the schema of {}.{}.{}", r[0], r[1], r[2]),
                                e,
                            ))
                        }
                    }
                }
                None => Schema::empty(),
            };
            builder
                .append(&r[0], &r[1], &r[2], table_type(&r[3]), &schema)
                .map_err(|e| internal("building the table list", e))?;
        }
        stream_built(builder.schema(), builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let rows = self
            .text_rows("SELECT DISTINCT table_type FROM information_schema.tables")
            .await?;
        let mut types: Vec<String> = rows
            .into_iter()
            .map(|r| table_type(&r[0]).to_string())
            .collect();
        types.sort();
        types.dedup();
        let mut builder = query.into_builder();
        for t in types {
            builder.append(t);
        }
        stream_built(builder.schema(), builder.build())
    }

    // -- writes are refused -----------------------------------------------------------------

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a prepared update statement"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a Substrait plan update"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only("a transaction"))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on `listener` until `cancel` fires.
pub async fn serve(
    listener: redwatch_engine::security::SecureListener,
    engine: QueryEngine,
    metrics: Arc<QueryMetrics>,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let service = match FlightSql::new(engine, metrics) {
        Ok(s) => s,
        Err(status) => {
            // Only a bug in the static SqlInfo table gets here; keep the engine up without it.
            tracing::error!("flight_sql: not serving: {}", status.message());
            cancel.cancelled().await;
            return Ok(());
        }
    };
    tonic::transport::Server::builder()
        .layer(listener.auth_layer())
        .add_service(FlightServiceServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(listener.into_incoming(), cancel.cancelled_owned())
        .await
}
