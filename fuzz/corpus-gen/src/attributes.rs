//! Attribute and resource builders shared by the trace and metrics seeds.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

pub fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

/// An attribute value nested `levels` kvlists deep (3 messages a level).
pub fn nested_value(levels: usize) -> Value {
    let mut v = s("leaf");
    for _ in 0..levels {
        v = Value::KvlistValue(KeyValueList {
            values: vec![kv("k", v)],
        });
    }
    v
}
