//! The webhook bodies: Alertmanager's webhook payload (version 4, the shape Alertmanager POSTs
//! to its receivers, so tools that take it — PagerDuty and Opsgenie bridges, chat bots — take
//! ours) and Slack's incoming-webhook message.

use crate::config::WebhookFormat;
use redwatch_operators::anomaly::Severity;
use redwatch_operators::problems::{Problem, ProblemState};
use serde_json::{json, Map, Value};
use std::time::{Duration, UNIX_EPOCH};

/// Lower-case hex of an id.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// The worst member severity.
fn severity(p: &Problem) -> Severity {
    p.members
        .iter()
        .map(|m| m.severity)
        .max()
        .unwrap_or(Severity::Low)
}

/// The JSON body for `p` in `format`.
pub fn render(p: &Problem, format: WebhookFormat) -> Vec<u8> {
    let v = match format {
        WebhookFormat::Alertmanager => alertmanager(p),
        WebhookFormat::Slack => slack(p),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

fn alertmanager(p: &Problem) -> Value {
    let id = hex(&p.id);
    let status = if p.state == ProblemState::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let mut labels = Map::new();
    labels.insert("alertname".into(), json!("RedwatchProblem"));
    labels.insert("problem_id".into(), json!(id));
    labels.insert("severity".into(), json!(severity(p).as_str()));
    if let Some(c) = p.cause() {
        labels.insert("service".into(), json!(&*c.service));
        labels.insert("span_name".into(), json!(&*c.span_name));
        labels.insert("signal".into(), json!(&*c.signal));
    }
    let services: Vec<String> = p.services().iter().map(|s| s.to_string()).collect();
    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(p.summary));
    if let Some(c) = p.cause() {
        annotations.insert("description".into(), json!(c.evidence));
    }
    annotations.insert(
        "members".into(),
        json!(format!(
            "{} anomalies in {}",
            p.members.len(),
            services.join(", ")
        )),
    );
    let ends = p
        .resolved_at
        .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339);
    let alert = json!({
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(p.onset),
        "endsAt": ends,
        "generatorURL": "",
        "fingerprint": id[..16],
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{problem_id=\"{id}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "redwatch",
        "groupLabels": { "problem_id": id },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [alert],
    })
}

fn slack(p: &Problem) -> Value {
    let id = hex(&p.id);
    let text = match p.state {
        ProblemState::Resolved => {
            let took = p.resolved_at.unwrap_or(p.onset).saturating_sub(p.onset) / 1_000_000_000;
            format!(
                ":white_check_mark: Problem resolved after {}: {}\nproblem {id}",
                humantime::format_duration(Duration::from_secs(took)),
                p.summary
            )
        }
        _ => {
            let cause = p.cause().map_or(String::new(), |c| {
                format!(
                    "\nLikely cause: {} {} ({}): {}",
                    c.service, c.span_name, c.signal, c.evidence
                )
            });
            format!(
                ":rotating_light: Problem ({}): {}{cause}\nproblem {id}",
                severity(p).as_str(),
                p.summary
            )
        }
    };
    json!({ "text": text })
}
