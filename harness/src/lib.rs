//! The closed-loop harness behind the `cluster` binary (`make demo`, the closed-loop tests): plays a Kubernetes cluster's part on one machine, so the loop from load to replicas and back runs for
//! real: consumer processes as the replicas (simulated CPU, the rendered Deployment's CPU and memory limits as real
//! cgroups where the machine allows, the consumer's defaults reading them), a real
//! HAProxy as the Service (`mode tcp`, a random endpoint per connection as kube-proxy picks, health checks on `/ready`,
//! servers enabled and disabled as pods start and drain), a real Prometheus with the monitoring component's relabeling (file discovery, so targets come and
//! go), a metrics-server reading each replica's CPU and working set, and the ScaledObject evaluated as KEDA's scalers
//! and the HPA do it (`surge_keda`).
//! The generator sends a profile through HAProxy with a new connection per request. What kube-state-metrics and KEDA's
//! operator would report about this run (replicas, the HPA's desire, the Job, the pods' limits, each scaler's value
//! and errors) is served with their metric names and labels and scraped like them, so the dashboards read it.
//!
//! `--time-scale F` compresses time by F: scrape and sync intervals, the queries' rate windows and the profile shrink
//! by F, while the HPA's clock advances a whole sync period (15 s) per sync, so its windows and policy periods keep
//! their manifest values and a stalled machine cannot stretch them; syncs are due every 15/F s of wall time, and how
//! late each began is reported. Rate-valued triggers are divided by F (the same requests arrive F times faster).
//! Times printed are HPA seconds.

//!
//! - `closed_loop`: the flags and the loop, one sync at a time.
//! - `pods`: the replicas as processes, HAProxy as the Service, their discovery labels.
//! - `compose`: a kustomization of the repository's pieces, rendered (a tests' fixture).
//! - `cgroup`: each replica's CPU and memory limits as real cgroups, seen where the consumer looks (where allowed).
//! - `load`: the load Job's generators, one per shard, and their summaries added up.
//! - `node`: one node's cores shared by its pods as CFS shares them, its room by request (`--node-cores`).
//! - `metrics_server`: each replica's CPU and working set as metrics-server reports them, for Resource metrics.
//! - `prometheus`: Prometheus launched on loopback (also the tests' fixture) and fed by file discovery.
//! - `redis`: Redis launched on loopback, the shared backlog (also the queue tests' fixture).
//! - `restartable`: a server the loop stops and starts again over a fault window.
//! - `service`: HAProxy as the Service (also the generator tests' fixture).
//! - `standins`: kube-state-metrics' and KEDA's series for this run.
//! - `syncs`: the autoscaler's clock, a sync period per sync, and how late the machine let each sync be.
//! - `trajectory`: the table printed every sync and the outline at the end.
//! - `versions`: the Prometheus and Redis a run stood on, beside the manifests' pins.
//! - `dashboards`: every dashboard query checked against the run.
//!
//! Not shipped: no image contains it, and nothing shipped depends on it.

pub mod cgroup;
mod closed_loop;
pub mod compose;
mod dashboards;
mod load;
mod metrics_server;
mod node;
mod pods;
pub mod prometheus;
pub mod redis;
mod restartable;
pub mod service;
mod standins;
mod syncs;
mod trajectory;
mod versions;

pub use closed_loop::{run, Args};
pub use dashboards::{selectors, series_name};
