//! The test hook of [`StartOptions::panic_operator`](crate::server::StartOptions): an operator
//! that panics on the first batch it sees.

use crate::assembly::Assembly;
use redwatch_engine::pipeline::{Batch, OpContext, Operator};

struct PanickingOperator;

impl Operator for PanickingOperator {
    fn name(&self) -> &'static str {
        "panicking_test_operator"
    }

    fn process_batch(&mut self, _batch: &Batch, _ctx: &mut OpContext<'_>) {
        panic!("REDWATCH_TEST_PANIC_OPERATOR: this operator fails on its first batch");
    }
}

pub fn install(asm: &mut Assembly<'_>) {
    if asm.options().panic_operator {
        asm.operator(|_| Box::new(PanickingOperator));
    }
}
