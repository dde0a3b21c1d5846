mod common;
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::SourceId;
use redwatch_operators::red::{RedOperator, RedSink};
use std::sync::Arc;

#[test]
fn stale_provisional() {
    let table = common::red_table();
    let registry = Registry::new();
    let sinks: Vec<Arc<dyn RedSink>> = vec![table.clone()];
    let mut op = RedOperator::new(&common::config(), sinks, &registry);
    let mut f = SpanFixture::new("a", "x", common::at(5, 0), 10.0);
    f.dims = vec![None];
    op.process_spans(&span_batch(SourceId(0), 1, &[f]), common::at(5, 0));
    op.publish_provisional();
    op.advance(common::at(10, 0));
    let engine = common::engine(table, common::limits());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(engine.execute("SELECT window_size, window_start, is_final, calls FROM red ORDER BY 1,2,3")).unwrap();
    println!("{}", arrow::util::pretty::pretty_format_batches(&r.batches).unwrap());
}
