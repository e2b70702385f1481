//! The Redis backend: sorted sets and hashes under a key prefix, every operation one Lua
//! script, so each is atomic on the server and clocked by the server's `TIME` (workers' clocks
//! may disagree; Redis's is the one clock).
//!
//! Keys (`P` is the prefix, [`super::DEFAULT_REDIS_PREFIX`] by default):
//! - `P job:<id>`: a hash per job: `kind`, `cover` (JSON), `key` (dedup key), `pri` (0-2),
//!   `nb` (not before, ms), `enq` (enqueued at, ms), `att` (attempts), `state`
//!   (`pending` | `running` | `dead`), and while running `token`, `lease`, `worker`; when dead
//!   `reason`, `failed`.
//! - `P pending:0`, `:1`, `:2`: pending jobs per priority, scored by `nb`. Ids are zero-padded
//!   counters (`P seq`), so equal scores still come out in enqueue order (FIFO).
//! - `P keys`: dedup key -> id of its pending job.
//! - `P running`: claimed jobs scored by lease expiry; expired entries are taken back by the
//!   next claim or stats call (the reaper lives in those scripts).
//! - `P dead`: dead-lettered ids scored by when they died.
//! - `P stats`: the monotonic `enqueued` and `completed` totals.
//! - `P lock:<name>`: a named lease (`SET PX`), holder as value.
//!
//! The scripts compute job keys from the prefix instead of declaring them in `KEYS`, which is
//! fine on a single Redis (not on Redis Cluster). With `appendonly yes` and `appendfsync
//! always`, every reply is sent after its effects are on disk, so a restart loses no job.
//!
//! Connection: a [`ConnectionManager`] (one multiplexed connection, reconnects after a Redis
//! restart; a call that fails during the restart returns [`QueueError::Redis`] and the next
//! one reconnects). No blocking command is used, so the redis crate's response timeout is
//! only raised for slow `fsync`s, not for `BLPOP` (reference/peers.md 4.7).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, Script};

use super::{
    ClaimedJob, DeadJob, EnqueueOutcome, FailOutcome, Finish, JobKind, Priority, QueueError,
    QueueOptions, QueueStats, ms_to_datetime, to_u32,
};

/// Functions every script starts with. `P` is `ARGV[1]`, the key prefix.
const LIB: &str = r#"
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(n) return string.format('%d', n) end
local function jobkey(id) return P .. 'job:' .. id end
local function pending(p) return P .. 'pending:' .. p end

-- Folds (kind, pri, nb) into pending job `twin` as an enqueue does: the higher priority, the
-- earlier not-before, and the covering kind if the kinds differ. Returns raised?, new nb.
local function fold(twin, kind, pri, nb)
  local tk = jobkey(twin)
  local g = redis.call('HMGET', tk, 'kind', 'cover', 'pri', 'nb')
  local tpri, tnb = tonumber(g[3]), tonumber(g[4])
  local npri, nnb = math.min(tpri, pri), math.min(tnb, nb)
  if g[1] ~= kind then redis.call('HSET', tk, 'kind', g[2]) end
  if npri ~= tpri or nnb ~= tnb then
    redis.call('ZREM', pending(tpri), twin)
    redis.call('ZADD', pending(npri), num(nnb), twin)
    redis.call('HSET', tk, 'pri', num(npri), 'nb', num(nnb))
  end
  return npri < tpri, nnb
end

local function dead(id, reason, now)
  local jk = jobkey(id)
  redis.call('HSET', jk, 'state', 'dead', 'reason', reason, 'failed', num(now))
  redis.call('HDEL', jk, 'token', 'lease', 'worker')
  redis.call('ZADD', P .. 'dead', num(now), id)
end

-- A job that left `running` goes back to pending due at nb, or into its key's pending twin.
-- Returns the not-before of the pending job that now carries the work.
local function to_pending(id, nb)
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'key', 'kind', 'pri')
  local key, kind, pri = f[1], f[2], tonumber(f[3])
  local twin = redis.call('HGET', P .. 'keys', key)
  if twin then
    local _, nnb = fold(twin, kind, pri, nb)
    redis.call('DEL', jk)
    return nnb
  end
  redis.call('HSET', jk, 'state', 'pending', 'nb', num(nb))
  redis.call('HDEL', jk, 'token', 'lease', 'worker')
  redis.call('ZADD', pending(pri), num(nb), id)
  redis.call('HSET', P .. 'keys', key, id)
  return nb
end

-- Takes back expired leases: an expired lease counted as an attempt.
local function reap(now, max)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. num(now),
                             'LIMIT', 0, 100)
  for _, id in ipairs(expired) do
    redis.call('ZREM', P .. 'running', id)
    local f = redis.call('HMGET', jobkey(id), 'att', 'nb')
    local att = tonumber(f[1])
    if att >= max then
      dead(id, 'lease expired on attempt ' .. num(att) .. ' (worker lost or stuck)', now)
    else
      to_pending(id, tonumber(f[2]))
    end
  end
end

-- The running job `id` if `token` holds its lease, else nil.
local function held(id, token)
  local f = redis.call('HMGET', jobkey(id), 'state', 'token')
  return f[1] == 'running' and f[2] == token
end
"#;

/// ARGV: prefix, dedup key, kind, covering kind, priority, not-before ms ('' = now).
const ENQUEUE: &str = r#"
local now = now_ms()
local key, kind, cover, pri = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local nb = tonumber(ARGV[6]) or now
local twin = redis.call('HGET', P .. 'keys', key)
if twin then
  local raised = fold(twin, kind, pri, nb)
  if raised then return 'raised' end
  return 'queued'
end
local id = string.format('%012d', redis.call('INCR', P .. 'seq'))
redis.call('HSET', jobkey(id), 'kind', kind, 'cover', cover, 'key', key, 'pri', num(pri),
           'nb', num(nb), 'enq', num(now), 'att', '0', 'state', 'pending')
redis.call('ZADD', pending(pri), num(nb), id)
redis.call('HSET', P .. 'keys', key, id)
redis.call('HINCRBY', P .. 'stats', 'enqueued', 1)
return 'added'
"#;

/// ARGV: prefix, worker, token, lease ms, max attempts.
/// Returns false, or {id, kind, priority, attempt, enqueued at}.
const CLAIM: &str = r#"
local now = now_ms()
reap(now, tonumber(ARGV[5]))
for p = 0, 2 do
  local ids = redis.call('ZRANGEBYSCORE', pending(p), '-inf', num(now), 'LIMIT', 0, 1)
  if #ids > 0 then
    local id = ids[1]
    local jk = jobkey(id)
    redis.call('ZREM', pending(p), id)
    local key = redis.call('HGET', jk, 'key')
    if redis.call('HGET', P .. 'keys', key) == id then redis.call('HDEL', P .. 'keys', key) end
    local att = redis.call('HINCRBY', jk, 'att', 1)
    local lease = now + tonumber(ARGV[4])
    redis.call('HSET', jk, 'state', 'running', 'token', ARGV[3], 'worker', ARGV[2],
               'lease', num(lease))
    redis.call('ZADD', P .. 'running', num(lease), id)
    local f = redis.call('HMGET', jk, 'kind', 'enq')
    return {id, f[1], tostring(p), num(att), f[2]}
  end
end
return false
"#;

/// ARGV: prefix, id, token, lease ms. Returns 1 if renewed.
const RENEW: &str = r#"
local id = ARGV[2]
if not held(id, ARGV[3]) then return 0 end
local lease = now_ms() + tonumber(ARGV[4])
redis.call('HSET', jobkey(id), 'lease', num(lease))
redis.call('ZADD', P .. 'running', num(lease), id)
return 1
"#;

/// ARGV: prefix, id, token. Returns 1 if acked.
const ACK: &str = r#"
local id = ARGV[2]
if not held(id, ARGV[3]) then return 0 end
redis.call('ZREM', P .. 'running', id)
redis.call('DEL', jobkey(id))
redis.call('HINCRBY', P .. 'stats', 'completed', 1)
return 1
"#;

/// ARGV: prefix, id, token, mode (release | retry | fail), at ms (retry) or backoff ms (fail),
/// reason, max attempts. Returns {'lost'}, {'dead'} or {'pending', due ms}.
const FINISH: &str = r#"
local id, mode = ARGV[2], ARGV[4]
if not held(id, ARGV[3]) then return {'lost'} end
local jk = jobkey(id)
redis.call('ZREM', P .. 'running', id)
local now = now_ms()
local nb
if mode == 'release' then
  redis.call('HINCRBY', jk, 'att', -1)
  nb = tonumber(redis.call('HGET', jk, 'nb'))
elseif mode == 'retry' then
  redis.call('HINCRBY', jk, 'att', -1)
  nb = tonumber(ARGV[5])
else
  if tonumber(redis.call('HGET', jk, 'att')) >= tonumber(ARGV[7]) then
    dead(id, ARGV[6], now)
    return {'dead'}
  end
  nb = now + tonumber(ARGV[5])
end
return {'pending', num(to_pending(id, nb))}
"#;

/// ARGV: prefix, max attempts. Returns {now, depth0, depth1, depth2, delayed, in flight, dead,
/// oldest due not-before or '', enqueued, completed}.
const STATS: &str = r#"
local now = now_ms()
reap(now, tonumber(ARGV[2]))
local out = {num(now)}
local delayed, oldest = 0, nil
for p = 0, 2 do
  out[#out + 1] = num(redis.call('ZCOUNT', pending(p), '-inf', num(now)))
  delayed = delayed + redis.call('ZCOUNT', pending(p), '(' .. num(now), '+inf')
  local first = redis.call('ZRANGE', pending(p), 0, 0, 'WITHSCORES')
  if #first > 0 then
    local nb = tonumber(first[2])
    if nb <= now and (oldest == nil or nb < oldest) then oldest = nb end
  end
end
out[#out + 1] = num(delayed)
out[#out + 1] = num(redis.call('ZCARD', P .. 'running'))
out[#out + 1] = num(redis.call('ZCARD', P .. 'dead'))
if oldest then out[#out + 1] = num(oldest) else out[#out + 1] = '' end
local s = redis.call('HMGET', P .. 'stats', 'enqueued', 'completed')
out[#out + 1] = s[1] or '0'
out[#out + 1] = s[2] or '0'
return out
"#;

/// ARGV: prefix, limit. Returns id, kind, priority, attempts, reason, failed ms per dead job,
/// newest first, flattened.
const DEAD_JOBS: &str = r#"
local ids = redis.call('ZREVRANGE', P .. 'dead', 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', jobkey(id), 'kind', 'pri', 'att', 'reason', 'failed')
  if f[1] then
    out[#out + 1] = id
    for i = 1, 5 do out[#out + 1] = f[i] or '' end
  end
end
return out
"#;

/// ARGV: prefix, age ms, batch. Deletes up to `batch` dead jobs that died more than `age` ms
/// ago (server clock); returns how many.
const PURGE_DEAD: &str = r#"
local cutoff = now_ms() - tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', P .. 'dead', '-inf', '(' .. num(cutoff),
  'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('DEL', jobkey(id))
  redis.call('ZREM', P .. 'dead', id)
end
return #ids
"#;

/// Dead jobs deleted per script call (each call is atomic; a large purge is several calls).
const PURGE_BATCH: i64 = 1000;

/// KEYS: lock key. ARGV: holder, ttl ms. Returns 1 if `holder` holds the lock now.
const TRY_LOCK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: lock key. ARGV: holder.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

struct Scripts {
    enqueue: Script,
    claim: Script,
    renew: Script,
    ack: Script,
    finish: Script,
    stats: Script,
    dead_jobs: Script,
    purge_dead: Script,
    try_lock: Script,
    unlock: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_lib = |body: &str| Script::new(&format!("{LIB}\n{body}"));
    Scripts {
        enqueue: with_lib(ENQUEUE),
        claim: with_lib(CLAIM),
        renew: with_lib(RENEW),
        ack: with_lib(ACK),
        finish: with_lib(FINISH),
        stats: with_lib(STATS),
        dead_jobs: with_lib(DEAD_JOBS),
        purge_dead: with_lib(PURGE_DEAD),
        try_lock: Script::new(TRY_LOCK),
        unlock: Script::new(UNLOCK),
    }
});

/// Longest wait for one reply. No blocking commands are used; this only has to cover a slow
/// `fsync` under `appendfsync always` on a busy disk (the crate's default is 500 ms).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection attempts per (re)connect, 100 ms apart and doubling: a start against a Redis
/// that is down fails within a second, and while Redis is down each call fails within about a
/// second instead of hanging; the next call after a failed reconnect tries again.
const RECONNECT_RETRIES: usize = 3;

#[derive(Clone)]
pub(super) struct RedisQueue {
    conn: ConnectionManager,
    prefix: Arc<str>,
    opts: QueueOptions,
    /// Kept for subscribers of the change channel (a subscription needs its own connection).
    url: Arc<str>,
}

impl RedisQueue {
    pub(super) async fn connect(
        url: &str,
        prefix: &str,
        opts: QueueOptions,
    ) -> Result<Self, QueueError> {
        let client = Client::open(url).map_err(|e| match e.kind() {
            ErrorKind::InvalidClientConfig => QueueError::InvalidRedisUrl,
            _ => QueueError::Redis(e),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisQueue {
            conn,
            prefix: Arc::from(prefix),
            opts,
            url: Arc::from(url),
        })
    }

    pub(super) fn options(&self) -> &QueueOptions {
        &self.opts
    }

    /// The pub/sub channel on which repository changes are announced.
    pub(super) fn change_channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// `PUBLISH` a changed repository's name to every subscribed web instance.
    pub(super) async fn publish_change(&self, repository: &str) -> Result<(), QueueError> {
        let mut conn = self.conn();
        let _receivers: i64 = ::redis::cmd("PUBLISH")
            .arg(self.change_channel())
            .arg(repository)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(super) async fn enqueue(
        &self,
        kind: &JobKind,
        priority: Priority,
        not_before: Option<i64>,
    ) -> Result<EnqueueOutcome, QueueError> {
        let outcome: String = SCRIPTS
            .enqueue
            .arg(&*self.prefix)
            .arg(kind.dedup_key())
            .arg(kind.to_json())
            .arg(kind.covering().to_json())
            .arg(priority.index())
            .arg(not_before.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        match outcome.as_str() {
            "added" => Ok(EnqueueOutcome::Added),
            "raised" => Ok(EnqueueOutcome::Raised),
            "queued" => Ok(EnqueueOutcome::AlreadyQueued),
            other => Err(QueueError::Corrupt(format!("enqueue answered {other:?}"))),
        }
    }

    pub(super) async fn claim(&self, worker: &str) -> Result<Option<ClaimedJob>, QueueError> {
        let token: i64 = rand::random();
        let reply: Option<Vec<String>> = SCRIPTS
            .claim
            .arg(&*self.prefix)
            .arg(worker)
            .arg(token)
            .arg(self.opts.lease_ms())
            .arg(self.opts.max_attempts_i64())
            .invoke_async(&mut self.conn())
            .await?;
        let Some(f) = reply else { return Ok(None) };
        let [id, kind, priority, attempt, enqueued] = <[String; 5]>::try_from(f)
            .map_err(|f| QueueError::Corrupt(format!("claim answered {f:?}")))?;
        Ok(Some(ClaimedJob {
            kind: JobKind::from_json(&kind)?,
            priority: Priority::from_index(parse(&priority)?)?,
            attempt: to_u32(parse(&attempt)?, "attempts")?,
            enqueued_at: ms_to_datetime(parse(&enqueued)?)?,
            id,
            token,
        }))
    }

    pub(super) async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let renewed: i64 = SCRIPTS
            .renew
            .arg(&*self.prefix)
            .arg(&job.id)
            .arg(job.token)
            .arg(self.opts.lease_ms())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(renewed == 1)
    }

    pub(super) async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        let acked: i64 = SCRIPTS
            .ack
            .arg(&*self.prefix)
            .arg(&job.id)
            .arg(job.token)
            .invoke_async(&mut self.conn())
            .await?;
        if acked == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost { id: job.id.clone() })
        }
    }

    pub(super) async fn finish(
        &self,
        job: &ClaimedJob,
        how: Finish<'_>,
    ) -> Result<FailOutcome, QueueError> {
        let (mode, at, reason) = match how {
            Finish::Release => ("release", 0, ""),
            Finish::RetryAt(at) => ("retry", at, ""),
            Finish::Fail { reason, backoff_ms } => ("fail", backoff_ms, reason),
        };
        let reply: Vec<String> = SCRIPTS
            .finish
            .arg(&*self.prefix)
            .arg(&job.id)
            .arg(job.token)
            .arg(mode)
            .arg(at)
            .arg(reason)
            .arg(self.opts.max_attempts_i64())
            .invoke_async(&mut self.conn())
            .await?;
        match reply.as_slice() {
            [s] if s == "lost" => Err(QueueError::LeaseLost { id: job.id.clone() }),
            [s] if s == "dead" => Ok(FailOutcome::Dead),
            [s, due] if s == "pending" => Ok(FailOutcome::Retry {
                at: ms_to_datetime(parse(due)?)?,
            }),
            other => Err(QueueError::Corrupt(format!("finish answered {other:?}"))),
        }
    }

    pub(super) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let f: Vec<String> = SCRIPTS
            .stats
            .arg(&*self.prefix)
            .arg(self.opts.max_attempts_i64())
            .invoke_async(&mut self.conn())
            .await?;
        if f.len() != 10 {
            return Err(QueueError::Corrupt(format!("stats answered {f:?}")));
        }
        let n = |i: usize| -> Result<u64, QueueError> {
            f[i].parse()
                .map_err(|_| QueueError::Corrupt(format!("stats field {:?}", f[i])))
        };
        let now: i64 = parse(&f[0])?;
        let oldest: Option<i64> = if f[7].is_empty() {
            None
        } else {
            Some(parse(&f[7])?)
        };
        Ok(QueueStats {
            depth: Priority::ALL
                .iter()
                .enumerate()
                .map(|(i, p)| Ok((*p, n(i + 1)?)))
                .collect::<Result<_, QueueError>>()?,
            delayed: n(4)?,
            in_flight: n(5)?,
            dead: n(6)?,
            oldest_age_secs: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
            enqueued_total: n(8)?,
            completed_total: n(9)?,
        })
    }

    pub(super) async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJob>, QueueError> {
        let f: Vec<String> = SCRIPTS
            .dead_jobs
            .arg(&*self.prefix)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        f.chunks(6)
            .map(|c| match c {
                [id, kind, pri, att, reason, failed] => Ok(DeadJob {
                    id: id.clone(),
                    kind: JobKind::from_json(kind)?,
                    priority: Priority::from_index(parse(pri)?)?,
                    attempts: to_u32(parse(att)?, "attempts")?,
                    reason: reason.clone(),
                    failed_at: ms_to_datetime(parse(failed)?)?,
                }),
                other => Err(QueueError::Corrupt(format!("dead job {other:?}"))),
            })
            .collect()
    }

    pub(super) async fn purge_dead(&self, older_ms: i64) -> Result<u64, QueueError> {
        let mut total = 0u64;
        loop {
            let n: i64 = SCRIPTS
                .purge_dead
                .arg(&*self.prefix)
                .arg(older_ms)
                .arg(PURGE_BATCH)
                .invoke_async(&mut self.conn())
                .await?;
            total += n.max(0) as u64;
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }

    pub(super) async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, QueueError> {
        let held: i64 = SCRIPTS
            .try_lock
            .key(format!("{}lock:{name}", self.prefix))
            .arg(holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(held == 1)
    }

    pub(super) async fn unlock(&self, name: &str, holder: &str) -> Result<(), QueueError> {
        let _: i64 = SCRIPTS
            .unlock
            .key(format!("{}lock:{name}", self.prefix))
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }
}

fn parse(s: &str) -> Result<i64, QueueError> {
    s.parse()
        .map_err(|_| QueueError::Corrupt(format!("number {s:?}")))
}
