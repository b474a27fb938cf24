//! [`Activity`]: an IO that notes when bytes arrive, for the keepalive checks of both
//! sides. A large frame still arriving on a slow link is proof that the peer is there,
//! although no whole frame (and no pong, queued behind it) has been read yet.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Wraps `inner`; sets `heard` whenever bytes are read.
pub(crate) struct Activity<S> {
    inner: S,
    heard: Arc<AtomicBool>,
}

impl<S> Activity<S> {
    pub(crate) fn new(inner: S, heard: Arc<AtomicBool>) -> Self {
        Activity { inner, heard }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Activity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.heard.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Activity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_read_are_heard_and_writes_are_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let heard = Arc::new(AtomicBool::new(false));
        let mut io = Activity::new(near, heard.clone());
        io.write_all(b"ping").await.unwrap();
        assert!(
            !heard.load(Ordering::Relaxed),
            "our own writes prove nothing"
        );
        let mut echo = [0u8; 4];
        far.read_exact(&mut echo).await.unwrap();
        far.write_all(b"p").await.unwrap();
        let mut one = [0u8; 1];
        io.read_exact(&mut one).await.unwrap();
        assert!(
            heard.load(Ordering::Relaxed),
            "one byte from the peer is enough"
        );
    }
}
