//! The retry schedule of the exporters (OTLP, webhook): exponential backoff from `backon`,
//! written once.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// The retry intervals of one delivery: `initial`, doubling, capped at `max`, without end (the
/// caller checks its own `max_elapsed_time` against the time really spent, sends included).
pub(crate) fn exponential(initial: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
}
