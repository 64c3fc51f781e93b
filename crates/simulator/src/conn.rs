//! One accepted connection as the handlers see it: a handle on its socket that a drop fault
//! uses to close the connection without a response, and a broken-body fault to write an answer
//! the HTTP server would refuse to send.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Per-connection information handed to handlers: a second handle on the socket, so a drop
/// fault can close the connection without a response.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The second handle; `None` where the platform cannot duplicate a socket.
    pub(crate) socket: Option<Arc<std::net::TcpStream>>,
}

impl ConnInfo {
    /// Shuts the connection down both ways; the client sees it closed with no response.
    pub(crate) fn kill(&self) {
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Writes `bytes` to the socket past the HTTP server (the socket is non-blocking: a full
    /// send buffer is waited out). False when the connection is gone or cannot be written.
    pub(crate) async fn write_raw(&self, mut bytes: &[u8]) -> bool {
        let Some(s) = &self.socket else {
            return false;
        };
        while !bytes.is_empty() {
            match (&**s).write(bytes) {
                Ok(0) => return false,
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// A second handle on `s`, so the connection can be shut down from outside the server.
pub(crate) fn second_handle(s: &TcpStream) -> Option<Arc<std::net::TcpStream>> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        s.as_fd()
            .try_clone_to_owned()
            .ok()
            .map(|fd| Arc::new(std::net::TcpStream::from(fd)))
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsSocket;
        s.as_socket()
            .try_clone_to_owned()
            .ok()
            .map(|fd| Arc::new(std::net::TcpStream::from(fd)))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = s;
        None
    }
}
