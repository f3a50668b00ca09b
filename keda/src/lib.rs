//! How KEDA and the HPA turn a ScaledObject's trigger values into replicas, as pure functions with table tests; no
//! I/O beyond what callers hand in. The generator's watch table, the closed-loop harness and their tests use it.
//!
//! - `hpa`: the HPA's arithmetic (replica_calculator.go, horizontal.go): per-metric replicas, the maximum,
//!   `behavior` (stabilisation, policies), bounds; KEDA's fallback behaviours.
//! - `scaled_object`: a ScaledObject, and the consumer's limits, read from rendered manifests; how a query reads under
//!   the harness's time compression.
//! - `redis_streams`: KEDA's redis-streams scaler: which count it reads from Redis, against which target.
//! - `activation`: KEDA's own scaling to and from its minimum (activation, cooldown, minReplicaCount 0).
//! - `evaluate`: one poll of the triggers into the replicas asked for (fallback included): the one evaluation every
//!   caller uses.

pub mod activation;
pub mod evaluate;
pub mod hpa;
pub mod redis_streams;
pub mod scaled_object;

pub use activation::Activity;
pub use evaluate::{evaluate, Ask, Decision, Failures};
pub use scaled_object::ScaledObject;
