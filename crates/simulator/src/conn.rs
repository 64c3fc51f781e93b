//! One accepted connection as the handlers see it: a handle on its socket that a drop fault
//! uses to close the connection without a response.

use std::sync::Arc;
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
