//! HTTP/1.1 over connections this code opens itself, so "reuse" and "a new connection per request" mean exactly that.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::plan::Target;
use crate::stats::Failure;

pub type Connection = SendRequest<Empty<Bytes>>;

/// A response's status, the pod that served it, and its body.
pub struct Reply {
    pub status: StatusCode,
    pub served_by: Option<HeaderValue>,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

pub struct Client {
    address: SocketAddr,
    host: HeaderValue,
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
        let host =
            HeaderValue::from_str(&target.authority).map_err(|e| format!("bad host {}: {e}", target.authority))?;
        Ok(Self { address, host, timeout, reuse })
    }

    async fn connect(&self) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(self.address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        // The connection future drives the socket; it ends when the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// One request on `connection` (opened here when absent, closed, or reuse is off), bounded by the timeout.
    /// A failed exchange leaves `connection` empty so the next request starts clean.
    pub async fn exchange(
        &self,
        connection: &mut Option<Connection>,
        method: &Method,
        uri: &Uri,
        traceparent: Option<HeaderValue>,
    ) -> Result<Reply, Failure> {
        let attempt =
            async {
                let mut sender = match connection.take() {
                    Some(sender) if self.reuse && !sender.is_closed() => sender,
                    _ => self.connect().await.map_err(|_| Failure::Connect)?,
                };
                let reply = round_trip(&mut sender, self.request(method, uri.clone(), traceparent))
                    .await
                    .map_err(|e| if e.is_parse() { Failure::Protocol } else { Failure::Io })?;
                if self.reuse {
                    *connection = Some(sender);
                }
                Ok(reply)
            };
        tokio::time::timeout(self.timeout, attempt).await.unwrap_or(Err(Failure::Timeout))
    }

    /// A single request on a fresh connection, with a readable cause on failure (health checks, cleanup, monitor).
    pub async fn once(&self, method: Method, path: &str) -> Result<Reply, String> {
        let attempt = async {
            let uri: Uri = path.parse().map_err(|e| format!("bad path {path}: {e}"))?;
            let mut sender = self.connect().await.map_err(|e| e.to_string())?;
            let mut request = self.request(&method, uri, None);
            request.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            round_trip(&mut sender, request).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no response within {}", humantime::format_duration(self.timeout))))
    }

    fn request(&self, method: &Method, uri: Uri, traceparent: Option<HeaderValue>) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        if !self.reuse {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(traceparent) = traceparent {
            headers.insert("traceparent", traceparent);
        }
        request
    }
}

/// Sends one request and reads the whole response, so a kept connection is ready for the next.
async fn round_trip(sender: &mut Connection, request: Request<Empty<Bytes>>) -> Result<Reply, hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let served_by = response.headers().get("x-served-by").cloned();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, served_by, retry_after, body })
}
