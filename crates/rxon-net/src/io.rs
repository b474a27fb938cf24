//! [`Tap`]: the one I/O wrapper of the network transports. It passes every read and
//! write through and shows each chunk read to an [`OnRead`] observer:
//!
//! - [`Heard`] notes that bytes arrived, for the keepalive checks of both sides: a large
//!   frame still arriving on a slow link is proof that the peer is there, although no
//!   whole frame (and no pong, queued behind it) has been read yet;
//! - [`Sniffed`] keeps a copy of the first bytes, so that a peer answering an upgrade
//!   with an HTTP response instead of frames can be recognised.

use crate::forward_async_write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees the bytes a [`Tap`] reads.
pub trait OnRead {
    /// Called with each non-empty chunk read.
    fn on_read(&mut self, bytes: &[u8]);
}

/// Sets a flag whenever bytes are read.
#[derive(Debug, Clone)]
pub struct Heard(pub Arc<AtomicBool>);

impl OnRead for Heard {
    fn on_read(&mut self, _: &[u8]) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Keeps the first `limit` bytes read.
#[derive(Debug, Clone, Default)]
pub struct Sniffed {
    seen: Vec<u8>,
    limit: usize,
}

impl Sniffed {
    /// Keeps up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Sniffed {
            seen: Vec::new(),
            limit,
        }
    }

    /// The bytes kept so far.
    pub fn seen(&self) -> &[u8] {
        &self.seen
    }
}

impl OnRead for Sniffed {
    fn on_read(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.seen.len());
        self.seen.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Wraps `inner`, showing every chunk read to an [`OnRead`] observer; writes pass
/// through untouched (vectored writes included).
#[derive(Debug)]
pub struct Tap<S, O> {
    inner: S,
    observer: O,
}

impl<S, O: OnRead> Tap<S, O> {
    /// Wraps `inner`.
    pub fn new(inner: S, observer: O) -> Self {
        Tap { inner, observer }
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin, O: OnRead + Unpin> AsyncRead for Tap<S, O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.observer.on_read(&buf.filled()[before..]);
        }
        read
    }
}

forward_async_write!([S: AsyncWrite + Unpin, O: Unpin] Tap<S, O> => inner);

/// Implements `tokio::io::AsyncWrite` for a wrapper by passing every write (vectored
/// ones included) to one of its fields: the one copy of that forwarding for the
/// wrappers of the transports (this crate's [`Tap`], a listener's counted connection).
///
/// ```
/// use rxon_net::forward_async_write;
/// struct Counted { io: tokio::net::TcpStream, _slot: () }
/// forward_async_write!([] Counted => io);
/// ```
#[macro_export]
macro_rules! forward_async_write {
    ([$($bounds:tt)*] $ty:ty => $field:ident) => {
        impl<$($bounds)*> $crate::io::__tokio_io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                $crate::io::__tokio_io::AsyncWrite::poll_write(
                    ::std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                    buf,
                )
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                $crate::io::__tokio_io::AsyncWrite::poll_write_vectored(
                    ::std::pin::Pin::new(&mut self.get_mut().$field),
                    cx,
                    bufs,
                )
            }

            fn is_write_vectored(&self) -> bool {
                $crate::io::__tokio_io::AsyncWrite::is_write_vectored(&self.$field)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::io::__tokio_io::AsyncWrite::poll_flush(::std::pin::Pin::new(&mut self.get_mut().$field), cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::io::__tokio_io::AsyncWrite::poll_shutdown(::std::pin::Pin::new(&mut self.get_mut().$field), cx)
            }
        }
    };
}

#[doc(hidden)]
pub use tokio::io as __tokio_io;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_read_are_heard_and_writes_are_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let heard = Arc::new(AtomicBool::new(false));
        let mut io = Tap::new(near, Heard(heard.clone()));
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

    #[tokio::test]
    async fn sniffing_keeps_only_the_first_bytes() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = Tap::new(near, Sniffed::new(5));
        far.write_all(b"HTTP/1.1 401").await.unwrap();
        let mut got = [0u8; 12];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 401", "reads pass through whole");
        assert_eq!(io.observer().seen(), b"HTTP/");
    }
}
