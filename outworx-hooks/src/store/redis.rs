//! `RedisStore`: idempotency shared by every instance that talks to one Redis.

use std::time::Duration;

use base64::Engine as _;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{
    BoxFuture, CachedResponse, Reservation, ReservationToken, STALE_RESERVATION, Store, StoreError,
    fit_key, new_token,
};

/// Reserves in one round trip: `SET NX PX` when the key is free; otherwise a completed
/// value, a live reservation, or a stale one (older than `ARGV[4]` ms by the server's own
/// clock) that is taken over. Values are `p:<token>:<since ms>` or `d:<cached response>`.
const RESERVE: &str = r"
local pending = 'p:' .. ARGV[1] .. ':'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('SET', KEYS[1], pending .. now, 'NX', 'PX', ARGV[2]) then
  return {'new'}
end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], pending .. now, 'PX', ARGV[2])
  return {'new'}
end
if string.sub(v, 1, 2) == 'd:' then
  return {'duplicate', string.sub(v, 3)}
end
local since = tonumber(string.match(v, ':(%d+)$'))
if since == nil or now - since >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], pending .. now, 'PX', ARGV[2])
  return {'new'}
end
return {'in_flight'}
";

/// Stores the response, only while `ARGV[1]` still holds the reservation.
const COMPLETE: &str = r"
local v = redis.call('GET', KEYS[1])
local mine = 'p:' .. ARGV[1] .. ':'
if v and string.sub(v, 1, string.len(mine)) == mine then
  redis.call('SET', KEYS[1], 'd:' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Restarts the stale clock of the reservation, only while `ARGV[1]` still holds it; the key
/// lives at least `ARGV[2]` ms more, so a handler running past its TTL keeps it.
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
local mine = 'p:' .. ARGV[1] .. ':'
if v and string.sub(v, 1, string.len(mine)) == mine then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('SET', KEYS[1], mine .. now)
  else
    redis.call('SET', KEYS[1], mine .. now, 'PX', math.max(ttl, tonumber(ARGV[2])))
  end
  return 1
end
return 0
";

/// Frees the key, only while `ARGV[1]` still holds the reservation.
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
local mine = 'p:' .. ARGV[1] .. ':'
if v and string.sub(v, 1, string.len(mine)) == mine then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The default prefix of every key this store writes. The pipeline's keys already carry the
/// service, provider and route (see `Config::service`), so services sharing one Redis do not
/// meet; a prefix of your own separates other tenants of the server.
pub(crate) const DEFAULT_PREFIX: &str = "outworx:idem:";

/// The oldest Redis whose scripts may write after reading `TIME` (script effects replication,
/// the default from 5.0 on).
const MIN_REDIS_MAJOR: u32 = 5;

/// An idempotency store in Redis, shared by many instances (feature `redis`).
///
/// Each operation is one script call (one round trip): a new delivery costs a reserve and a
/// complete, a duplicate a reserve. The connection manager reconnects by itself; while Redis
/// is unreachable operations fail, and the pipeline fails open (or answers 503 with
/// [`crate::Config::fail_closed`]). Takeover of stale reservations is judged by the Redis
/// server's clock, so instances with skewed clocks agree.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use outworx_hooks::{Config, store::RedisStore};
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("billing:idem:");
/// let _guard = outworx_hooks::init(Config::from_env().store(store))?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    stale_after: Duration,
    reserve: Script,
    complete: Script,
    release: Script,
    renew: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) and keeps reconnecting as needed.
    ///
    /// The server must be Redis 5 or later (or a compatible server that says so): the store's
    /// scripts read the server's clock before they write. An older server is refused here,
    /// with its version, rather than failing on every delivery.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        // One reconnect attempt per failing call, not six with backoff: a server that refuses
        // connections fails a delivery's call in about 100 ms instead of seconds (the
        // breaker then skips it). Answers still time out after 500 ms, the client's default.
        let config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(1);
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        let info: redis::InfoDict = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        check_version(info.get::<String>("redis_version").as_deref())?;
        Ok(RedisStore {
            conn,
            prefix: DEFAULT_PREFIX.to_owned(),
            stale_after: STALE_RESERVATION,
            reserve: Script::new(RESERVE),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
            renew: Script::new(RENEW),
        })
    }

    /// Prefixes every key (default `"outworx:idem:"`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How old an uncompleted reservation must be to be taken over (default 30 s).
    pub fn with_stale_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, fit_key(key))
    }
}

/// Refuses a server older than Redis 5 (an unreadable version is let through: the scripts
/// will say so if they fail).
fn check_version(version: Option<&str>) -> Result<(), StoreError> {
    let major = version.and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match major {
        Some(m) if m < MIN_REDIS_MAJOR => Err(err(format!(
            "the server is Redis {}, and this store needs Redis {MIN_REDIS_MAJOR} or later \
             (its scripts write after reading the server's clock)",
            version.unwrap_or("?")
        ))),
        _ => Ok(()),
    }
}

/// A cached response as stored: `status`, content type and base64 body on one line.
fn encode(r: &CachedResponse) -> String {
    let body = r
        .body
        .as_ref()
        .map_or_else(|| "-".to_owned(), |b| crate::security::b64().encode(b));
    format!(
        "{} {} {body}",
        r.status,
        crate::security::b64().encode(r.content_type.as_deref().unwrap_or_default())
    )
}

fn decode(v: &str) -> Option<CachedResponse> {
    let mut parts = v.splitn(3, ' ');
    let status = parts.next()?.parse().ok()?;
    let ct = crate::security::b64().decode(parts.next()?).ok()?;
    let body = parts.next()?;
    Some(CachedResponse {
        status,
        content_type: (!ct.is_empty()).then(|| String::from_utf8_lossy(&ct).into_owned()),
        body: if body == "-" {
            None
        } else {
            Some(crate::security::b64().decode(body).ok()?.into())
        },
    })
}

impl Store for RedisStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(async move {
            let token = new_token()?;
            let mut conn = self.conn.clone();
            let answer: Vec<String> = self
                .reserve
                .key(self.key(key))
                .arg(&token.0)
                .arg(millis(ttl))
                .arg(millis(self.stale_after))
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            match answer.first().map(String::as_str) {
                Some("new") => Ok(Reservation::New(token)),
                Some("in_flight") => Ok(Reservation::InFlight),
                Some("duplicate") => answer
                    .get(1)
                    .and_then(|v| decode(v))
                    .map(Reservation::Duplicate)
                    .ok_or_else(|| err("a stored response could not be read")),
                _ => Err(err("unexpected answer from the reserve script")),
            }
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
        response: CachedResponse,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .complete
                .key(self.key(key))
                .arg(&token.0)
                .arg(encode(&response))
                .arg(millis(ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .release
                .key(self.key(key))
                .arg(&token.0)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn renew_every(&self) -> Duration {
        (self.stale_after / 3).max(Duration::from_millis(1))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        token: &'a ReservationToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .renew
                .key(self.key(key))
                .arg(&token.0)
                .arg(millis(self.stale_after))
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_responses_round_trip() {
        for r in [
            CachedResponse {
                status: 200,
                content_type: Some("application/json".into()),
                body: Some(bytes::Bytes::from_static(b"{\"a\": 1}\n binary \xff")),
            },
            CachedResponse {
                status: 204,
                content_type: None,
                body: None,
            },
        ] {
            assert_eq!(decode(&encode(&r)), Some(r));
        }
        assert_eq!(decode("garbage"), None);
    }

    #[test]
    fn servers_older_than_redis_5_are_refused_by_version() {
        let e = check_version(Some("4.0.14")).unwrap_err();
        assert!(e.to_string().contains("Redis 4.0.14"), "{e}");
        for ok in [
            Some("5.0.0"),
            Some("7.2.4"),
            Some("10.1"),
            None,
            Some("weird"),
        ] {
            assert!(check_version(ok).is_ok(), "{ok:?}");
        }
    }
}
