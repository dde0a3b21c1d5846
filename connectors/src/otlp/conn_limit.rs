//! A connection cap for the OTLP listeners: at most `max` accepted connections are open at once;
//! the next `accept` waits until one closes (further clients wait in the kernel's listen
//! backlog). Each connection holds a semaphore permit for its lifetime.

use redwatch_engine::security::{Conn, SecureListener};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection (plaintext or TLS) counted against its listener's cap.
pub struct LimitedStream {
    inner: Conn,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A listener that accepts at most `max` concurrent connections.
pub struct LimitedIncoming {
    listener: SecureListener,
    permits: Arc<Semaphore>,
}

impl LimitedIncoming {
    pub fn new(listener: SecureListener, max: usize) -> Self {
        LimitedIncoming {
            listener,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// Waits for a free slot, then for a connection.
    pub async fn next(&mut self) -> io::Result<(LimitedStream, std::net::SocketAddr)> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (inner, addr) = self.listener.accept().await;
        Ok((
            LimitedStream {
                inner,
                _permit: permit,
            },
            addr,
        ))
    }

    /// The accepted connections as a stream (for tonic).
    pub fn into_stream(self) -> impl futures::Stream<Item = io::Result<LimitedStream>> {
        futures::stream::unfold(self, |mut l| async move {
            let r = l.next().await.map(|(s, _)| s);
            Some((r, l))
        })
    }
}

impl axum::serve::Listener for LimitedIncoming {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.next().await {
                Ok(c) => return c,
                // Only a closed semaphore fails here, which never happens while we own it.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        axum::serve::Listener::local_addr(&self.listener)
    }
}
