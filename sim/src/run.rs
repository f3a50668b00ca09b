//! The loop in virtual time, step by step: arrivals through the Service's random pick (or into the shared backlog every
//! replica pulls from), the node binding and sharing its cores, every replica running its tasks, Prometheus scraping
//! each on its own offset, and once per HPA sync the ScaledObject evaluated and the Deployment scaled, with the
//! ReplicaSet choosing whom to delete. Nothing sleeps; everything random comes from the seed.

use std::collections::VecDeque;

use surge_capacity::node::{pod_shares, OnNode};
use surge_generator::profiles::Profile;
use surge_keda::evaluate::HPA_SYNC_SECONDS;
use surge_keda::hpa::History;
use surge_keda::readers::{read, Sources};
use surge_keda::redis_streams::Count;
use surge_keda::redis_streams::RedisStreams;
use surge_keda::replicaset::{deletion_order, Candidate};
use surge_keda::resource::{
    self, memory_milli, reported, Phase, Pod as ResourcePod, Readiness, Resource, Target, Timing,
};
use surge_keda::startup::{CONTAINER_START_SECONDS, ENDPOINTS_SECONDS};
use surge_keda::{evaluate, Activity, Failures};

use crate::outcome::{Outcome, Row};
use crate::pod::{Pod, Queued, Task};
use crate::prometheus::Prometheus;
use crate::setup::Setup;

/// From exec to the first answer, the release consumer with its defaults: 5.2 ms (`make bench`, bench/RESULTS.md).
const LISTENING_SECONDS: f64 = 0.0052;
/// The generator sends a 503 again after its Retry-After, ±50%, up to 5 times (its `--max-retries` default); the
/// consumer's Retry-After for a full backlog is taken as 1 s here.
const MAX_RETRIES: u32 = 5;
const RETRY_AFTER_SECONDS: f64 = 1.0;
/// The replicas at the minimum are up this long before the load starts, as the closed loop waits for them.
const WARM_UP_SECONDS: f64 = 30.0;
/// Prometheus passes a new target on at the next tick of a 5 s wall-clock ticker (the discovery manager's `updatert`,
/// `discovery/legacymanager/manager.go` in 2.42.0, `discovery/manager.go` in 3.14.0); the scrape manager, waiting on
/// its reload trigger once its own 5 s tick has passed, takes it at once (`scrape/manager.go` `reloader`). Measured
/// with Debian's 2.42 and file discovery: a target's first sample 2.2-3.5 s after it was written (six targets).
const DISCOVERY_TICK_SECONDS: f64 = 5.0;
/// metrics-server reads every pod's CPU time each `--metric-resolution` (15 s in the 0.9.0 release `make dev` installs)
/// and reports the usage between its last two readings.
const METRICS_RESOLUTION_SECONDS: f64 = 15.0;

/// One request of the load: when it is sent and what it asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at: f64,
    pub task: Task,
}

/// The profile's requests as the generator sends them at `--scale 1`, one shard, real time.
pub fn arrivals(profile: &Profile) -> Vec<Arrival> {
    let task = Task::of(profile);
    profile.arrival_times().map(|at| Arrival { at, task }).collect()
}

/// How a run is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub seed: u64,
    /// The step of virtual time, seconds.
    pub step: f64,
    /// How long after the load the run may take to come back to the minimum before it stops anyway.
    pub settle_limit: f64,
    /// The closed loop's compression to play: its Prometheus still ticks discovery in wall seconds, so at x20 a new
    /// replica waits up to 200 s of the autoscaler's time for its first scrape. 1 for a cluster.
    pub time_scale: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { seed: 1, step: 0.1, settle_limit: 3600.0, time_scale: 1.0 }
    }
}

/// When a target that appears at `t` reaches the scrape loop: the discovery ticker's next tick.
fn next_tick(t: f64, period: f64, phase: f64) -> f64 {
    phase + ((t - phase) / period).ceil() * period
}

/// A request waiting to be sent again after a 503.
#[derive(Debug, Clone, Copy)]
struct Retry {
    at: f64,
    first_sent: f64,
    task: Task,
    tries: u32,
}

struct World<'a> {
    setup: &'a Setup,
    step: f64,
    /// The discovery ticker's period in this run's seconds, and its phase.
    discovery_tick: f64,
    discovery_phase: f64,
    /// When metrics-server reads the pods, modulo its resolution.
    metrics_phase: f64,
    rng: fastrand::Rng,
    pods: Vec<Pod>,
    created: usize,
    backlog: VecDeque<Queued>,
    retries: Vec<Retry>,
    /// Sync requests accepted and not yet answered.
    sync_waiting: u64,
    /// When the latest answer went back (an async request's acceptance, a sync one's end, a final refusal).
    last_answer: f64,
    prometheus: Prometheus,
    outcome: Outcome,
}

/// Plays `arrivals` (in time order) against the setup; the trajectory and what the load met.
pub fn simulate(setup: &Setup, arrivals: &[Arrival], options: &Options) -> Outcome {
    let so = &setup.scaled_object;
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let discovery_tick = DISCOVERY_TICK_SECONDS * options.time_scale;
    let discovery_phase = rng.f64() * discovery_tick;
    // Its own stream, so a setup without Resource metrics plays the same runs it did before they were modelled.
    let metrics_phase = fastrand::Rng::with_seed(!options.seed).f64() * METRICS_RESOLUTION_SECONDS;
    let mut world = World {
        setup,
        step: options.step,
        discovery_tick,
        discovery_phase,
        metrics_phase,
        rng,
        pods: Vec::new(),
        created: 0,
        backlog: VecDeque::new(),
        retries: Vec::new(),
        sync_waiting: 0,
        last_answer: 0.0,
        prometheus: Prometheus::default(),
        outcome: Outcome::default(),
    };
    let floor = so.min_replica_count;
    world.scale_to(so.scaling.min.max(floor), -WARM_UP_SECONDS);
    world.outcome.scale_events = 0;
    let (mut history, mut failures, mut activity) = (None::<History>, Failures::default(), Activity::default());
    let mut next_arrival = 0;
    let mut next_sync = 0.0;
    for step in 0_u64.. {
        // Whole steps from the start, so the clock does not drift by adding a step at a time.
        let t = -WARM_UP_SECONDS + step as f64 * options.step;
        let until = t + options.step;
        while next_arrival < arrivals.len() && arrivals[next_arrival].at < until {
            let arrival = arrivals[next_arrival];
            world.send(arrival.at, arrival.at, arrival.task, 0);
            next_arrival += 1;
        }
        world.resend(until);
        world.run_step(t);
        if t + options.step / 2.0 >= next_sync {
            let current = world.replicas();
            let ready = world.ready(t);
            let values = world.trigger_values(t);
            let decision = evaluate(so, &values, current, ready, &mut failures, HPA_SYNC_SECONDS);
            let history = history.get_or_insert_with(|| History::seeded(t, current));
            let desired = match decision.proposal {
                Some(proposal) if current > 0 => so.scaling.decide(history, t, current, proposal),
                _ => current,
            };
            let desired = activity.request_scale(so, &values, current, t).unwrap_or(desired);
            world.outcome.rows.push(Row {
                t,
                current,
                desired,
                ready,
                pending: world.pending(),
                values: values.iter().map(|v| v.as_ref().ok().copied()).collect(),
                asks: decision.asks.iter().map(|a| a.replicas()).collect(),
            });
            world.scale_to(desired, t);
            // The load has ended once every request was answered, as the closed loop reads the generator's end.
            let answered = next_arrival == arrivals.len() && world.retries.is_empty() && world.sync_waiting == 0;
            if answered && current == floor && desired == floor && world.is_idle() {
                break;
            }
            if answered && t - world.last_answer > options.settle_limit {
                world.outcome.unsettled = true;
                break;
            }
            next_sync += HPA_SYNC_SECONDS;
        }
    }
    world.outcome.load_end = world.last_answer;
    world.outcome
}

impl World<'_> {
    fn live(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.gone.is_none() && p.deleting.is_none())
    }

    /// The Deployment's replicas: every pod not being deleted, Pending ones too.
    fn replicas(&self) -> u32 {
        self.live().count() as u32
    }

    fn ready(&self, t: f64) -> u32 {
        self.live().filter(|p| p.ready.is_some_and(|r| r <= t)).count() as u32
    }

    fn pending(&self) -> u32 {
        self.live().filter(|p| p.bound.is_none()).count() as u32
    }

    fn is_idle(&self) -> bool {
        self.backlog.is_empty() && self.pods.iter().all(Pod::is_idle)
    }

    /// The shared backlog's length as `XLEN` counts it: waiting, and handed out until finished.
    fn backlog_length(&self) -> usize {
        self.backlog.len() + self.pods.iter().map(Pod::holding_shared).sum::<usize>()
    }

    /// A request reaching the Service at `at`: a random serving replica takes it, or it is refused (503) and sent
    /// again later.
    fn send(&mut self, at: f64, first_sent: f64, task: Task, tries: u32) {
        let serving: Vec<usize> = (0..self.pods.len()).filter(|&i| self.pods[i].is_serving(at)).collect();
        let accepted = !serving.is_empty() && {
            let index = serving[self.rng.usize(..serving.len())];
            let shared = self.setup.shared_backlog && !task.sync;
            let full = if shared {
                self.backlog_length() >= self.setup.queue_capacity
            } else {
                self.pods[index].queue.len() >= self.setup.queue_capacity
            };
            let pod = &mut self.pods[index];
            if full {
                pod.requests_refused += 1.0;
            } else {
                pod.requests_ok += 1.0;
                if task.sync {
                    self.sync_waiting += 1;
                } else {
                    self.last_answer = self.last_answer.max(at);
                }
                let queued = Queued { task, accepted: first_sent };
                if shared {
                    self.backlog.push_back(queued);
                } else {
                    pod.queue.push_back(queued);
                }
            }
            !full
        };
        if !accepted {
            if tries < MAX_RETRIES {
                let wait = RETRY_AFTER_SECONDS * (0.5 + self.rng.f64());
                self.retries.push(Retry { at: at + wait, first_sent, task, tries: tries + 1 });
            } else {
                self.outcome.refused += 1;
                self.last_answer = self.last_answer.max(at);
            }
        }
    }

    fn resend(&mut self, until: f64) {
        let (due, later): (Vec<Retry>, Vec<Retry>) = self.retries.drain(..).partition(|r| r.at < until);
        self.retries = later;
        for retry in due {
            self.send(retry.at, retry.first_sent, retry.task, retry.tries);
        }
    }

    /// One step from `t`: the node, the pulls, the work, the drains, the scrapes.
    fn run_step(&mut self, t: f64) {
        let setup = self.setup;
        self.bind(t);
        self.share_out(t);
        // The replicas with room pull in turn, in an order that changes every step (their reads race).
        let mut order: Vec<usize> = (0..self.pods.len()).filter(|&i| self.pods[i].pulls(t)).collect();
        self.rng.shuffle(&mut order);
        for &i in &order {
            while let Some(next) = self.backlog.front().copied() {
                if !self.pods[i].has_room(&setup.limits, &next.task) {
                    break;
                }
                self.backlog.pop_front();
                self.pods[i].start(next, t, true);
            }
        }
        for pod in self.pods.iter_mut().filter(|p| p.is_listening(t)) {
            pod.start_queued(&setup.limits, t);
            for finished in pod.advance(&setup.limits, t, self.step) {
                let waited = finished.at - finished.queued.accepted;
                if finished.queued.task.sync {
                    self.outcome.latencies.push(waited);
                    self.sync_waiting -= 1;
                    self.last_answer = self.last_answer.max(finished.at);
                } else {
                    self.outcome.sojourns.push(waited);
                }
            }
        }
        self.drain(t);
        for pod in self.pods.iter_mut().filter(|p| p.is_listening(t)) {
            while pod.next_reading <= t + self.step {
                let reading = pod.reading(pod.next_reading);
                pod.readings.push(reading);
                if pod.readings.len() > 2 {
                    pod.readings.remove(0);
                }
                pod.next_reading += METRICS_RESOLUTION_SECONDS;
            }
        }
        let backlog = self.setup.shared_backlog.then(|| self.backlog_length());
        for pod in self.pods.iter_mut().filter(|p| p.is_listening(t)) {
            while pod.next_scrape <= t + self.step {
                self.prometheus.append(pod.next_scrape, pod.scrape(&setup.target_labels, backlog));
                pod.next_scrape += setup.scrape_interval;
            }
        }
        if t >= 0.0 {
            let ready = self.pods.iter().filter(|p| p.gone.is_none() && p.ready.is_some_and(|r| r <= t)).count();
            self.outcome.ready_replica_seconds += ready as f64 * self.step;
            self.outcome.pending_replica_seconds += f64::from(self.pending()) * self.step;
        }
    }

    /// The scheduler binds Pending replicas in creation order while the node has room for their request.
    fn bind(&mut self, t: f64) {
        let setup = self.setup;
        let mut used: f64 = setup.node.map_or(0.0, |n| n.others)
            + self
                .pods
                .iter()
                .filter(|p| p.bound.is_some() && p.gone.is_none())
                .map(|_| setup.request_cores)
                .sum::<f64>();
        for pod in self.pods.iter_mut().filter(|p| p.bound.is_none() && p.gone.is_none() && p.deleting.is_none()) {
            let fits = setup.node.is_none_or(|n| used + setup.request_cores <= n.cores + 1e-9);
            if !fits {
                break;
            }
            used += setup.request_cores;
            let started = t + CONTAINER_START_SECONDS;
            pod.bound = Some(t);
            pod.listening = Some(started + LISTENING_SECONDS);
            pod.ready = Some(started + setup.startup.ready_after(LISTENING_SECONDS));
            pod.serving = pod.ready.map(|r| r + ENDPOINTS_SECONDS);
            // The replicas the run starts with are scraped before the load begins, as the closed loop waits for it.
            let listening = started + LISTENING_SECONDS;
            let discovered =
                if t < 0.0 { listening } else { next_tick(listening, self.discovery_tick, self.discovery_phase) };
            pod.next_scrape = discovered + self.rng.f64() * setup.scrape_interval;
            pod.next_reading = next_tick(listening, METRICS_RESOLUTION_SECONDS, self.metrics_phase);
        }
    }

    /// CFS over the node's running replicas, or each its limit without a node.
    fn share_out(&mut self, t: f64) {
        let setup = self.setup;
        let Some(node) = setup.node else {
            self.pods.iter_mut().for_each(|p| p.share = setup.limit_cores);
            return;
        };
        let on: Vec<usize> = (0..self.pods.len()).filter(|&i| self.pods[i].is_listening(t)).collect();
        let claims: Vec<OnNode> = on
            .iter()
            .map(|&i| OnNode {
                demand: self.pods[i].demand_cores(),
                request: setup.request_cores,
                limit: setup.limit_cores,
            })
            .collect();
        for (&i, share) in on.iter().zip(pod_shares(node.cores, node.others, &claims)) {
            self.pods[i].share = share;
        }
    }

    /// Replicas being deleted finish what they hold, up to the shutdown timeout; then what came from the shared
    /// backlog goes back to its head and the rest is lost with the process.
    fn drain(&mut self, t: f64) {
        let timeout = self.setup.shutdown_timeout;
        for pod in &mut self.pods {
            let Some(deleting) = pod.deleting else { continue };
            if pod.gone.is_some() {
                continue;
            }
            if pod.bound.is_none() || pod.is_idle() {
                pod.gone = Some(t);
            } else if t >= deleting + timeout {
                let (handed_back, lost) = pod.stop_running();
                self.outcome.handed_back += handed_back.len() as u64;
                self.outcome.lost += (lost.own + lost.sync) as u64;
                // A sync caller whose task went with the process gets its connection closed: answered, failed.
                self.sync_waiting -= lost.sync as u64;
                for queued in handed_back.into_iter().rev() {
                    self.backlog.push_front(queued);
                }
                pod.gone = Some(t);
            }
            if pod.gone.is_some() {
                self.prometheus.stale(&pod.name, t);
            }
        }
    }

    /// Each trigger's value as KEDA reads it at `t`, or its error.
    fn trigger_values(&self, t: f64) -> Vec<Result<f64, String>> {
        read(&self.setup.scaled_object.triggers, &ReadAt { world: self, t })
    }

    /// A replica as the HPA's Resource calculation lists it: its phase, readiness and metrics-server's CPU reading.
    fn as_listed(&self, pod: &Pod, resource: Resource, t: f64) -> ResourcePod {
        let started = pod.listening.filter(|at| *at <= t).map(|at| at - LISTENING_SECONDS);
        let readiness = started.map(|since| match pod.ready.filter(|r| *r <= t) {
            Some(ready) => Readiness { ready: true, since: ready },
            None => Readiness { ready: false, since },
        });
        let usage = reported(&pod.readings, resource);
        let request_milli = match resource {
            Resource::Cpu => (self.setup.request_cores * 1000.0).round() as i64,
            Resource::Memory => memory_milli(self.setup.request_memory_bytes),
        };
        ResourcePod {
            phase: if started.is_some() { Phase::Running } else { Phase::Pending },
            deleting: pod.deleting.is_some(),
            started_at: started,
            readiness,
            request_milli,
            usage,
        }
    }

    /// Sets the Deployment's replicas: new pods are created Pending; fewer deletes the ReplicaSet's choice.
    fn scale_to(&mut self, desired: u32, t: f64) {
        let current = self.replicas();
        if desired > current {
            self.outcome.scale_events += 1;
            for _ in current..desired {
                let name = format!("consumer-{}", self.created);
                self.created += 1;
                self.pods.push(Pod::new(name, self.rng.u64(..), t, self.setup.limit_cores));
            }
        } else if desired < current {
            self.outcome.scale_events += 1;
            let candidates: Vec<Candidate> = (0..self.pods.len())
                .filter(|&i| self.pods[i].gone.is_none() && self.pods[i].deleting.is_none())
                .map(|i| {
                    let pod = &self.pods[i];
                    Candidate {
                        index: i,
                        assigned: pod.bound.is_some(),
                        running: pod.is_listening(t),
                        ready_for: pod.ready.filter(|r| *r <= t).map(|r| t - r),
                        age: t - pod.created,
                        uid: pod.uid,
                    }
                })
                .collect();
            for index in deletion_order(candidates).into_iter().take((current - desired) as usize) {
                self.pods[index].deleting = Some(t);
            }
        }
    }
}

/// What the simulator reads triggers from at `t`: its Prometheus's series (each query prepared by `Setup`), the
/// shared backlog's stream, and metrics-server's CPU readings of its replicas.
struct ReadAt<'w, 'a> {
    world: &'w World<'a>,
    t: f64,
}

impl Sources for ReadAt<'_, '_> {
    fn prometheus(&self, index: usize, query: &str) -> Result<(Vec<f64>, f64), String> {
        let setup = self.world.setup;
        let prepared =
            setup.queries.get(index).and_then(Option::as_ref).ok_or_else(|| format!("{query}: not prepared"))?;
        Ok((self.world.prometheus.query(prepared, self.t, setup.prometheus)?, 1.0))
    }

    fn redis_streams(&self, scaler: &RedisStreams) -> Result<f64, String> {
        if !self.world.setup.shared_backlog {
            return Err(format!("stream {}: async work waits in each pod here, not in Redis", scaler.stream));
        }
        Ok(match scaler.count {
            Count::StreamLength => self.world.backlog_length(),
            Count::Pending => self.world.backlog_length() - self.world.backlog.len(),
            Count::Lag => self.world.backlog.len(),
        } as f64)
    }

    fn resource(&self, resource: Resource, target: Target) -> Result<f64, String> {
        let world = self.world;
        let pods: Vec<ResourcePod> =
            world.pods.iter().filter(|p| p.gone.is_none()).map(|p| world.as_listed(p, resource, self.t)).collect();
        resource::replicas(
            &pods,
            resource,
            target,
            world.setup.scaled_object.scaling.tolerances(),
            world.replicas(),
            &Timing::default(),
            self.t,
        )
        .map(|(replicas, _)| f64::from(replicas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5 s ticker of phase 1: a target appearing at 7 s is passed on at 11; one appearing on a tick at once.
    #[test]
    fn a_new_target_waits_for_the_discovery_tick() {
        assert_eq!(next_tick(7.0, 5.0, 1.0), 11.0);
        assert_eq!(next_tick(11.0, 5.0, 1.0), 11.0);
        assert_eq!(next_tick(-28.0, 5.0, 1.0), -24.0, "the ticker runs before the load too");
        // At x20 the same wall-clock ticker spans 100 s of the run's time.
        assert_eq!(next_tick(7.0, 100.0, 20.0), 20.0);
    }
}
