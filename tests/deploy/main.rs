//! The Kubernetes side, short of a cluster: real kustomize renders, real schemas (Kubernetes 1.30 and KEDA's CRD),
//! policy over the rendered objects, and cross-checks against the real consumer, generator, Prometheus and make.

#[path = "../support/consumer.rs"]
#[allow(dead_code)] // Shared with tests/process, which uses all of it; the cross-checks need only the start-up.
mod consumer;
mod crosscheck;
mod devscript;
mod manifests;
mod network;
mod policy;
#[path = "../support/prometheus.rs"]
#[allow(dead_code)] // Shared with the API and process tests, which also wait for a query's first value.
mod prometheus_server;
mod promql;
mod releases;
mod renovate;
mod schema;
mod scraping;
#[path = "../support/stdin.rs"]
mod stdin;
mod window_edge;
