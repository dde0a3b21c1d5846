//! The fleet bench's truth (calls per key, computed from the produced spans) and a live reader
//! of a RED topic (the results topic or a Kafka sink topic) to compare with it.

use super::*;

/// (window spec, window start ns, series as the sink's key spells it).
pub(super) type Key = (&'static str, u64, String);

pub(super) fn kind_label(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// Every span of a request: (end time ns, series).
pub(super) fn spans_of(bytes: &[u8]) -> Vec<(u64, String)> {
    let req = ExportTraceServiceRequest::decode(bytes).expect("a generated request decodes");
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                },
            )
            .unwrap_or_else(|| "unknown_service".into());
        for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            assert!(
                !service.contains(['|', '\\']) && !s.name.contains(['|', '\\']),
                "names with key separators would need the sink's escaping"
            );
            out.push((
                s.end_time_unix_nano,
                format!("{service}|{}|{}", s.name, kind_label(s.kind)),
            ));
        }
    }
    out
}

/// Calls per key, over windows starting before `until`.
#[derive(Default)]
pub(super) struct Truth {
    pub(super) calls: HashMap<Key, f64>,
    pub(super) spans: u64,
}

impl Truth {
    pub(super) fn add(&mut self, end: u64, series: &str, n: f64) {
        for (spec, size) in SPECS {
            *self
                .calls
                .entry((spec, end / size * size, series.to_string()))
                .or_default() += n;
        }
        self.spans += n as u64;
    }
}

// --- reading a RED topic back ----------------------------------------------------------------

/// Key `<spec>|<start>|<share>|<series>` → (spec, start, series).
pub(super) fn parse_key(key: &str) -> Option<(&'static str, u64, String)> {
    let mut it = key.splitn(4, '|');
    let spec = match it.next()? {
        "10s" => "10s",
        "1m" => "1m",
        _ => return None,
    };
    let start = it.next()?.parse().ok()?;
    let _share = it.next()?;
    Some((spec, start, it.next()?.to_string()))
}

/// The calls a RED record carries (every status of its series).
pub(super) fn record_calls(payload: &[u8]) -> f64 {
    let Ok(req) = ExportMetricsServiceRequest::decode(payload) else {
        return f64::NAN;
    };
    let mut n = 0.0;
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "traces.span.metrics.calls")
    {
        if let Some(metric::Data::Sum(s)) = &m.data {
            for dp in &s.data_points {
                n += match dp.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => 0.0,
                };
            }
        }
    }
    n
}

/// What a live reader of a RED topic knows: the latest calls per record key, their sum per
/// (spec, window, series) over shares, and when each key last changed.
#[derive(Default)]
pub(super) struct Board {
    pub(super) latest: HashMap<String, f64>,
    pub(super) sums: HashMap<Key, f64>,
    pub(super) changed_at: HashMap<Key, u64>,
    /// Keys changed since `wait_exact` last looked.
    pub(super) dirty: Vec<Key>,
    pub(super) records: u64,
}

/// A thread reading every partition of `topic` from the beginning (no group) into a board.
pub(super) struct Reader {
    pub(super) board: Arc<Mutex<Board>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    pub(super) fn start(brokers: &str, topic: &str) -> Reader {
        let c = read_from_start(
            brokers,
            topic,
            PARTITIONS,
            "fleet_bench_reader",
            &[("fetch.wait.max.ms", "20")],
        );
        let board = Arc::new(Mutex::new(Board::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (board.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let at = now_ns();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let Some(k) = parse_key(&key) else { continue };
                let calls = record_calls(m.payload().unwrap_or_default());
                let mut b = b.lock().expect("board");
                b.records += 1;
                let old = b.latest.insert(key, calls);
                if old != Some(calls) {
                    // A restatement with the same calls changes nothing.
                    *b.sums.entry(k.clone()).or_default() += calls - old.unwrap_or(0.0);
                    b.changed_at.insert(k.clone(), at);
                    b.dirty.push(k);
                }
            }
        });
        Reader {
            board,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until the board equals the truth: every key of `truth` has its calls, and no
    /// other key of a window starting before `until` has any. Returns the wall time (ns) the
    /// last key became right, or None after `deadline`. Checks only the keys that changed since
    /// the last look, so checking costs the driver little while the instances run.
    pub(super) fn wait_exact(
        &self,
        truth: &HashMap<Key, f64>,
        until: u64,
        deadline: Duration,
    ) -> Option<u64> {
        let stop = Instant::now() + deadline;
        let mut wrong: HashSet<Key> = truth.keys().cloned().collect();
        let mut extra: HashSet<Key> = HashSet::new();
        loop {
            let b_dirty = std::mem::take(&mut self.board.lock().expect("board").dirty);
            {
                let b = self.board.lock().expect("board");
                for k in b_dirty {
                    let got = b.sums.get(&k).copied().unwrap_or(0.0);
                    match truth.get(&k) {
                        Some(want) if *want == got => {
                            wrong.remove(&k);
                        }
                        Some(_) => {
                            wrong.insert(k);
                        }
                        None if k.1 < until && got != 0.0 => {
                            extra.insert(k);
                        }
                        None => {
                            extra.remove(&k);
                        }
                    }
                }
            }
            if wrong.is_empty() && extra.is_empty() {
                let b = self.board.lock().expect("board");
                return truth
                    .keys()
                    .filter_map(|k| b.changed_at.get(k))
                    .max()
                    .copied();
            }
            if Instant::now() > stop {
                eprintln!(
                    "not exact after {deadline:?}: {} keys wrong or missing, {} unexpected",
                    wrong.len(),
                    extra.len()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
