//! The shared backlog in Redis: one stream every replica reads through one consumer group, a record per task, and a
//! dead-letter stream. Each step of a task's life is one Lua script, so it is one round trip and atomic:
//! `enqueue` (cap check, record, XADD), `start` (effects-once check, delivery count, dead letter, idle clock reset),
//! `finish` (result, XACK, XDEL), `hand_back` (re-add, XACK, XDEL) and `claim` (a dead holder's task, after the
//! idle time that task's own run should have taken).
//!
//! Entries are deleted once acknowledged, so the stream's length is the backlog: waiting plus handed out.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamReadReply;
use redis::{RedisResult, Script};
use uuid::Uuid;

use crate::work::records::{RecordStatus, TaskRecord};
use crate::work::tasks::{Mode, WorkSpec};

const MIB: u64 = 1024 * 1024;
/// The consumer group every replica reads through.
const GROUP: &str = "consumers";
/// Dead letters kept (oldest trimmed first).
const DEAD_LETTERS_KEPT: usize = 10_000;
/// Longest a blocking read waits before the puller looks at its drain flag again.
pub const READ_BLOCK: Duration = Duration::from_millis(500);

/// Cap check, record and stream entry in one step. Returns {1, backlog before} or {0, backlog} when full.
const ENQUEUE: &str = r"
local backlog = redis.call('XLEN', KEYS[1])
if backlog >= tonumber(ARGV[1]) then return {0, backlog} end
redis.call('HSET', KEYS[2], 'task_id', ARGV[2], 'status', 'queued', 'cpu_intensity', ARGV[3], 'memory_size', ARGV[4],
  'duration', ARGV[5], 'retain', ARGV[6], 'accepted_ms', ARGV[7], 'deliveries', 0)
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('XADD', KEYS[1], '*', 'task_id', ARGV[2], 'cpu_intensity', ARGV[3], 'memory_size', ARGV[4],
  'duration', ARGV[5], 'retain', ARGV[6], 'accepted_ms', ARGV[7])
return {1, backlog}
";

/// Before a delivered task runs: skip it if it already completed, dead-letter it past the delivery bound, refuse it if
/// another replica claimed it meanwhile; else count the delivery, restart its idle clock and mark it running here.
const START: &str = r"
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'completed' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  return 'duplicate'
end
local holder = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if holder[1] == nil or holder[1][2] ~= ARGV[2] then return 'lost' end
local deliveries = redis.call('HINCRBY', KEYS[2], 'deliveries', 1)
redis.call('EXPIRE', KEYS[2], ARGV[6])
if deliveries > tonumber(ARGV[4]) then
  local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
  if entry[1] then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'entry_id', ARGV[3], 'deliveries', deliveries,
      'dead_ms', ARGV[5], unpack(entry[1][2]))
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  redis.call('HSET', KEYS[2], 'status', 'failed', 'finished_ms', ARGV[5],
    'error', 'dead-lettered after ' .. (deliveries - 1) .. ' deliveries')
  return 'dead'
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[2], 'status', 'running', 'pod', ARGV[2], 'started_ms', ARGV[5])
return 'run'
";

/// A completed task: its result, then acknowledged and deleted. Returns 2 when it had already completed elsewhere.
const FINISH: &str = r"
local before = redis.call('HGET', KEYS[2], 'status')
redis.call('HSET', KEYS[2], 'status', 'completed', 'finished_ms', ARGV[3], 'wall_seconds', ARGV[4],
  'slowdown', ARGV[5], 'pod', ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if before == 'completed' then return 2 end
return 1
";

/// An unfinished task given back: re-added at the tail for any replica, the old entry acknowledged and deleted. A
/// hand-back is not a crash, so the delivery it started with is taken back (ARGV[3] = 1 when it had started).
const HAND_BACK: &str = r"
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if entry[1] == nil then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'deliveries', -1) end
redis.call('HSET', KEYS[2], 'status', 'queued', 'pod', '')
return 1
";

/// One task whose holder kept it past its duration × overcommit + margin (ARGV[3], ARGV[4] in ms) unacknowledged,
/// claimed for ARGV[2]: {entry id, previous holder, fields...}, or nil.
const CLAIM: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[4], '-', '+', ARGV[5])
for _, p in ipairs(pending) do
  if p[2] ~= ARGV[2] then
    local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])
    if entry[1] then
      local fields = entry[1][2]
      local duration = 0
      for i = 1, #fields, 2 do
        if fields[i] == 'duration' then duration = tonumber(fields[i + 1]) end
      end
      local limit = math.floor(duration * 1000 * tonumber(ARGV[3]) + tonumber(ARGV[4]))
      if p[3] >= limit then
        local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], limit, p[1])
        if claimed[1] then
          local reply = {claimed[1][1], p[2]}
          for _, v in ipairs(claimed[1][2]) do reply[#reply + 1] = v end
          return reply
        end
      end
    end
  end
end
return false
";

/// How the backlog is set up.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    /// Most tasks in the stream (waiting plus handed out).
    pub capacity: usize,
    pub retention: Duration,
    pub max_deliveries: u32,
    /// This replica's consumer name: its pod name.
    pub consumer: String,
    /// A claim waits for a task's duration × this (the CPU overcommit bounds how far a run stretches) …
    pub overcommit: f64,
    /// … plus this.
    pub claim_margin: Duration,
}

/// A task as the stream carries it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub entry_id: String,
    pub task_id: Uuid,
    pub spec: WorkSpec,
    pub accepted_at: DateTime<Utc>,
}

/// What `start` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Run,
    /// It had already completed: acknowledged without running.
    Duplicate,
    /// Past the delivery bound: moved to the dead-letter stream.
    Dead,
    /// Another replica claimed it while it waited here.
    Lost,
}

/// What `enqueue` did.
pub enum Enqueued {
    /// In the stream, behind `ahead` tasks.
    Added {
        ahead: usize,
    },
    Full {
        backlog: usize,
    },
}

/// The backlog's shape, for `/process/status`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SharedStatus {
    /// Tasks in the stream: waiting plus handed out and unacknowledged.
    pub backlog: usize,
    /// Of those, handed out to a replica.
    pub handed_out: usize,
    pub capacity: usize,
    pub dead_letters: usize,
}

pub struct RedisBacklog {
    config: RedisConfig,
    stream: String,
    dead: String,
    /// Requests and scripts: short replies.
    connection: ConnectionManager,
    /// Blocking reads only: a blocked read holds its connection.
    reader: tokio::sync::Mutex<ConnectionManager>,
    enqueue: Script,
    start: Script,
    finish: Script,
    hand_back: Script,
    claim: Script,
}

impl RedisBacklog {
    /// Connects lazily: the pod starts, and serves sync work, while Redis is away.
    pub fn new(config: RedisConfig) -> RedisResult<Self> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(response))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2))
        };
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager(Duration::from_secs(2)))?;
        let reader = ConnectionManager::new_lazy_with_config(client, manager(READ_BLOCK + Duration::from_secs(2)))?;
        Ok(Self {
            stream: format!("{}:tasks", config.key_prefix),
            dead: format!("{}:dead", config.key_prefix),
            config,
            connection,
            reader: tokio::sync::Mutex::new(reader),
            enqueue: Script::new(ENQUEUE),
            start: Script::new(START),
            finish: Script::new(FINISH),
            hand_back: Script::new(HAND_BACK),
            claim: Script::new(CLAIM),
        })
    }

    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    pub fn consumer(&self) -> &str {
        &self.config.consumer
    }

    fn record_key(&self, id: Uuid) -> String {
        format!("{}:task:{id}", self.config.key_prefix)
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Creates the stream and group when missing (from the stream's start, so nothing added before is skipped).
    pub async fn ensure_group(&self) -> RedisResult<()> {
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.connection())
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    pub async fn enqueue(&self, id: Uuid, spec: &WorkSpec, accepted_at: DateTime<Utc>) -> RedisResult<Enqueued> {
        let (added, backlog): (u8, usize) = self
            .enqueue
            .key(&self.stream)
            .key(self.record_key(id))
            .arg(self.config.capacity)
            .arg(id.to_string())
            .arg(spec.cpu_intensity)
            .arg(spec.memory_bytes / MIB)
            .arg(spec.duration.as_secs())
            .arg(u8::from(spec.retain))
            .arg(accepted_at.timestamp_millis())
            .arg(self.config.retention.as_secs())
            .invoke_async(&mut self.connection())
            .await?;
        Ok(if added == 1 { Enqueued::Added { ahead: backlog } } else { Enqueued::Full { backlog } })
    }

    /// The next task for this replica, waiting up to `READ_BLOCK`.
    pub async fn read(&self) -> RedisResult<Option<Entry>> {
        let mut reader = self.reader.lock().await;
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut *reader)
            .await?;
        let Some(message) =
            reply.and_then(|reply| reply.keys.into_iter().next()).and_then(|key| key.ids.into_iter().next())
        else {
            return Ok(None);
        };
        let fields: HashMap<String, String> =
            message.map.keys().filter_map(|name| Some((name.clone(), message.get::<String>(name)?))).collect();
        Ok(Some(entry(message.id, &fields)))
    }

    /// A task a dead replica held, claimed for this one, with who held it.
    pub async fn claim(&self) -> RedisResult<Option<(Entry, String)>> {
        let reply: Option<Vec<String>> = self
            .claim
            .key(&self.stream)
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(self.config.overcommit)
            .arg(self.config.claim_margin.as_millis() as u64)
            .arg(64)
            .invoke_async(&mut self.connection())
            .await?;
        let Some(mut reply) = reply.filter(|reply| reply.len() >= 2) else { return Ok(None) };
        let fields: HashMap<String, String> =
            reply.split_off(2).chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        let holder = reply.pop().unwrap_or_default();
        let entry_id = reply.pop().unwrap_or_default();
        Ok(Some((entry(entry_id, &fields), holder)))
    }

    pub async fn start(&self, entry: &Entry) -> RedisResult<Start> {
        let answer: String = self
            .start
            .key(&self.stream)
            .key(self.record_key(entry.task_id))
            .key(&self.dead)
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(&entry.entry_id)
            .arg(self.config.max_deliveries)
            .arg(Utc::now().timestamp_millis())
            .arg(self.config.retention.as_secs())
            .arg(DEAD_LETTERS_KEPT)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(match answer.as_str() {
            "duplicate" => Start::Duplicate,
            "dead" => Start::Dead,
            "lost" => Start::Lost,
            _ => Start::Run,
        })
    }

    /// Records the result and acknowledges; true when another replica had completed it too (it ran twice).
    pub async fn finish(&self, entry: &Entry, wall_seconds: f64, slowdown: f64) -> RedisResult<bool> {
        let answer: u8 = self
            .finish
            .key(&self.stream)
            .key(self.record_key(entry.task_id))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(Utc::now().timestamp_millis())
            .arg(wall_seconds)
            .arg(slowdown)
            .arg(&self.config.consumer)
            .arg(self.config.retention.as_secs())
            .invoke_async(&mut self.connection())
            .await?;
        Ok(answer == 2)
    }

    pub async fn hand_back(&self, entry: &Entry, started: bool) -> RedisResult<()> {
        let _: u8 = self
            .hand_back
            .key(&self.stream)
            .key(self.record_key(entry.task_id))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(u8::from(started))
            .invoke_async(&mut self.connection())
            .await?;
        Ok(())
    }

    /// Tasks in the stream (waiting plus handed out).
    pub async fn backlog(&self) -> RedisResult<usize> {
        redis::cmd("XLEN").arg(&self.stream).query_async(&mut self.connection()).await
    }

    pub async fn status(&self) -> RedisResult<SharedStatus> {
        let (backlog, dead_letters, pending): (usize, usize, redis::Value) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("XLEN")
            .arg(&self.dead)
            .cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .query_async(&mut self.connection())
            .await?;
        // XPENDING's summary starts with the count; NOGROUP before the first reader is an error, caught above.
        let handed_out = match pending {
            redis::Value::Array(items) => items.first().and_then(|v| redis::from_redis_value_ref(v).ok()).unwrap_or(0),
            _ => 0,
        };
        Ok(SharedStatus { backlog, handed_out, capacity: self.config.capacity, dead_letters })
    }

    /// The records of `ids`, in their order (`None` where there is none), in one round trip.
    pub async fn records(&self, ids: &[Uuid]) -> RedisResult<Vec<Option<TaskRecord>>> {
        let mut pipe = redis::pipe();
        for &id in ids {
            pipe.cmd("HGETALL").arg(self.record_key(id));
        }
        let replies: Vec<HashMap<String, String>> = pipe.query_async(&mut self.connection()).await?;
        Ok(ids.iter().zip(&replies).map(|(&id, fields)| record(id, fields)).collect())
    }
}

fn millis(raw: Option<&String>) -> Option<DateTime<Utc>> {
    raw.and_then(|ms| ms.parse::<i64>().ok()).and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

fn number<T: std::str::FromStr>(fields: &HashMap<String, String>, name: &str) -> Option<T> {
    fields.get(name).and_then(|raw| raw.parse().ok())
}

/// A stream entry's task; fields the enqueue script always writes, so defaults only guard against a foreign writer.
fn entry(entry_id: String, fields: &HashMap<String, String>) -> Entry {
    Entry {
        entry_id,
        task_id: number(fields, "task_id").unwrap_or_else(Uuid::nil),
        spec: WorkSpec {
            cpu_intensity: number(fields, "cpu_intensity").unwrap_or(1).clamp(1, 10),
            memory_bytes: number::<u64>(fields, "memory_size").unwrap_or(0).min(500) * MIB,
            duration: Duration::from_secs(number::<u64>(fields, "duration").unwrap_or(1).clamp(1, 60)),
            mode: Mode::Async,
            retain: fields.get("retain").is_some_and(|flag| flag == "1"),
        },
        accepted_at: millis(fields.get("accepted_ms")).unwrap_or_else(Utc::now),
    }
}

fn record(task_id: Uuid, fields: &HashMap<String, String>) -> Option<TaskRecord> {
    let status = RecordStatus::parse(fields.get("status")?)?;
    Some(
        TaskRecord {
            task_id,
            status,
            queue: "redis",
            mode: "async",
            pod: fields.get("pod").filter(|pod| !pod.is_empty()).cloned(),
            cpu_intensity: number(fields, "cpu_intensity").unwrap_or(0),
            memory_size: number(fields, "memory_size").unwrap_or(0),
            duration: number(fields, "duration").unwrap_or(0.0),
            accepted_at: millis(fields.get("accepted_ms"))?,
            started_at: millis(fields.get("started_ms")),
            finished_at: millis(fields.get("finished_ms")),
            sojourn_seconds: None,
            wall_seconds: number(fields, "wall_seconds"),
            slowdown: number(fields, "slowdown"),
            deliveries: number(fields, "deliveries"),
            error: fields.get("error").cloned(),
        }
        .with_sojourn(),
    )
}
