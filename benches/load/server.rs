//! The `redwatch run` process under test: its config (plaintext or TLS with a bearer token),
//! start-up until its `listening` lines, log scanning for warnings and errors, and shutdown.

use super::*;

/// The bearer token of a `--tls` run.
pub(crate) const BENCH_TOKEN: &str = "otlp-load-token";

/// A CA and a server certificate for 127.0.0.1 under `dir`; returns the receiver's `tls` block
/// (YAML flow) and the client's TLS settings.
pub(crate) fn tls_files(
    dir: &std::path::Path,
) -> anyhow::Result<(String, redwatch::config::TlsClientConfig)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca)?;
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_pem, ca.pem())?;
    std::fs::write(&cert_pem, cert.pem())?;
    std::fs::write(&key_pem, key.serialize_pem())?;
    let block = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\" }}",
        cert_pem.display(),
        key_pem.display()
    );
    let client = redwatch::config::TlsClientConfig {
        ca_file: Some(ca_pem),
        ..Default::default()
    };
    Ok((block, client))
}

pub(crate) fn engine_config(mode: Mode) -> String {
    // Throughput: timestamps are at most a few seconds old when they arrive, so 10 s / 1 m keeps
    // every span on time while windows still close during the run. State: the defaults, which
    // are what state per series should be judged by.
    let windows = match mode {
        Mode::Throughput => "  max_out_of_orderness: 10s\n  allowed_lateness: 1m\n",
        Mode::State => {
            "  size: 10s\n  rollups: [1m]\n  max_out_of_orderness: 5s\n  allowed_lateness: 30s\n"
        }
    };
    format!(
        "# written by benches/otlp_load.rs\nreceivers:\n  otlp:\n    grpc: {{ endpoint: \"127.0.0.1:0\" }}\n    http: null\nwindows:\n{windows}red:\n  cardinality_limit: 20000\nexporters:\n  prometheus: {{ endpoint: \"127.0.0.1:0\" }}\n"
    )
}

/// The redwatch process under test.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) grpc: String,
    pub(crate) prometheus: String,
    pub(crate) log: PathBuf,
    pub(crate) warn: Arc<AtomicU64>,
    pub(crate) error: Arc<AtomicU64>,
    pub(crate) reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(
        bin: &std::path::Path,
        cfg: &std::path::Path,
        log: &std::path::Path,
        core: usize,
    ) -> anyhow::Result<Server> {
        let mut child = pinned(core, bin)
            .arg("run")
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let (tx, rx) = mpsc::channel::<(String, String)>();
        let (warn, error) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (w, e) = (warn.clone(), error.clone());
        let mut file = std::fs::File::create(log)?;
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if line.contains(" WARN ") {
                    w.fetch_add(1, Ordering::Relaxed);
                }
                if line.contains(" ERROR ") || line.contains("panicked") {
                    e.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(rest) = line.split("listening ").nth(1) {
                    let mut it = rest.split_whitespace();
                    if let (Some(name), Some(addr)) = (it.next(), it.next()) {
                        let _ = tx.send((name.to_string(), addr.to_string()));
                    }
                }
            }
        });
        let mut s = Server {
            pid: child.id(),
            child,
            grpc: String::new(),
            prometheus: String::new(),
            log: log.to_path_buf(),
            warn,
            error,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.grpc.is_empty() || s.prometheus.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((name, addr)) if name == "otlp_grpc" => s.grpc = addr,
                Ok((name, addr)) if name == "prometheus" => s.prometheus = addr,
                Ok(_) => {}
                Err(_) => {
                    let _ = s.stop();
                    bail!(
                        "redwatch did not log its listening lines within 30 s; see {}",
                        log.display()
                    );
                }
            }
        }
        Ok(s)
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 15 s; describes how it ended.
    pub(crate) fn stop(&mut self) -> String {
        if !self.alive() {
            return format!(
                "already exited ({:?})",
                self.child.try_wait().ok().flatten()
            );
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        let res = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    break format!(
                        "exit {}",
                        st.code().map_or("signal".into(), |c| c.to_string())
                    )
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break "killed after 15 s".to_string();
                }
            }
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        res
    }

    pub(crate) fn log_counts(&self) -> (u64, u64) {
        (
            self.warn.load(Ordering::Relaxed),
            self.error.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
