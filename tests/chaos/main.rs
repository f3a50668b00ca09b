//! The shared backlog's fault campaign: three replicas of the real binary on one real Redis (append-only file, fsync
//! on every write, as the queue component runs it) under a steady async load, while faults chosen and timed by a seed
//! kill, stop, starve and restart them the ways Kubernetes does. At the end every accepted task must have completed,
//! every duplicate run must be counted, and no task may have run twice while its holder was alive and running.
//!
//! `make test` runs a short campaign (seed 1); `make chaos SEED=.. DURATION=..` a longer one. CHAOS_FAULTS narrows the
//! kinds (comma-separated), CHAOS_REPLICAS sets how many replicas, CHAOS_CONSUMER runs another consumer binary (an
//! older build, to see the campaign fail on it).

#[path = "../support/consumer.rs"]
#[allow(dead_code)] // Shared with tests/process and tests/isolated.
mod consumer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::Value;

use consumer::ConsumerProcess;
use surge_harness::redis::RedisServer;

/// Each replica's lease: short, so a campaign sees many lapses in a few minutes (the default is 10 s).
const LEASE_SECS: u64 = 3;
/// A slow replica's share of a core, and for how long.
const SLOW_SHARE: &str = "0.1";
const SLOW_FOR: Duration = Duration::from_secs(60);
/// One request every this, of 0.2-0.6 core for 1-4 s: about 1.1 cores of work a second on three 1-core replicas.
const ARRIVAL_EVERY: Duration = Duration::from_millis(700);
/// After the faults, how long the accepted work may take to complete.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// `kill -9`, then the same pod name restarted (a container restarted in place).
    KillRestartSameName,
    /// `kill -9`, then a replacement pod under a new name.
    KillNewName,
    /// SIGTERM (a scale-down), then a new pod to keep the count.
    Terminate,
    /// SIGSTOP past the lease, then SIGCONT: a paused holder coming back.
    Pause,
    /// A tenth of a core for a minute: a holder far slower than its capacity.
    Starve,
    /// `kill -9` of Redis, restarted from its append-only file.
    KillRedis,
}

impl Fault {
    const ALL: [Self; 6] =
        [Self::KillRestartSameName, Self::KillNewName, Self::Terminate, Self::Pause, Self::Starve, Self::KillRedis];

    fn name(self) -> &'static str {
        match self {
            Self::KillRestartSameName => "kill -9, same name",
            Self::KillNewName => "kill -9, new name",
            Self::Terminate => "SIGTERM",
            Self::Pause => "SIGSTOP past the lease",
            Self::Starve => "0.1 core for a minute",
            Self::KillRedis => "kill -9 of Redis",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw.trim() {
            "same_name" => Self::KillRestartSameName,
            "new_name" => Self::KillNewName,
            "sigterm" => Self::Terminate,
            "pause" => Self::Pause,
            "starve" => Self::Starve,
            "redis" => Self::KillRedis,
            _ => return None,
        })
    }
}

/// splitmix64: the campaign's one source of randomness, so a seed replays the same faults at the same times.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.below(span.max(1)))
    }
}

/// What happened to one process, for judging the duplicate runs its tasks had.
#[derive(Debug, Clone)]
enum Fate {
    Killed(DateTime<Utc>),
    Paused(DateTime<Utc>, DateTime<Utc>),
}

/// One replica slot: its pod name, its node share file, and the process in it now.
struct Slot {
    pod: String,
    share: PathBuf,
    process: Option<ConsumerProcess>,
}

struct Campaign {
    redis: RedisServer,
    binary: PathBuf,
    slots: Vec<Slot>,
    /// Processes that ended, with their fates, kept for their logs.
    retired: Vec<ConsumerProcess>,
    /// By process id (pid).
    fates: HashMap<i32, Vec<Fate>>,
    /// Where the load sends requests: each slot's address while it serves.
    addresses: Arc<Mutex<Vec<Option<String>>>>,
    names: u32,
    _dir: tempfile::TempDir,
}

impl Campaign {
    fn replica(&self, pod: &str, share: &Path) -> ConsumerProcess {
        let env = [
            ("QUEUE_URL", self.redis.url()),
            ("POD_NAME", pod.to_owned()),
            ("CPU_WORK", "simulate".to_owned()),
            ("CPU_CAPACITY", "1".to_owned()),
            ("MEMORY_BUDGET_MB", "384".to_owned()),
            ("LEASE_SECS", LEASE_SECS.to_string()),
            // A task may be in flight at several kills in a row; the dead-letter bound is not what this tests.
            ("MAX_DELIVERIES", "10".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS", "3".to_owned()),
            ("DRAIN_DELAY_SECS", "1".to_owned()),
            ("NODE_SHARE_FILE", share.display().to_string()),
        ];
        ConsumerProcess::start_command(Command::new(&self.binary), &[], &env)
    }

    fn start_slot(&mut self, index: usize) {
        let (pod, share) = (self.slots[index].pod.clone(), self.slots[index].share.clone());
        let process = self.replica(&pod, &share);
        self.addresses.lock().expect("addresses")[index] = Some(process.address.clone());
        self.slots[index].process = Some(process);
    }

    /// Takes the slot's process out of the load's rotation.
    fn take(&mut self, index: usize) -> ConsumerProcess {
        self.addresses.lock().expect("addresses")[index] = None;
        self.slots[index].process.take().expect("a live process in the slot")
    }

    fn fate(&mut self, process: &ConsumerProcess, fate: Fate) {
        self.fates.entry(process.pid()).or_default().push(fate);
    }

    fn live_address(&self) -> String {
        self.addresses.lock().expect("addresses").iter().flatten().next().cloned().expect("a live replica")
    }

    async fn inject(&mut self, fault: Fault, index: usize, rng: &mut Seeded) {
        match fault {
            Fault::KillRestartSameName | Fault::KillNewName => {
                let mut process = self.take(index);
                process.signal(Signal::SIGKILL);
                process.wait_exit(Duration::from_secs(5)).expect("killed");
                self.fate(&process, Fate::Killed(Utc::now()));
                self.retired.push(process);
                // The kubelet's restart (or the ReplicaSet's new pod) takes a moment.
                tokio::time::sleep(rng.between(Duration::from_millis(500), Duration::from_secs(2))).await;
                if fault == Fault::KillNewName {
                    self.names += 1;
                    self.slots[index].pod = format!("r{index}-{}", self.names);
                }
                self.start_slot(index);
            }
            Fault::Terminate => {
                let mut process = self.take(index);
                process.signal(Signal::SIGTERM);
                process.wait_exit(Duration::from_secs(15)).expect("exits within its shutdown timeout");
                self.retired.push(process);
                self.names += 1;
                self.slots[index].pod = format!("r{index}-{}", self.names);
                self.start_slot(index);
            }
            Fault::Pause => {
                let pause = rng.between(Duration::from_secs(LEASE_SECS + 1), Duration::from_secs(LEASE_SECS + 4));
                let process = self.slots[index].process.as_ref().expect("a live process");
                let pid = process.pid();
                process.signal(Signal::SIGSTOP);
                let stopped = Utc::now();
                tokio::time::sleep(pause).await;
                let process = self.slots[index].process.as_ref().expect("a live process");
                process.signal(Signal::SIGCONT);
                self.fates.entry(pid).or_default().push(Fate::Paused(stopped, Utc::now()));
            }
            Fault::Starve => {
                std::fs::write(&self.slots[index].share, SLOW_SHARE).expect("write the share");
                let share = self.slots[index].share.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(SLOW_FOR).await;
                    let _ = std::fs::write(share, "1");
                });
            }
            Fault::KillRedis => {
                self.redis.kill();
                tokio::time::sleep(rng.between(Duration::from_millis(200), Duration::from_secs(2))).await;
                self.redis.resume().expect("redis restarts from its append-only file");
            }
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|raw| raw.parse().ok()).unwrap_or(default)
}

/// Sends one async task with an idempotency key, to random live replicas until one accepts it (the generator's
/// retry); its id, or `None` when every try was refused.
async fn offer(
    client: &reqwest::Client,
    addresses: &Mutex<Vec<Option<String>>>,
    query: &str,
    key: &str,
    pick: u64,
) -> Option<String> {
    for attempt in 0..20u64 {
        let live: Vec<String> = addresses.lock().expect("addresses").iter().flatten().cloned().collect();
        if let Some(address) = live.get(((pick + attempt) % live.len().max(1) as u64) as usize) {
            let sent = client.post(format!("{address}/process?{query}")).header("Idempotency-Key", key).send().await;
            if let Ok(response) = sent {
                if response.status() == StatusCode::OK {
                    let body: Value = response.json().await.ok()?;
                    return body["task_id"].as_str().map(str::to_owned);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

/// Every record of `ids`, read in batches from `address`; `None` while Redis or the replica is away.
async fn records(client: &reqwest::Client, address: &str, ids: &[String]) -> Option<Vec<Value>> {
    let mut all = Vec::new();
    for batch in ids.chunks(100) {
        let url = format!("{address}/process/results?task_ids={}", batch.join(","));
        let response = client.get(url).send().await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        all.extend(body["records"].as_array()?.iter().cloned());
    }
    Some(all)
}

fn events(process: &ConsumerProcess) -> Vec<Value> {
    process.lines().iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn timestamp(event: &Value) -> DateTime<Utc> {
    event["timestamp"].as_str().and_then(|t| t.parse().ok()).expect("a timestamp on every log line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_every_accepted_task_completes_and_every_duplicate_is_counted() {
    let seed: u64 = env_or("CHAOS_SEED", 1);
    let length = Duration::from_secs(env_or("CHAOS_SECONDS", 150));
    let replicas: usize = env_or("CHAOS_REPLICAS", 3);
    let kinds: Vec<Fault> = std::env::var("CHAOS_FAULTS")
        .ok()
        .map(|raw| raw.split(',').map(|k| Fault::parse(k).unwrap_or_else(|| panic!("unknown fault {k:?}"))).collect())
        .unwrap_or_else(|| Fault::ALL.to_vec());
    let binary =
        std::env::var_os("CHAOS_CONSUMER").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_consumer")), PathBuf::from);
    let mut rng = Seeded(seed);
    let dir = tempfile::tempdir().expect("a directory for the share files");
    let slots = (0..replicas)
        .map(|i| {
            let share = dir.path().join(format!("share-{i}"));
            std::fs::write(&share, "1").expect("write the share");
            Slot { pod: format!("r{i}"), share, process: None }
        })
        .collect();
    let mut campaign = Campaign {
        redis: RedisServer::start().expect("redis starts"),
        binary,
        slots,
        retired: Vec::new(),
        fates: HashMap::new(),
        addresses: Arc::new(Mutex::new(vec![None; replicas])),
        names: 0,
        _dir: dir,
    };
    for i in 0..replicas {
        campaign.start_slot(i);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");

    // The load: its own seed, so the faults' draws do not move the arrivals.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(0u32));
    let stop_load = tokio_util::sync::CancellationToken::new();
    let load = {
        let (addresses, accepted, refused, stop, client) = (
            Arc::clone(&campaign.addresses),
            Arc::clone(&accepted),
            Arc::clone(&refused),
            stop_load.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut rng = Seeded(seed ^ 0x5EED);
            let mut offers = tokio::task::JoinSet::new();
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let query = format!(
                    "async_mode=true&cpu_intensity={}&memory_size=10&duration={}",
                    2 + rng.below(5),
                    1 + rng.below(4)
                );
                let (addresses, accepted, refused, client, pick) =
                    (Arc::clone(&addresses), Arc::clone(&accepted), Arc::clone(&refused), client.clone(), rng.next());
                let key = format!("chaos-{seed}-{n}");
                n += 1;
                offers.spawn(async move {
                    match offer(&client, &addresses, &query, &key, pick).await {
                        Some(id) => accepted.lock().expect("accepted").push(id),
                        None => *refused.lock().expect("refused") += 1,
                    }
                });
                tokio::time::sleep(ARRIVAL_EVERY).await;
            }
            while offers.join_next().await.is_some() {}
        })
    };

    // The faults: a shuffled round of the kinds, again and again, each at a random time.
    let started = Instant::now();
    let mut injected: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut round: Vec<Fault> = Vec::new();
    loop {
        let wait = rng.between(Duration::from_secs(6), Duration::from_secs(14));
        if started.elapsed() + wait >= length {
            break;
        }
        tokio::time::sleep(wait).await;
        if round.is_empty() {
            round = kinds.clone();
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = round.pop().expect("a fault");
        let index = rng.below(replicas as u64) as usize;
        eprintln!("chaos: {:>5.1} s  {} on slot {index}", started.elapsed().as_secs_f64(), fault.name());
        campaign.inject(fault, index, &mut rng).await;
        *injected.entry(fault).or_default() += 1;
    }
    stop_load.cancel();
    load.await.expect("the load");
    for slot in &campaign.slots {
        std::fs::write(&slot.share, "1").expect("write the share");
    }

    // Every accepted task completes.
    let ids: Vec<String> = {
        let mut seen = HashSet::new();
        accepted.lock().expect("accepted").iter().filter(|id| seen.insert((*id).clone())).cloned().collect()
    };
    let deadline = Instant::now() + SETTLE_LIMIT;
    let final_records = loop {
        if let Some(records) = records(&client, &campaign.live_address(), &ids).await {
            if records.len() == ids.len() && records.iter().all(|r| r["status"] == "completed") {
                break records;
            }
            if Instant::now() > deadline {
                let unfinished: Vec<String> = records
                    .iter()
                    .filter(|r| r["status"] != "completed")
                    .map(|r| format!("{}: {}@{}", r["task_id"], r["status"], r["pod"]))
                    .collect();
                panic!(
                    "{} of {} accepted tasks completed {SETTLE_LIMIT:?} after the faults; not: {unfinished:?}",
                    records.len() - unfinished.len(),
                    ids.len()
                );
            }
        }
        assert!(Instant::now() < deadline + Duration::from_secs(10), "no replica answered the records");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let dead_letters = campaign.redis.cli(&["XLEN", "surge:dead"]);

    // Every run each process started, from its own log; hand-backs of started runs end a run without a duplicate.
    let mut processes: Vec<&ConsumerProcess> = campaign.retired.iter().collect();
    processes.extend(campaign.slots.iter().filter_map(|s| s.process.as_ref()));
    let mut starts: HashMap<String, u32> = HashMap::new();
    let mut handed_back: HashMap<String, u32> = HashMap::new();
    // Each re-run, with when its claim judged the earlier holder's lease lapsed.
    let mut reruns_logged: Vec<(Value, DateTime<Utc>)> = Vec::new();
    let mut holder_pid: HashMap<String, i32> = HashMap::new();
    for process in &processes {
        let mut claimed_at: HashMap<String, DateTime<Utc>> = HashMap::new();
        for event in events(process) {
            let task = event["task_id"].as_str().unwrap_or_default().to_owned();
            if let Some(consumer) = event["consumer"].as_str() {
                holder_pid.insert(consumer.to_owned(), process.pid());
            }
            match event["message"].as_str().unwrap_or_default() {
                "task started" => *starts.entry(task).or_default() += 1,
                "handed an unfinished task back to the shared backlog" if event["started"] == true => {
                    *handed_back.entry(task).or_default() += 1;
                }
                "claimed a task whose holder's lease lapsed" => {
                    claimed_at.insert(task, timestamp(&event));
                }
                "running a task again: an earlier run started and never ended" => {
                    let at = claimed_at.get(&task).copied().unwrap_or_else(|| timestamp(&event));
                    reruns_logged.push((event.clone(), at));
                }
                _ => {}
            }
        }
    }
    let duplicates_seen: u32 = ids
        .iter()
        .map(|id| {
            let runs = starts.get(id).copied().unwrap_or(0);
            runs.saturating_sub(1 + handed_back.get(id).copied().unwrap_or(0))
        })
        .sum();
    let reruns_recorded: u64 = final_records.iter().filter_map(|r| r["reruns"].as_u64()).sum();
    let deliveries_over_one: u64 =
        final_records.iter().filter_map(|r| r["deliveries"].as_u64()).map(|d| d.saturating_sub(1)).sum();

    // Why each duplicate happened: the earlier holder's fate when its task was claimed (a resumed holder renews at
    // once, so a claim over a second after SIGCONT took a live holder's task).
    let resumed_margin = chrono::Duration::seconds(1);
    let mut why: BTreeMap<&str, u32> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (event, at) in &reruns_logged {
        let at = *at;
        let earlier = event["earlier_holder"].as_str().unwrap_or_default();
        let fates = holder_pid.get(earlier).and_then(|pid| campaign.fates.get(pid)).cloned().unwrap_or_default();
        let reason = fates.iter().find_map(|fate| match fate {
            Fate::Killed(killed) if *killed <= at => Some("holder killed (-9)"),
            Fate::Paused(from, until) if *from <= at && at <= *until + resumed_margin => {
                Some("holder paused past its lease")
            }
            _ => None,
        });
        match reason {
            Some(reason) => *why.entry(reason).or_default() += 1,
            None => unexplained
                .push(format!("{} at {at}: earlier holder {earlier} was alive and running", event["task_id"])),
        }
    }
    let longest_sojourn = final_records.iter().filter_map(|r| r["sojourn_seconds"].as_f64()).fold(0.0_f64, f64::max);

    println!(
        "chaos: seed {seed}, {:.0} s of faults on {replicas} replicas (lease {LEASE_SECS} s)",
        length.as_secs_f64()
    );
    println!("| fault | injected |\n|---|---|");
    for (fault, count) in &injected {
        println!("| {} | {count} |", fault.name());
    }
    println!("| tasks | count |\n|---|---|");
    println!("| accepted | {} |", ids.len());
    println!("| refused after 20 tries | {} |", refused.lock().expect("refused"));
    println!("| completed | {} |", final_records.iter().filter(|r| r["status"] == "completed").count());
    println!("| run twice (seen in the logs) | {duplicates_seen} |");
    for (reason, count) in &why {
        println!("| run twice: {reason} | {count} |");
    }
    println!(
        "| run twice (counted: ran_twice log lines / records' reruns) | {} / {reruns_recorded} |",
        reruns_logged.len()
    );
    println!("| dead letters | {} |", dead_letters.trim());
    println!("| longest sojourn (s) | {longest_sojourn:.1} |");

    assert!(!ids.is_empty(), "the load got tasks accepted");
    assert_eq!(dead_letters.trim(), "0", "the dead-letter stream is empty");
    assert_eq!(reruns_logged.len() as u32, duplicates_seen, "every duplicate run is counted where it starts");
    assert_eq!(reruns_recorded, u64::from(duplicates_seen), "the records count every duplicate run");
    assert_eq!(deliveries_over_one, u64::from(duplicates_seen), "deliveries past the first are the duplicates");
    assert!(unexplained.is_empty(), "duplicate runs of a live, running holder's task: {unexplained:?}");
}
