//! In-test receivers speaking the real wire protocols: OTLP/gRPC traces and Loki's snappy-protobuf push.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// Received spans with the service name of their resource.
#[derive(Clone, Default)]
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    /// How long each export waits before it is answered: a slow collector.
    delay: Duration,
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl OtlpReceiver {
    /// Serves the collector's trace service on a loopback port; returns its address.
    pub fn start() -> (Self, SocketAddr) {
        Self::start_answering_after(Duration::ZERO)
    }

    /// The same, answering each export only after `delay`. On a thread and runtime of its own, as a collector is a
    /// process of its own: its decoding never runs on the test's threads that time the consumer.
    pub fn start_answering_after(delay: Duration) -> (Self, SocketAddr) {
        let receiver = Self { delay, ..Self::default() };
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(receiver.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .expect("OTLP receiver");
            });
        });
        (receiver, addr)
    }

    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().expect("spans").clone()
    }
}

/// One pushed log line with its stream's labels.
#[derive(Clone, Debug)]
pub struct LokiLine {
    pub labels: String,
    pub line: String,
}

#[derive(Clone, Default)]
pub struct LokiReceiver {
    lines: Arc<Mutex<Vec<LokiLine>>>,
    /// How long each push waits before it is answered: a slow Loki.
    delay: Duration,
}

impl LokiReceiver {
    /// Serves `POST /loki/api/v1/push` on a loopback port, decoding snappy-compressed protobuf `PushRequest`s.
    pub fn start() -> (Self, SocketAddr) {
        Self::start_answering_after(Duration::ZERO)
    }

    /// The same, answering each push only after `delay`.
    pub fn start_answering_after(delay: Duration) -> (Self, SocketAddr) {
        let receiver = Self { delay, ..Self::default() };
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = web::Data::new(receiver.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).route("/loki/api/v1/push", web::post().to(push))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        (receiver, addr)
    }

    pub fn lines(&self) -> Vec<LokiLine> {
        self.lines.lock().expect("lines").clone()
    }
}

async fn push(receiver: web::Data<LokiReceiver>, request: actix_web::HttpRequest, body: web::Bytes) -> HttpResponse {
    tokio::time::sleep(receiver.delay).await;
    if request.headers().get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
        return HttpResponse::BadRequest().body("not snappy");
    };
    let Ok(push) = loki_api::logproto::PushRequest::decode(raw.as_slice()) else {
        return HttpResponse::BadRequest().body("not a PushRequest");
    };
    let mut lines = receiver.lines.lock().expect("lines");
    for stream in push.streams {
        for entry in stream.entries {
            assert!(entry.timestamp.is_some(), "every entry carries a timestamp");
            lines.push(LokiLine { labels: stream.labels.clone(), line: entry.line });
        }
    }
    HttpResponse::NoContent().finish()
}

/// A port nothing listens on: connections are refused.
pub fn refusing_port() -> SocketAddr {
    StdListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

/// A port that accepts connections and never answers: the worst kind of sink outage.
pub fn black_hole() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    addr
}
