//! How KEDA, the HPA and the Kubernetes controllers between them turn a ScaledObject's trigger values into serving
//! replicas, as pure functions with table tests; no I/O beyond what callers hand in. The generator's watch table, the closed-loop harness and their tests use it.
//!
//! - `hpa`: the HPA's arithmetic (replica_calculator.go, horizontal.go): per-metric replicas, the maximum,
//!   `behavior` (stabilisation, policies), bounds; KEDA's fallback behaviours.
//! - `scaled_object`: a ScaledObject, and the consumer's limits, read from rendered manifests; how a query reads under
//!   the harness's time compression.
//! - `promql`: Prometheus's range windows and `rate()` as 2.42 and 3.14 compute them.
//! - `resource`: the HPA's CPU and memory metrics as metrics-server reports them (a `cpu` trigger, a plain HPA).
//! - `redis_streams`: KEDA's redis-streams scaler: which count it reads from Redis, against which target.
//! - `readers`: one reader per trigger type, which every caller that reads trigger values goes through.
//! - `node`: what a node runs beside the consumer (the manifests' other workloads, a kind node's own pods).
//! - `startup`: a replica's way from created to serving (container start, the kubelet's probes, endpoints).
//! - `replicaset`: which pod a scale-down deletes first, as the ReplicaSet ranks them.
//! - `activation`: KEDA's own scaling to and from its minimum (activation, cooldown, minReplicaCount 0).
//! - `evaluate`: one poll of the triggers into the replicas asked for (fallback included): the one evaluation every
//!   caller uses.
//! - `trajectory`: the figures a run's syncs are judged by (peak, its first stretch, back at the minimum).

pub mod activation;
pub mod evaluate;
pub mod hpa;
pub mod node;
pub mod promql;
pub mod readers;
pub mod redis_streams;
pub mod replicaset;
pub mod resource;
pub mod scaled_object;
pub mod startup;
pub mod trajectory;

pub use activation::Activity;
pub use evaluate::{evaluate, Ask, Decision, Failures};
pub use scaled_object::ScaledObject;
