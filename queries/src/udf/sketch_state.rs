//! The state the sketch-merging aggregates share (`quantile_merge`, `quantiles_merge`, each with
//! and without GROUP BY): rows' encoded sketches absorbed into one sketch or one per group, the
//! groups' heap bytes kept up to date, and the intermediate state as encoded sketches.
//!
//! Must not know about quantile arguments: each aggregate keeps its own.

use super::bad_sketch;
use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray};
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::EmitTo;
use redwatch_operators::red::sketch::QuantileSketch;
use std::sync::Arc;

/// Whether row `i` is filtered out (a FILTER clause that is NULL or false for it).
#[inline]
pub(super) fn filtered_out(opt_filter: Option<&BooleanArray>, i: usize) -> bool {
    opt_filter.is_some_and(|f| !f.is_valid(i) || !f.value(i))
}

/// Absorbs every non-NULL sketch of `column` into `sketch`.
pub(super) fn absorb_column(
    sketch: &mut QuantileSketch,
    column: &BinaryArray,
    function: &str,
) -> Result<()> {
    for i in 0..column.len() {
        if column.is_valid(i) {
            sketch
                .absorb_encoded(column.value(i))
                .map_err(|e| bad_sketch(function, e))?;
        }
    }
    Ok(())
}

/// Checks that an update has one group index per row.
pub(super) fn check_rows(function: &str, rows: usize, group_indices: &[usize]) -> Result<()> {
    if rows != group_indices.len() {
        return exec_err!(
            "{function}: {} group indices for {} rows",
            group_indices.len(),
            rows
        );
    }
    Ok(())
}

/// The intermediate state of one sketch per row: each row's encoded sketch, NULL where the row
/// is filtered out or has none (rows are already encoded states).
pub(super) fn rows_as_state(column: &BinaryArray, opt_filter: Option<&BooleanArray>) -> ArrayRef {
    let state: BinaryArray = (0..column.len())
        .map(|i| (!filtered_out(opt_filter, i) && column.is_valid(i)).then(|| column.value(i)))
        .collect();
    Arc::new(state)
}

/// One sketch per group index.
#[derive(Debug, Default)]
pub(super) struct GroupSketches {
    sketches: Vec<QuantileSketch>,
    /// Sum of the sketches' `heap_bytes`, kept up to date (`size` must not be O(groups)).
    heap: usize,
}

impl GroupSketches {
    /// Makes room for `total_num_groups` groups.
    pub(super) fn grow(&mut self, total_num_groups: usize) {
        if self.sketches.len() < total_num_groups {
            self.sketches
                .resize_with(total_num_groups, QuantileSketch::default);
        }
    }

    /// Absorbs an encoded sketch into group `g`.
    pub(super) fn absorb(&mut self, g: usize, encoded: &[u8], function: &str) -> Result<()> {
        let Some(sketch) = self.sketches.get_mut(g) else {
            return exec_err!("{function}: group index {g} out of range");
        };
        let before = sketch.heap_bytes();
        sketch
            .absorb_encoded(encoded)
            .map_err(|e| bad_sketch(function, e))?;
        self.heap = (self.heap + sketch.heap_bytes()).saturating_sub(before);
        Ok(())
    }

    /// Removes the groups to emit (renumbering the rest) and returns them.
    pub(super) fn take(&mut self, emit_to: EmitTo) -> Vec<QuantileSketch> {
        let sketches = emit_to.take_needed(&mut self.sketches);
        let taken: usize = sketches.iter().map(QuantileSketch::heap_bytes).sum();
        self.heap = self.heap.saturating_sub(taken);
        sketches
    }

    /// Bytes held (the vector and every sketch's heap).
    pub(super) fn size(&self) -> usize {
        self.sketches.capacity() * std::mem::size_of::<QuantileSketch>() + self.heap
    }
}

/// The intermediate state of emitted groups: their sketches, encoded.
pub(super) fn encoded_state(sketches: &[QuantileSketch]) -> ArrayRef {
    let mut bytes = BinaryBuilder::with_capacity(sketches.len(), sketches.len() * 64);
    let mut buf = Vec::new();
    for s in sketches {
        buf.clear();
        s.encode(&mut buf);
        bytes.append_value(&buf);
    }
    Arc::new(bytes.finish())
}
