//! What the load generator reads about the server under test: its CPU time and memory from
//! `/proc` (Linux), busy time of the core it is pinned to, and its Prometheus `/metrics`.
//! Reads only; never signals or changes the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux arch that
/// matters here).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of a whole process (all threads).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "(comm)": state is field 3, utime 14, stime 15.
    let rest = s.get(s.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// (VmRSS, VmHWM) of a process in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Busy seconds of one CPU (everything but idle and iowait; steal included).
pub fn cpu_busy_secs(cpu: usize) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("cpu{cpu}")))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy as f64 / USER_HZ)
}

/// Fetches `http://{addr}/metrics` (plain HTTP/1.1, connection closed by the server).
pub fn scrape(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other(
            "no HTTP header in the /metrics answer",
        ));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "/metrics answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of the samples of metric `name` whose labels include every `key="value"` of `with`;
/// None when there is no such sample.
pub fn metric(text: &str, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // a longer name with this prefix
        };
        if !with
            .iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// The engine figures the load generator reports, from one scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineFigures {
    pub accepted: f64,
    pub rejected: f64,
    pub late_dropped: f64,
    pub requests_rejected: f64,
    pub active_series: f64,
    pub overflow_spans: f64,
    pub state_bytes: f64,
    pub state_entries: f64,
}

impl EngineFigures {
    pub fn from_text(t: &str) -> Self {
        let m = |name: &str, with: &[(&str, &str)]| metric(t, name, with).unwrap_or(0.0);
        EngineFigures {
            accepted: m("redwatch_spans_accepted_total", &[]),
            rejected: m("redwatch_spans_rejected_total", &[]),
            late_dropped: m("redwatch_late_dropped_total", &[]),
            requests_rejected: m("redwatch_requests_rejected_total", &[]),
            active_series: m("redwatch_red_active_series", &[]),
            overflow_spans: m("redwatch_red_overflow_spans_total", &[]),
            state_bytes: m("redwatch_window_state_bytes", &[("operator", "red")]),
            state_entries: m("redwatch_window_state_entries", &[("operator", "red")]),
        }
    }

    pub fn bytes_per_series(&self) -> f64 {
        if self.active_series > 0.0 {
            self.state_bytes / self.active_series
        } else {
            0.0
        }
    }
}
