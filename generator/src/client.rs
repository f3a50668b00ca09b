//! HTTP/1.1 over connections this code opens itself, so "reuse" and "a new connection per request" mean exactly that.
//!
//! Hand-written rather than hyper's client: a request is one write and its response is read in the caller's task,
//! with no connection task, channel hop or extra wake-ups per request (the profile of the hyper version showed that
//! machinery as the generator's largest user-space cost). It speaks what a load test needs: GET/POST/DELETE without a
//! request body; responses delimited by Content-Length, chunked encoding or the connection's end; keep-alive unless
//! either side says close.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderValue;
use http::{Method, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Failure;
use crate::target::Target;

/// Longest response head accepted: the consumer's are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response; more is a protocol error.
const MAX_HEADERS: usize = 32;

/// An open connection and the bytes read from it but not yet consumed.
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

/// A response's status, the pod that served it, and its body.
pub struct Reply {
    pub status: StatusCode,
    pub served_by: Option<HeaderValue>,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Why an exchange failed, with what a person needs to read it.
enum Error {
    Connect(io::Error),
    Io(String),
    Protocol(String),
    /// A kept connection the server had closed while it was idle: nothing was answered, the request may be resent.
    Stale,
}

impl Error {
    fn failure(&self) -> Failure {
        match self {
            Error::Connect(_) => Failure::Connect,
            Error::Io(_) | Error::Stale => Failure::Io,
            Error::Protocol(_) => Failure::Protocol,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Io(cause) => f.write_str(cause),
            Error::Protocol(cause) => write!(f, "not an HTTP/1.1 response: {cause}"),
            Error::Stale => f.write_str("connection closed before a response"),
        }
    }
}

pub struct Client {
    address: SocketAddr,
    authority: String,
    timeout: Duration,
    reuse: bool,
}

impl Client {
    /// Resolves the target once: in Kubernetes the Service name maps to one stable ClusterIP.
    pub async fn new(target: &Target, timeout: Duration, reuse: bool) -> Result<Self, String> {
        let address = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", target.host))?;
        if target.authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("bad host {:?}", target.authority));
        }
        Ok(Self { address, authority: target.authority.clone(), timeout, reuse })
    }

    async fn connect(&self) -> Result<Connection, Error> {
        let stream = TcpStream::connect(self.address).await.map_err(Error::Connect)?;
        stream.set_nodelay(true).map_err(Error::Connect)?;
        Ok(Connection { stream, buffer: BytesMut::with_capacity(8 * 1024) })
    }

    /// One request on `connection` (opened here when absent or reuse is off), bounded by the timeout. A kept
    /// connection the server closed while idle is replaced once, as browsers and Go's client do; a failed exchange
    /// leaves `connection` empty so the next request starts clean.
    pub async fn exchange(
        &self,
        connection: &mut Option<Connection>,
        method: &Method,
        uri: &Uri,
        traceparent: Option<HeaderValue>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, Failure> {
        let mut request = self.request(method, uri, traceparent.as_ref(), !self.reuse, None);
        if let Some(key) = idempotency_key {
            // Before the blank line that ends the head (no body: the header block is the request's tail).
            let at = request.len() - 2;
            request.splice(at..at, format!("Idempotency-Key: {key}\r\n").into_bytes());
        }
        let attempt = async {
            let kept = connection.take().filter(|_| self.reuse);
            let reused = kept.is_some();
            let mut open = match kept {
                Some(open) => open,
                None => self.connect().await?,
            };
            let (reply, keep_alive) = match round_trip(&mut open, &request, method).await {
                Err(Error::Stale) if reused => {
                    open = self.connect().await?;
                    round_trip(&mut open, &request, method).await?
                }
                other => other?,
            };
            if self.reuse && keep_alive {
                *connection = Some(open);
            }
            Ok::<_, Error>(reply)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(|e| e.failure()),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// A single request on a fresh connection, with a readable cause on failure (health checks, cleanup, monitor,
    /// the summary's push to Loki); `body` is its content type and bytes.
    pub async fn once(&self, method: Method, path: &str, body: Option<(&str, &[u8])>) -> Result<Reply, String> {
        let attempt = async {
            let uri: Uri = path.parse().map_err(|e| format!("bad path {path}: {e}"))?;
            let request = self.request(&method, &uri, None, true, body);
            let mut open = self.connect().await.map_err(|e| e.to_string())?;
            round_trip(&mut open, &request, &method).await.map(|(reply, _)| reply).map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no response within {}", humantime::format_duration(self.timeout))))
    }

    /// The request's bytes: request line, headers and `body` (content type and bytes), if any.
    fn request(
        &self,
        method: &Method,
        uri: &Uri,
        traceparent: Option<&HeaderValue>,
        close: bool,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(160 + body.map_or(0, |(_, bytes)| bytes.len()));
        for part in [method.as_str(), " ", path, " HTTP/1.1\r\nHost: ", &self.authority, "\r\n"] {
            head.extend_from_slice(part.as_bytes());
        }
        if let Some((content_type, bytes)) = body {
            head.extend_from_slice(
                format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", bytes.len()).as_bytes(),
            );
        } else if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            head.extend_from_slice(b"Content-Length: 0\r\n");
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        if let Some(traceparent) = traceparent {
            head.extend_from_slice(b"traceparent: ");
            head.extend_from_slice(traceparent.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(body.map_or(&[][..], |(_, bytes)| bytes));
        head
    }
}

/// What a response head says about the exchange.
struct Head {
    status: StatusCode,
    served_by: Option<HeaderValue>,
    retry_after: Option<Duration>,
    length: Length,
    keep_alive: bool,
    size: usize,
}

enum Length {
    None,
    Exactly(usize),
    Chunked,
    UntilClose,
}

/// Sends `request` and reads the whole response, so a kept connection is ready for the next. Returns the reply and
/// whether the connection may carry another request.
async fn round_trip(connection: &mut Connection, request: &[u8], method: &Method) -> Result<(Reply, bool), Error> {
    connection.buffer.clear();
    if let Err(e) = connection.stream.write_all(request).await {
        return Err(if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::ConnectionReset {
            Error::Stale
        } else {
            Error::Io(e.to_string())
        });
    }
    let parsed = loop {
        if let Some(parsed) = parse_head(&connection.buffer, method)? {
            connection.buffer.advance(parsed.size);
            // Informational answers (100 Continue) precede the real one.
            if parsed.status.is_informational() {
                continue;
            }
            break parsed;
        }
        if connection.buffer.len() >= MAX_HEAD {
            return Err(Error::Protocol(format!("response head over {MAX_HEAD} bytes")));
        }
        let nothing_yet = connection.buffer.is_empty();
        match read_more(connection).await {
            Ok(0) if nothing_yet => return Err(Error::Stale),
            Ok(0) => return Err(Error::Io("connection closed in the response head".into())),
            Ok(_) => {}
            Err(e) if nothing_yet && e.kind() == io::ErrorKind::ConnectionReset => return Err(Error::Stale),
            Err(e) => return Err(Error::Io(e.to_string())),
        }
    };
    let body = match parsed.length {
        Length::None => Bytes::new(),
        Length::Exactly(length) => {
            while connection.buffer.len() < length {
                read_body(connection).await?;
            }
            connection.buffer.split_to(length).freeze()
        }
        Length::Chunked => read_chunked(connection).await?,
        Length::UntilClose => loop {
            match connection.stream.read_buf(&mut connection.buffer).await {
                Ok(0) => break connection.buffer.split().freeze(),
                Ok(_) => {}
                Err(e) => return Err(Error::Io(e.to_string())),
            }
        },
    };
    // Bytes past the response were never asked for: the connection's framing cannot be trusted again.
    let keep_alive = parsed.keep_alive && !matches!(parsed.length, Length::UntilClose) && connection.buffer.is_empty();
    let reply = Reply { status: parsed.status, served_by: parsed.served_by, retry_after: parsed.retry_after, body };
    Ok((reply, keep_alive))
}

async fn read_more(connection: &mut Connection) -> io::Result<usize> {
    if connection.buffer.capacity() - connection.buffer.len() < 1024 {
        connection.buffer.reserve(8 * 1024);
    }
    connection.stream.read_buf(&mut connection.buffer).await
}

async fn read_body(connection: &mut Connection) -> Result<(), Error> {
    match read_more(connection).await {
        Ok(0) => Err(Error::Io("connection closed in the response body".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Io(e.to_string())),
    }
}

/// The head at the start of `buffer`, or `None` while it is incomplete.
fn parse_head(buffer: &[u8], method: &Method) -> Result<Option<Head>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let size = match response.parse(buffer) {
        Ok(httparse::Status::Complete(size)) => size,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(e.to_string())),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Protocol(format!("status {code}")))?;
    let mut keep_alive = response.version == Some(1);
    let (mut served_by, mut retry_after, mut content_length, mut chunked) = (None, None, None, false);
    for header in response.headers.iter() {
        let value = header.value;
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            content_length = Some(length.ok_or_else(|| Error::Protocol("bad Content-Length".into()))?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.split(|&b| b == b',').any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("x-served-by") {
            served_by = HeaderValue::from_bytes(value).ok();
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after =
                std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
        }
    }
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = match (bodiless, chunked, content_length) {
        (true, ..) => Length::None,
        (false, true, _) => Length::Chunked,
        (false, false, Some(length)) => Length::Exactly(length),
        (false, false, None) => Length::UntilClose,
    };
    Ok(Some(Head { status, served_by, retry_after, length, keep_alive, size }))
}

/// A chunked body, trailers skipped.
async fn read_chunked(connection: &mut Connection) -> Result<Bytes, Error> {
    let mut body = BytesMut::new();
    loop {
        let (start, size) = loop {
            match httparse::parse_chunk_size(&connection.buffer) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) => read_body(connection).await?,
                Err(_) => return Err(Error::Protocol("bad chunk size".into())),
            }
        };
        let size = usize::try_from(size).map_err(|_| Error::Protocol("chunk too large".into()))?;
        connection.buffer.advance(start);
        if size == 0 {
            return skip_trailers(connection).await.map(|()| body.freeze());
        }
        while connection.buffer.len() < size + 2 {
            read_body(connection).await?;
        }
        body.extend_from_slice(&connection.buffer[..size]);
        if &connection.buffer[size..size + 2] != b"\r\n" {
            return Err(Error::Protocol("chunk not followed by CRLF".into()));
        }
        connection.buffer.advance(size + 2);
    }
}

/// The trailer section after the last chunk: header lines up to an empty line.
async fn skip_trailers(connection: &mut Connection) -> Result<(), Error> {
    loop {
        match connection.buffer.windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                connection.buffer.advance(2);
                return Ok(());
            }
            Some(end) => connection.buffer.advance(end + 2),
            None if connection.buffer.len() >= MAX_HEAD => {
                return Err(Error::Protocol(format!("trailers over {MAX_HEAD} bytes")));
            }
            None => read_body(connection).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: &Method) -> Head {
        parse_head(text.as_bytes(), method).ok().flatten().expect("a complete head")
    }

    #[test]
    fn a_head_is_framed_by_its_headers() {
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::GET, "exactly 5", true),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Method::GET, "chunked", true),
            ("HTTP/1.1 200 OK\r\n\r\n", Method::GET, "until close", true),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD, "none", true),
            ("HTTP/1.1 204 No Content\r\n\r\n", Method::GET, "none", true),
            ("HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", Method::GET, "exactly 0", false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET, "exactly 0", false),
            ("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", Method::GET, "exactly 0", true),
        ];
        for (text, method, framing, keep_alive) in cases {
            let parsed = head(text, &method);
            let described = match parsed.length {
                Length::None => "none".to_owned(),
                Length::Exactly(n) => format!("exactly {n}"),
                Length::Chunked => "chunked".to_owned(),
                Length::UntilClose => "until close".to_owned(),
            };
            assert_eq!((described.as_str(), parsed.keep_alive), (framing, keep_alive), "{text:?} {method}");
            assert_eq!(parsed.size, text.len());
        }
    }

    #[test]
    fn the_signals_a_load_test_reads_come_from_the_head() {
        let parsed = head(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\nX-Served-By: consumer-abc\r\ncontent-length: 2\r\n\r\n",
            &Method::POST,
        );
        assert_eq!(parsed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(parsed.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(parsed.served_by.as_ref().map(HeaderValue::as_bytes), Some(&b"consumer-abc"[..]));
    }

    #[test]
    fn an_incomplete_head_waits_and_garbage_is_a_protocol_error() {
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", &Method::GET), Ok(None)));
        for garbage in [&b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..], b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"] {
            assert!(matches!(parse_head(garbage, &Method::GET), Err(Error::Protocol(_))), "{garbage:?}");
        }
    }

    /// A server that answers each connection's requests from `answers` in turn, then closes the connection.
    async fn scripted_server(answers: Vec<Vec<&'static [u8]>>) -> (Target, tokio::task::JoinHandle<usize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let mut connections = 0;
            for script in answers {
                let (mut socket, _) = listener.accept().await.expect("accept");
                connections += 1;
                for answer in script {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await.expect("request");
                    socket.write_all(answer).await.expect("answer");
                }
            }
            connections
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).expect("target");
        (target, server)
    }

    #[tokio::test]
    async fn chunked_bodies_are_read_whole_and_a_connection_closed_while_idle_is_replaced() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n";
        // The first connection answers once and closes while the client holds it idle; the second answers twice.
        let (target, server) = scripted_server(vec![
            vec![&chunked[..]],
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
            ],
        ])
        .await;
        let client = Client::new(&target, Duration::from_secs(5), true).await.expect("client");
        let uri: Uri = "/".parse().expect("uri");
        let mut connection = None;
        let first = client
            .exchange(&mut connection, &Method::GET, &uri, None, None)
            .await
            .unwrap_or_else(|f| panic!("chunked reply: {}", f.key()));
        assert_eq!(&first.body[..], b"hello, world");
        assert!(connection.is_some(), "a complete chunked response leaves the connection reusable");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = client
            .exchange(&mut connection, &Method::GET, &uri, None, None)
            .await
            .unwrap_or_else(|f| panic!("resent: {}", f.key()));
        assert_eq!((second.status, &second.body[..]), (StatusCode::OK, &b"ok"[..]));
        let third = client
            .exchange(&mut connection, &Method::GET, &uri, None, None)
            .await
            .unwrap_or_else(|f| panic!("kept: {}", f.key()));
        assert_eq!((third.status, third.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(3))));
        assert_eq!(server.await.expect("server"), 2, "one new connection for the stale one, then reuse");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_io_failure_and_a_fresh_connection_is_not_retried() {
        let (target, server) =
            scripted_server(vec![vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], vec![]]).await;
        let client = Client::new(&target, Duration::from_secs(5), true).await.expect("client");
        let uri: Uri = "/".parse().expect("uri");
        let mut connection = None;
        let cut = client.exchange(&mut connection, &Method::GET, &uri, None, None).await;
        assert!(matches!(cut, Err(Failure::Io)), "a body cut short");
        assert!(connection.is_none());
        // The second scripted connection closes at once: a fresh connection that answers nothing is not resent.
        let closed = client.exchange(&mut connection, &Method::GET, &uri, None, None).await;
        assert!(matches!(closed, Err(Failure::Io)));
        assert_eq!(server.await.expect("server"), 2);
    }
}
