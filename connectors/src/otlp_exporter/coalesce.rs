//! Coalescing a batch before it is sent: items with the same resource and scope share one
//! entry, so a request carries each resource and scope once (and each metric once per scope).

use opentelemetry_proto::tonic::metrics::v1::{metric, Metric, ResourceMetrics};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

/// Adds `m` to `metrics`: its points join a metric of the same name, unit and shape (sum or
/// histogram with the same temporality), else it is appended.
fn merge_metric(metrics: &mut Vec<Metric>, m: Metric) {
    use metric::Data;
    let same = |o: &Metric| {
        o.name == m.name
            && o.unit == m.unit
            && match (&o.data, &m.data) {
                (Some(Data::Sum(a)), Some(Data::Sum(b))) => {
                    a.aggregation_temporality == b.aggregation_temporality
                        && a.is_monotonic == b.is_monotonic
                }
                (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => {
                    a.aggregation_temporality == b.aggregation_temporality
                }
                _ => false,
            }
    };
    let Some(o) = metrics.iter_mut().find(|o| same(o)) else {
        metrics.push(m);
        return;
    };
    match (&mut o.data, m.data) {
        (Some(Data::Sum(a)), Some(Data::Sum(b))) => a.data_points.extend(b.data_points),
        (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => a.data_points.extend(b.data_points),
        _ => {}
    }
}

/// Merges batch items with the same resource and scope, so a request carries each resource
/// and scope once, and each metric once per scope.
pub(super) fn merge_metrics(batch: Vec<ResourceMetrics>) -> Vec<ResourceMetrics> {
    let mut out: Vec<ResourceMetrics> = Vec::new();
    for rm in batch {
        match out
            .iter_mut()
            .find(|o| o.resource == rm.resource && o.schema_url == rm.schema_url)
        {
            Some(o) => {
                for sm in rm.scope_metrics {
                    match o
                        .scope_metrics
                        .iter_mut()
                        .find(|x| x.scope == sm.scope && x.schema_url == sm.schema_url)
                    {
                        Some(x) => {
                            for m in sm.metrics {
                                merge_metric(&mut x.metrics, m);
                            }
                        }
                        None => o.scope_metrics.push(sm),
                    }
                }
            }
            None => out.push(rm),
        }
    }
    out
}

/// Merges batch items with the same resource and scope, so a request carries each resource
/// once.
pub(super) fn merge(batch: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for rs in batch {
        match out
            .iter_mut()
            .find(|o| o.resource == rs.resource && o.schema_url == rs.schema_url)
        {
            Some(o) => {
                for ss in rs.scope_spans {
                    match o
                        .scope_spans
                        .iter_mut()
                        .find(|x| x.scope == ss.scope && x.schema_url == ss.schema_url)
                    {
                        Some(x) => x.spans.extend(ss.spans),
                        None => o.scope_spans.push(ss),
                    }
                }
            }
            None => out.push(rs),
        }
    }
    out
}
