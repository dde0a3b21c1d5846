//! Where the decoder puts each configured attribute of a span: RED's dimensions, then (when the
//! service graph runs) the service graph's dimensions and the attributes of its virtual nodes
//! and database edges, then the attribute keys of the session specs. Operators index into this
//! list, so its order is fixed here and nowhere else.

use crate::red::RedConfig;
use crate::servicegraph::ServiceGraphConfig;
use redwatch_engine::config::{Dimension, SessionSpec, Validate, WindowsConfig, MAX_DIMENSIONS};

/// The config sections the layout follows from (copies of the file's `windows`, `red` and
/// `service_graph`). Tests and benches also build the span operators from one of these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanSections {
    pub windows: WindowsConfig,
    pub red: RedConfig,
    pub service_graph: ServiceGraphConfig,
}

impl SpanSections {
    /// The attribute dimensions the decoder extracts per span, in order (see the module doc).
    pub fn decode_dimensions(&self) -> Vec<Dimension> {
        let mut d = self.dimensions_before_sessions();
        d.extend(self.windows.session_key_dimensions());
        d
    }

    /// The session specs of `windows.extra`, resolved against this layout (call on a validated
    /// config; invalid specs are skipped).
    pub fn session_specs(&self) -> Vec<SessionSpec> {
        self.windows
            .session_specs(self.dimensions_before_sessions().len())
    }

    /// The problems of the three sections, with their paths in the file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = self.windows.validate("windows");
        out.extend(self.red.validate("red"));
        out.extend(self.red.span_names.validate("red.span_names"));
        out.extend(self.service_graph.validate("service_graph"));
        out
    }

    /// RED's dimensions, then the service graph's and its node attributes when it runs.
    fn dimensions_before_sessions(&self) -> Vec<Dimension> {
        let mut d: Vec<Dimension> = self
            .red
            .dimensions
            .iter()
            .take(MAX_DIMENSIONS)
            .cloned()
            .collect();
        let sg = &self.service_graph;
        if sg.enabled {
            d.extend(sg.dimensions.iter().take(MAX_DIMENSIONS).cloned());
            d.extend(sg.attribute_dims());
        }
        d
    }
}
