//! A bound listener that yields plaintext or TLS connections, usable by axum (`axum::serve`)
//! and tonic (`serve_with_incoming_shutdown(listener.into_incoming(), …)`).
//!
//! TLS handshakes run in their own tasks (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]), so a slow or silent client never holds up the accept loop. A failed
//! handshake (no TLS, a client certificate from the wrong CA, a timeout) is logged at debug level
//! and counted in `redwatch_tls_handshake_failures_total{listener}`.

use super::auth::AuthLayer;
use super::SecurityError;
use crate::telemetry::{Counter, Registry};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Handshakes in progress at most per listener; further connections wait in the kernel's
/// backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => t.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

enum Accepting {
    Plain(TcpListener),
    /// Handshaken connections from the handshake tasks; the accept task ends with the listener.
    Tls {
        ready: mpsc::Receiver<(Conn, SocketAddr)>,
        accept_task: tokio::task::JoinHandle<()>,
    },
}

/// A bound listener with its TLS and authentication settings.
pub struct SecureListener {
    local: SocketAddr,
    accepting: Accepting,
    auth: AuthLayer,
}

impl Drop for SecureListener {
    fn drop(&mut self) {
        if let Accepting::Tls { accept_task, .. } = &self.accepting {
            accept_task.abort();
        }
    }
}

impl SecureListener {
    /// `tls = None`: plaintext. The accept task (with TLS) runs on the current Tokio runtime.
    pub fn new(
        name: &'static str,
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        auth: AuthLayer,
        registry: &Arc<Registry>,
    ) -> Result<Self, SecurityError> {
        let local = tcp.local_addr().map_err(|source| SecurityError::Read {
            path: format!("{name} listener address"),
            source,
        })?;
        let accepting = match tls {
            None => Accepting::Plain(tcp),
            Some(config) => {
                let failures = registry.counter(
                    "redwatch_tls_handshake_failures_total",
                    "TLS handshakes that failed (plaintext client, untrusted client certificate, timeout), per listener.",
                    &[("listener", name)],
                );
                let (tx, ready) = mpsc::channel(64);
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let accept_task = tokio::spawn(accept_tls(name, tcp, acceptor, tx, failures));
                Accepting::Tls { ready, accept_task }
            }
        };
        Ok(SecureListener {
            local,
            accepting,
            auth,
        })
    }

    /// A plaintext listener without authentication (tests, tools).
    pub fn plain(tcp: TcpListener) -> io::Result<Self> {
        Ok(SecureListener {
            local: tcp.local_addr()?,
            accepting: Accepting::Plain(tcp),
            auth: AuthLayer::disabled(),
        })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.accepting, Accepting::Tls { .. })
    }

    /// The bearer-token layer for this listener's routes (a pass-through without `auth`).
    pub fn auth_layer(&self) -> AuthLayer {
        self.auth.clone()
    }

    /// The next connection (accept errors are logged and retried, as axum's listener does).
    pub async fn accept(&mut self) -> (Conn, SocketAddr) {
        match &mut self.accepting {
            Accepting::Plain(tcp) => loop {
                match tcp.accept().await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        return (Conn::Plain(s), peer);
                    }
                    Err(e) => accept_error(e).await,
                }
            },
            Accepting::Tls { ready, .. } => match ready.recv().await {
                Some(c) => c,
                // The accept task only ends when aborted by drop: nothing more to accept.
                None => std::future::pending().await,
            },
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming*`.
    pub fn into_incoming(
        self,
    ) -> impl futures::Stream<Item = Result<Conn, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut l| async move {
            let (c, _) = l.accept().await;
            Some((Ok(c), l))
        })
    }
}

impl axum::serve::Listener for SecureListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        SecureListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Errors of `accept` that concern one connection are skipped; others (out of file
/// descriptors) get a pause so the loop does not spin.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {e}; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn accept_tls(
    name: &'static str,
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ready: mpsc::Sender<(Conn, SocketAddr)>,
    failures: Arc<Counter>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, ready, failures) = (acceptor.clone(), ready.clone(), failures.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(slot);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = ready.send((Conn::Tls(Box::new(tls)), peer)).await;
                }
                Ok(Err(e)) => {
                    failures.inc();
                    tracing::debug!("{name}: TLS handshake with {peer} failed: {e}");
                }
                Err(_) => {
                    failures.inc();
                    tracing::debug!("{name}: TLS handshake with {peer} timed out");
                }
            }
        });
    }
}
