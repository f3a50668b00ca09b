//! The closed loop in virtual time: no processes, no sockets, no sleeping. A load's arrivals go through the Service's
//! random pick or into the shared backlog; each replica runs its tasks under the consumer's own capacity rules
//! (`surge_capacity`), shares a node's cores as CFS does and starts up through its probes; Prometheus scrapes every
//! replica and the ScaledObject's own queries are evaluated over its series; KEDA's and the HPA's arithmetic
//! (`surge_keda`) decides the replicas each sync. Everything random comes from one seed.
//!
//! - `setup`: what a run is made of, read from the rendered manifests.
//! - `pod`: one replica: its way to serving, its tasks, its series, its drain.
//! - `query`: the part of PromQL the ScaledObject's queries use, parsed and evaluated.
//! - `prometheus`: the replicas' series as scraped, marked stale when a replica goes.
//! - `run`: the loop, one step of virtual time at a time, a sync every 15 s.
//! - `outcome`: the rows and the figures a run is judged by.
//! - `promises`: the load-generator README's trajectory rows, which runs here and in the closed loop are held to.
//! - `phases`: the generator's loads that change shape (phase profiles), as the tasks they ask for; any load by name.
//! - `trace`: a recorded load (a counter's `query_range` answer or CSV export) and its arrivals.

pub mod outcome;
pub mod phases;
pub mod pod;
mod prometheus;
pub mod promises;
pub mod query;
pub mod run;
pub mod setup;
pub mod trace;

pub use outcome::{Outcome, Row};
pub use phases::arrivals_of;
pub use pod::Task;
pub use run::{arrivals, simulate, Arrival, Options};
pub use setup::Setup;
