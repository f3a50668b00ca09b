//! The client's end of a connection, watched while a sync task runs. actix drops a handler's future on some client
//! disconnects only (actix-web issues 1313 and 3462): measured here, a client closing its socket in the middle of a
//! 10 s sync task left the task running to the end. A client that gave up (a timeout, a cancelled load test) must
//! free its slot and memory at once, or its retries pile onto work nobody waits for.

use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::http::StatusCode;
use actix_web::rt::net::TcpStream;

/// nginx's 499: the client left before its answer. The sync handler answers it when it sees the peer close; the
/// request middleware counts and logs it when actix drops a request whose client reset the connection.
pub fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// How often a waiting sync request looks at its socket: one `poll(2)` that does not block.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The accepted connection's socket, put in each of its requests' connection data.
#[derive(Clone, Copy)]
pub struct PeerSocket(RawFd);

/// For `HttpServer::on_connect`: records the socket of every plain TCP connection.
pub fn record(connection: &dyn Any, data: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<TcpStream>() {
        data.insert(PeerSocket(stream.as_raw_fd()));
    }
}

impl PeerSocket {
    /// Resolves once the client has closed or reset its end of the connection; pending otherwise.
    pub async fn closed(self) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if self.hung_up() {
                return;
            }
        }
    }

    /// A FIN (POLLRDHUP) counts as gone, as nginx counts it (its 499): HTTP/1.1 clients do not half-close and wait.
    fn hung_up(self) -> bool {
        let mut socket = libc::pollfd { fd: self.0, events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one initialised pollfd and a zero timeout. The descriptor is open: actix keeps the connection, and
        // so the socket, until the handler awaiting this future has been dropped.
        let ready = unsafe { libc::poll(&raw mut socket, 1, 0) };
        ready > 0 && socket.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}
