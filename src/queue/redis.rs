//! The shared backlog in Redis: one stream every replica reads through one consumer group, a record per task, and a
//! dead-letter stream. Each step of a task's life is one Lua script, so it is one round trip and atomic:
//! `enqueue` (idempotency key, cap check, record, XADD), `start` (effects-once check, holder check, delivery count,
//! dead letter, re-run count), `renew` (the holder's lease), `finish` and `hand_back` (each only by the holder),
//! `claim` (an entry whose lease lapsed) and `reap` (consumer names nothing holds any more).
//!
//! A replica reads under a name of its own process (`<pod>/<incarnation>`), so a container restarted in its pod never
//! shares a name with what it held before; what any name holds is renewed by its process every fifth of the lease
//! (`XCLAIM … JUSTID`, which resets the entry's idle time), and an entry idle for a whole lease is claimable by any
//! replica: the lease alone decides, never the task's length. A record lives as long as its task is in the stream and
//! for the retention after it ended.
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
use crate::work::spec::{Mode, WorkSpec};

const MIB: u64 = 1024 * 1024;
/// The consumer group every replica reads through.
const GROUP: &str = "consumers";
/// Dead letters kept (oldest trimmed first).
const DEAD_LETTERS_KEPT: usize = 10_000;
/// Longest a blocking read waits before the puller looks at its drain flag again.
pub const READ_BLOCK: Duration = Duration::from_millis(500);
/// Pending entries one claim looks at.
const CLAIM_SCAN: usize = 64;

/// The idempotency key's first task, or the cap check, record and stream entry in one step. Returns {1, backlog
/// before}, {0, backlog} when full, {2, first task id, its status} for a key seen with the same parameters, {3, first
/// task id} for a key seen with others.
const ENQUEUE: &str = r"
if ARGV[9] ~= '' then
  local first = redis.call('HMGET', KEYS[3], 'task_id', 'fingerprint')
  if first[1] then
    if first[2] ~= ARGV[9] then return {'3', first[1]} end
    return {'2', first[1], redis.call('HGET', ARGV[10] .. first[1], 'status') or 'completed'}
  end
end
local backlog = redis.call('XLEN', KEYS[1])
if backlog >= tonumber(ARGV[1]) then return {'0', tostring(backlog)} end
redis.call('HSET', KEYS[2], 'task_id', ARGV[2], 'status', 'queued', 'cpu_intensity', ARGV[3], 'memory_size', ARGV[4],
  'duration', ARGV[5], 'retain', ARGV[6], 'accepted_ms', ARGV[7], 'deliveries', 0)
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[3], 'task_id', ARGV[2], 'fingerprint', ARGV[9])
  redis.call('HSET', KEYS[2], 'idempotency_key', KEYS[3])
end
redis.call('XADD', KEYS[1], '*', 'task_id', ARGV[2], 'cpu_intensity', ARGV[3], 'memory_size', ARGV[4],
  'duration', ARGV[5], 'retain', ARGV[6], 'accepted_ms', ARGV[7])
return {'1', tostring(backlog)}
";

/// A record's retention starts when its task ends (completed or dead-lettered), for it and its idempotency key.
const EXPIRE_ENDED: &str = r"
local function expire_ended(record, seconds)
  redis.call('EXPIRE', record, seconds)
  local key = redis.call('HGET', record, 'idempotency_key')
  if key then redis.call('EXPIRE', key, seconds) end
end
";

/// Before a delivered task runs: skip it if it already completed, refuse it unless this process holds it, rebuild a
/// missing record whole from the entry, dead-letter it past the delivery bound; else count the delivery, count a
/// re-run when the record says an earlier run started and never ended, renew the lease and mark it running here.
/// Returns {'run', deliveries, the earlier run's holder or ''}, {'duplicate'}, {'dead'} or {'lost'}.
const START: &str = r"
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'completed' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  return {'duplicate'}
end
local holder = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if holder[1] == nil or holder[1][2] ~= ARGV[2] then return {'lost'} end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if not status and entry[1] then
  redis.call('HSET', KEYS[2], 'status', 'queued', 'deliveries', 0, unpack(entry[1][2]))
end
local deliveries = redis.call('HINCRBY', KEYS[2], 'deliveries', 1)
if deliveries > tonumber(ARGV[4]) then
  if entry[1] then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'entry_id', ARGV[3], 'deliveries', deliveries,
      'dead_ms', ARGV[5], unpack(entry[1][2]))
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
  redis.call('HSET', KEYS[2], 'status', 'failed', 'finished_ms', ARGV[5],
    'error', 'dead-lettered after ' .. (deliveries - 1) .. ' deliveries')
  expire_ended(KEYS[2], ARGV[6])
  return {'dead'}
end
local earlier = ''
if status == 'running' then
  earlier = redis.call('HGET', KEYS[2], 'holder') or ''
  redis.call('HINCRBY', KEYS[2], 'reruns', 1)
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[2], 'status', 'running', 'pod', ARGV[8], 'holder', ARGV[2], 'started_ms', ARGV[5])
return {'run', tostring(deliveries), earlier}
";

/// The holder's lease on each of ARGV[3..]: renewed (idle time reset, delivery count unchanged) where ARGV[2] still
/// holds it; returns the ids it no longer holds.
const RENEW: &str = r"
local lost = {}
for i = 3, #ARGV do
  local holder = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if holder[1] and holder[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
";

/// A completed task, by its holder only: its result, then acknowledged and deleted. Returns {'done'}, or {'stale',
/// the holder now or ''} and changes nothing when this process no longer holds it.
const FINISH: &str = r"
local holder = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if holder[1] == nil or holder[1][2] ~= ARGV[8] then return {'stale', holder[1] and holder[1][2] or ''} end
redis.call('HSET', KEYS[2], 'status', 'completed', 'finished_ms', ARGV[3], 'wall_seconds', ARGV[4],
  'slowdown', ARGV[5], 'pod', ARGV[6], 'holder', ARGV[8])
expire_ended(KEYS[2], ARGV[7])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return {'done'}
";

/// An unfinished task given back by its holder only: re-added at the tail for any replica, the old entry
/// acknowledged and deleted. A hand-back is not a crash, so the delivery it started with is taken back (ARGV[3] = 1
/// when it had started). Returns {'done'}, or {'stale', the holder now or ''}.
const HAND_BACK: &str = r"
local holder = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if holder[1] == nil or holder[1][2] ~= ARGV[4] then return {'stale', holder[1] and holder[1][2] or ''} end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if entry[1] then redis.call('XADD', KEYS[1], '*', unpack(entry[1][2])) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'deliveries', -1) end
redis.call('HSET', KEYS[2], 'status', 'queued', 'pod', '', 'holder', '')
return {'done'}
";

/// One entry idle for a whole lease (ARGV[3] ms), whoever held it, except those this process tracks (ARGV[5..]),
/// claimed for ARGV[2]: {entry id, previous holder, fields...}, or nil.
const CLAIM: &str = r"
local tracked = {}
for i = 5, #ARGV do tracked[ARGV[i]] = true end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
for _, p in ipairs(pending) do
  if not tracked[p[1]] then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
    if claimed[1] and claimed[1][2] then
      local reply = {claimed[1][1], p[2]}
      for _, v in ipairs(claimed[1][2]) do reply[#reply + 1] = v end
      return reply
    end
  end
end
return false
";

/// Consumer names that hold nothing and have not read for ARGV[3] ms (earlier processes' names), other than ARGV[2],
/// removed from the group; returns how many. Only a name with nothing pending is removed: removing one that holds
/// entries would drop them from the pending list.
const REAP: &str = r"
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
";

/// The backlog and the age in ms of the oldest task in the stream from its acceptance (-1 when empty), on Redis's
/// clock.
const SHAPE: &str = r"
local backlog = redis.call('XLEN', KEYS[1])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] == nil then return {backlog, -1} end
local accepted = tonumber(string.match(first[1][1], '^(%d+)'))
local fields = first[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'accepted_ms' then accepted = tonumber(fields[i + 1]) end
end
local now = redis.call('TIME')
return {backlog, math.max(0, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - accepted)}
";

/// How the backlog is set up.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    /// PEM roots for a `rediss://` server, instead of the system's.
    pub ca: Option<Vec<u8>>,
    pub key_prefix: String,
    /// Most tasks in the stream (waiting plus handed out).
    pub capacity: usize,
    /// How long a task's record (and its idempotency key) is kept after the task ended.
    pub retention: Duration,
    pub max_deliveries: u32,
    /// The pod this replica runs in, as records name it.
    pub pod: String,
    /// This process's consumer name in the group: `<pod>/<incarnation>`, new at every start.
    pub consumer: String,
    /// An entry idle this long (its holder renewed nothing) is claimable by any replica.
    pub lease: Duration,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Run it: its `deliveries`th start, and the holder of an earlier run that started and never ended, if any.
    Run { deliveries: u32, earlier: Option<String> },
    /// It had already completed: acknowledged without running.
    Duplicate,
    /// Past the delivery bound: moved to the dead-letter stream.
    Dead,
    /// Another replica claimed it while it waited here.
    Lost,
}

/// What `finish` or `hand_back` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// This process no longer held it: nothing changed; `now_held_by` holds it now (`None`: nobody, it ended).
    Stale {
        now_held_by: Option<String>,
    },
}

/// An `Idempotency-Key` and the parameters it was first sent with.
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: String,
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
    /// The idempotency key was seen before with the same parameters: its task, nothing added.
    Repeated {
        task_id: Uuid,
        status: RecordStatus,
    },
    /// The idempotency key was seen before with other parameters.
    Conflict {
        task_id: Uuid,
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

/// The stream's length and how long its oldest task has waited since it was accepted.
pub struct Shape {
    pub backlog: usize,
    pub oldest_age: Option<Duration>,
}

/// An entry claimed for this replica, with who held it.
pub struct Claimed {
    pub entry: Entry,
    pub holder: String,
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
    renew: Script,
    finish: Script,
    hand_back: Script,
    claim: Script,
    reap: Script,
    shape: Script,
}

impl RedisBacklog {
    /// Connects lazily: the pod starts, and serves sync work, while Redis is away.
    pub fn new(config: RedisConfig) -> RedisResult<Self> {
        let client = match &config.ca {
            Some(ca) => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            )?,
            None => redis::Client::open(config.url.as_str())?,
        };
        let manager = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(response))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2))
        };
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager(Duration::from_secs(2)))?;
        let reader = ConnectionManager::new_lazy_with_config(client, manager(READ_BLOCK + Duration::from_secs(2)))?;
        let ended = |script: &str| Script::new(&format!("{EXPIRE_ENDED}{script}"));
        Ok(Self {
            stream: format!("{}:tasks", config.key_prefix),
            dead: format!("{}:dead", config.key_prefix),
            config,
            connection,
            reader: tokio::sync::Mutex::new(reader),
            enqueue: Script::new(ENQUEUE),
            start: ended(START),
            renew: Script::new(RENEW),
            finish: ended(FINISH),
            hand_back: Script::new(HAND_BACK),
            claim: Script::new(CLAIM),
            reap: Script::new(REAP),
            shape: Script::new(SHAPE),
        })
    }

    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    pub fn consumer(&self) -> &str {
        &self.config.consumer
    }

    pub fn pod(&self) -> &str {
        &self.config.pod
    }

    pub fn lease(&self) -> Duration {
        self.config.lease
    }

    fn record_prefix(&self) -> String {
        format!("{}:task:", self.config.key_prefix)
    }

    fn record_key(&self, id: Uuid) -> String {
        format!("{}{id}", self.record_prefix())
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

    pub async fn enqueue(
        &self,
        id: Uuid,
        spec: &WorkSpec,
        accepted_at: DateTime<Utc>,
        idempotency: Option<&Idempotency<'_>>,
    ) -> RedisResult<Enqueued> {
        let prefix = &self.config.key_prefix;
        // Declared even when there is none (the script then never touches it), under the prefix an ACL user may use.
        let idempotency_key = format!("{prefix}:idempotency:{}", idempotency.map_or("", |i| i.key));
        let reply: Vec<String> = self
            .enqueue
            .key(&self.stream)
            .key(self.record_key(id))
            .key(&idempotency_key)
            .arg(self.config.capacity)
            .arg(id.to_string())
            .arg(spec.cpu_intensity)
            .arg(spec.memory_bytes / MIB)
            .arg(spec.duration.as_secs())
            .arg(u8::from(spec.retain))
            .arg(accepted_at.timestamp_millis())
            .arg(self.config.retention.as_secs())
            .arg(idempotency.map_or("", |i| i.fingerprint.as_str()))
            .arg(self.record_prefix())
            .invoke_async(&mut self.connection())
            .await?;
        let count = |i: usize| reply.get(i).and_then(|n| n.parse().ok()).unwrap_or(0);
        let task = |i: usize| reply.get(i).and_then(|id| id.parse().ok()).unwrap_or_else(Uuid::nil);
        Ok(match reply.first().map(String::as_str) {
            Some("1") => Enqueued::Added { ahead: count(1) },
            Some("2") => Enqueued::Repeated {
                task_id: task(1),
                status: reply.get(2).and_then(|s| RecordStatus::parse(s)).unwrap_or(RecordStatus::Queued),
            },
            Some("3") => Enqueued::Conflict { task_id: task(1) },
            _ => Enqueued::Full { backlog: count(1) },
        })
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

    /// An entry whose lease lapsed (its holder renewed nothing for a lease), claimed for this replica; `tracked` are
    /// the entries this process holds, never claimed again here.
    pub async fn claim(&self, tracked: &[String]) -> RedisResult<Option<Claimed>> {
        let reply: Option<Vec<String>> = self
            .claim
            .key(&self.stream)
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(self.config.lease.as_millis() as u64)
            .arg(CLAIM_SCAN)
            .arg(tracked)
            .invoke_async(&mut self.connection())
            .await?;
        let Some(mut reply) = reply.filter(|reply| reply.len() >= 2) else { return Ok(None) };
        let fields: HashMap<String, String> =
            reply.split_off(2).chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        let holder = reply.pop().unwrap_or_default();
        let entry_id = reply.pop().unwrap_or_default();
        Ok(Some(Claimed { entry: entry(entry_id, &fields), holder }))
    }

    /// Renews this process's lease on `held`; returns those it no longer holds.
    pub async fn renew(&self, held: &[String]) -> RedisResult<Vec<String>> {
        self.renew
            .key(&self.stream)
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(held)
            .invoke_async(&mut self.connection())
            .await
    }

    /// Removes consumer names that hold nothing and have not read for `idle`; returns how many.
    pub async fn reap(&self, idle: Duration) -> RedisResult<usize> {
        self.reap
            .key(&self.stream)
            .arg(GROUP)
            .arg(&self.config.consumer)
            .arg(idle.as_millis() as u64)
            .invoke_async(&mut self.connection())
            .await
    }

    pub async fn start(&self, entry: &Entry) -> RedisResult<Start> {
        let reply: Vec<String> = self
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
            .arg(&self.config.pod)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(match reply.first().map(String::as_str) {
            Some("duplicate") => Start::Duplicate,
            Some("dead") => Start::Dead,
            Some("run") => Start::Run {
                deliveries: reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(1),
                earlier: reply.get(2).filter(|holder| !holder.is_empty()).cloned(),
            },
            _ => Start::Lost,
        })
    }

    /// Records the result and acknowledges, if this process still holds the task.
    pub async fn finish(&self, entry: &Entry, wall_seconds: f64, slowdown: f64) -> RedisResult<Settled> {
        let reply: Vec<String> = self
            .finish
            .key(&self.stream)
            .key(self.record_key(entry.task_id))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(Utc::now().timestamp_millis())
            .arg(wall_seconds)
            .arg(slowdown)
            .arg(&self.config.pod)
            .arg(self.config.retention.as_secs())
            .arg(&self.config.consumer)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(settled(&reply))
    }

    /// Gives an unfinished task back to every replica, if this process still holds it.
    pub async fn hand_back(&self, entry: &Entry, started: bool) -> RedisResult<Settled> {
        let reply: Vec<String> = self
            .hand_back
            .key(&self.stream)
            .key(self.record_key(entry.task_id))
            .arg(GROUP)
            .arg(&entry.entry_id)
            .arg(u8::from(started))
            .arg(&self.config.consumer)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(settled(&reply))
    }

    /// Tasks in the stream (waiting plus handed out) and the oldest one's age.
    pub async fn shape(&self) -> RedisResult<Shape> {
        let (backlog, age_ms): (usize, i64) = self.shape.key(&self.stream).invoke_async(&mut self.connection()).await?;
        let oldest_age = u64::try_from(age_ms).ok().map(Duration::from_millis);
        Ok(Shape { backlog, oldest_age })
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

fn settled(reply: &[String]) -> Settled {
    match reply.first().map(String::as_str) {
        Some("stale") => Settled::Stale { now_held_by: reply.get(1).filter(|holder| !holder.is_empty()).cloned() },
        _ => Settled::Done,
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
            reruns: number(fields, "reruns"),
            error: fields.get("error").cloned(),
        }
        .with_sojourn(),
    )
}
