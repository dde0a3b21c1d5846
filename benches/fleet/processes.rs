//! The fleet bench's redwatch processes (spawned pinned, signalled, scraped), its topics and the
//! sentinel requests that close the backlog's last windows.

use super::*;

pub(super) struct Instance {
    pub(super) name: String,
    pub(super) child: Child,
    pub(super) log: PathBuf,
    pub(super) prom: String,
}

impl Instance {
    pub(super) fn spawn(bin: &Path, dir: &Path, name: &str, core: u32, yaml: &str) -> Instance {
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).expect("config written");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new("taskset")
            .args(["-c", &core.to_string()])
            .arg(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("taskset redwatch starts");
        let mut i = Instance {
            name: name.into(),
            child,
            log,
            prom: String::new(),
        };
        i.prom = i.addr("prometheus");
        i
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn addr(&mut self, what: &str) -> String {
        let needle = format!("listening {what} ");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(a) = self.log_text().lines().find_map(|l| {
                l.find(&needle)
                    .map(|i| l[i + needle.len()..].trim().to_string())
            }) {
                return a;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("{} exited with {s}:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < until, "{}: no {what} address", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// User + system CPU seconds so far.
    pub(super) fn cpu_s(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields 14 and 15 of stat; `after` starts at field 3.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// The sum of a metric's samples whose labels contain every `label="value"` given.
    pub(super) async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", self.prom)).await else {
            return f64::NAN;
        };
        let text = r.text().await.unwrap_or_default();
        let mut sum = 0.0;
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, v)) = l.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or_default();
            if metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            {
                sum += v.parse::<f64>().unwrap_or(0.0);
            }
        }
        sum
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One experiment's topics and instance configs.
pub(super) struct Topics {
    pub(super) input: String,
    pub(super) shuffle: String,
    pub(super) results: String,
    pub(super) sink: String,
}

impl Topics {
    pub(super) async fn create(brokers: &str, name: &str) -> Topics {
        let input = format!("fleet_bench_{name}_{}", now_ns());
        let t = Topics {
            shuffle: format!("{input}_partials"),
            results: format!("{input}_windows"),
            sink: format!("{input}_all_red"),
            input,
        };
        for topic in [&t.input, &t.shuffle, &t.results, &t.sink] {
            create_topic_on(brokers, topic, PARTITIONS).await;
        }
        t
    }

    /// `redwatch run` config: the defaults but for ephemeral ports, the fleet's topics and
    /// `windows` / `librdkafka` as given.
    pub(super) fn config(
        &self,
        brokers: &str,
        role: &str,
        windows: &str,
        librdkafka: &str,
    ) -> String {
        let group = if role == "all" {
            format!("{}_all", self.input)
        } else {
            format!("{}_fleet", self.input)
        };
        let metrics_topic = if role == "all" {
            self.sink.as_str()
        } else {
            "null"
        };
        format!(
            "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka:\n    brokers: ['{brokers}']\n    traces_topic: {input}\n    metrics_topic: null\n    \
             group_id: {group}\n    client_id: {role}\n    librdkafka: {librdkafka}\n\
             windows: {windows}\n\
             exporters:\n  prometheus: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka: {{ brokers: ['{brokers}'], metrics_topic: {metrics_topic}, spans_topic: null }}\n\
             sql:\n  http_endpoint: 127.0.0.1:0\n  flight_endpoint: null\n\
             fleet: {{ role: {role}, shuffle_topic: {shuffle}, results_topic: {results} }}\n",
            input = self.input,
            shuffle = self.shuffle,
            results = self.results,
        )
    }
}

/// Waits until `instances` together hold every partition (`metric` = the assignment gauge).
pub(super) async fn wait_assigned(instances: &[&Instance], metric: &str, topic: Option<&str>) {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let mut held = 0.0;
        for i in instances {
            for p in 0..PARTITIONS {
                let ps = p.to_string();
                let mut labels = vec![("partition", ps.as_str())];
                if let Some(t) = topic {
                    labels.push(("topic", t));
                }
                held += i.metric(metric, &labels).await;
            }
        }
        if held == PARTITIONS as f64 {
            return;
        }
        if Instant::now() > until {
            let logs: Vec<String> = instances
                .iter()
                .map(|i| format!("--- {}\n{}", i.name, i.log_text()))
                .collect();
            panic!(
                "{metric}: {held} of {PARTITIONS} assigned\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Span names of the sentinel service whose series land on every shuffle partition: a merge
/// closes a window of a shuffle partition once every share wrote a later window there.
pub(super) fn sentinel_names() -> Vec<String> {
    let mut names: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    for i in 0.. {
        let name = format!("tick{i}");
        let key = format!("10s|0|x|sentinel|{name}|SPAN_KIND_SERVER");
        let p = partition_for(key.as_bytes(), PARTITIONS) as usize;
        names[p].get_or_insert(name);
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    names.into_iter().flatten().collect()
}

/// A request with one span of each sentinel series, ending at `end`.
pub(super) fn sentinel(end: u64) -> Vec<u8> {
    let spans = sentinel_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| Span {
            trace_id: [7; 16].to_vec(),
            span_id: (end + i as u64).to_be_bytes().to_vec(),
            name,
            kind: 2,
            start_time_unix_nano: end - 1_000_000,
            end_time_unix_nano: end,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("sentinel".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}
