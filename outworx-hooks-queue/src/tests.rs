//! The engine over a real SQLite queue table of its own: the runner's loop, the per-key cap,
//! leases taken back after a crash, and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row as _;

use crate::{
    BoxFuture, Busy, Claim, Clock, Job, ManualClock, Pool, Queue, QueueTable, Runner,
    RunnerOptions, on_pool,
};

const TOY: QueueTable = QueueTable {
    name: "toy",
    leased: "running",
    done: "done",
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS toy (id INTEGER PRIMARY KEY, key TEXT NOT NULL, \
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3, \
    next_attempt_at INTEGER NOT NULL, lease_until INTEGER, lease_token TEXT, last_status INTEGER, \
    last_error TEXT, updated_at INTEGER NOT NULL)";

/// The toy queue's one query module, for `on_pool!` (SQLite only: the test's database).
mod toy {
    pub(super) mod sqlite {
        pub(crate) use crate::sql::sqlite::*;
    }
    pub(super) mod postgres {
        pub(crate) use crate::sql::postgres::*;
    }
}

struct ToyJob {
    id: i64,
    key: String,
}

impl Job for ToyJob {
    fn id(&self) -> i64 {
        self.id
    }
    fn key(&self) -> Option<&str> {
        Some(&self.key)
    }
}

struct Toy {
    pool: Pool,
    clock: ManualClock,
    lease: Duration,
    /// How long each run takes.
    work: Duration,
    /// Runs per id.
    runs: Mutex<HashMap<i64, usize>>,
    /// Runs in progress per key now, and the most seen at once.
    running: Mutex<HashMap<String, usize>>,
    most_at_once: AtomicUsize,
}

impl Toy {
    async fn new(jobs: &[&str], work: Duration) -> Arc<Toy> {
        let pool = Pool::memory().await.unwrap();
        pool.migrate(SCHEMA, SCHEMA, &[]).await.unwrap();
        let Pool::Sqlite(p) = &pool else {
            unreachable!()
        };
        for key in jobs {
            sqlx::query(
                "INSERT INTO toy (key, status, next_attempt_at, updated_at) VALUES ($1, 'pending', 0, 0)",
            )
            .bind(*key)
            .execute(p)
            .await
            .unwrap();
        }
        Arc::new(Toy {
            pool,
            clock: ManualClock::new(1_000),
            lease: Duration::from_millis(30_000),
            work,
            runs: Mutex::default(),
            running: Mutex::default(),
            most_at_once: AtomicUsize::new(0),
        })
    }

    async fn status_counts(&self) -> HashMap<String, i64> {
        let Pool::Sqlite(p) = &self.pool else {
            unreachable!()
        };
        sqlx::query("SELECT status, COUNT(*) AS n FROM toy GROUP BY status")
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("status"), r.get("n")))
            .collect()
    }
}

impl Queue for Toy {
    type Job = ToyJob;
    type Outcome = i64;
    type Error = sqlx::Error;

    fn claim<'a>(
        &'a self,
        token: &'a str,
        limit: u32,
        busy: &'a Busy,
    ) -> BoxFuture<'a, Result<Vec<ToyJob>, sqlx::Error>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            let claim = Claim::new(token, limit, now, self.lease).excluding("key", &busy.keys);
            on_pool!(&self.pool, tx, toy, |c, q| {
                q::bury(c, TOY, now, None).await?;
                let ids = q::claim(c, TOY, claim).await?;
                let mut jobs = Vec::new();
                for id in ids {
                    let key: String = sqlx::query_scalar("SELECT key FROM toy WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *c)
                        .await?;
                    jobs.push(ToyJob { id, key });
                }
                Ok(jobs)
            })
        })
    }

    fn release<'a>(
        &'a self,
        token: &'a str,
        ids: &'a [i64],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            on_pool!(&self.pool, tx, toy, |c, q| q::release(
                c, TOY, ids, token, now
            )
            .await)
        })
    }

    fn run(&self, job: ToyJob) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            let at_once = {
                let mut running = self.running.lock().unwrap();
                let n = running.entry(job.key.clone()).or_default();
                *n += 1;
                *n
            };
            self.most_at_once.fetch_max(at_once, Ordering::SeqCst);
            tokio::time::sleep(self.work).await;
            *self.running.lock().unwrap().get_mut(&job.key).unwrap() -= 1;
            *self.runs.lock().unwrap().entry(job.id).or_default() += 1;
            job.id
        })
    }

    fn settle<'a>(
        &'a self,
        batch: &'a [(String, Vec<i64>)],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            on_pool!(&self.pool, tx, toy, |c, q| {
                for (token, ids) in batch {
                    q::finish_done(c, TOY, ids, token, Some(200), now).await?;
                }
                Ok(())
            })
        })
    }

    fn outcome_id(&self, outcome: &i64) -> i64 {
        *outcome
    }
}

fn options() -> RunnerOptions {
    RunnerOptions::new("toy worker", "toy_")
        .concurrency(8)
        .poll(Duration::from_millis(5))
}

async fn until_done(toy: &Toy, n: i64) {
    for _ in 0..2_000 {
        if toy.status_counts().await.get("done") == Some(&n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("not every job finished: {:?}", toy.status_counts().await);
}

#[tokio::test]
async fn a_spawned_runner_runs_every_job_once_and_records_it() {
    let keys: Vec<String> = (0..200).map(|i| format!("k{}", i % 10)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let toy = Toy::new(&keys, Duration::from_millis(1)).await;
    let handle = Runner::new(Arc::clone(&toy), options()).spawn();
    until_done(&toy, 200).await;
    handle.shutdown().await;
    let runs = toy.runs.lock().unwrap();
    assert_eq!(runs.len(), 200);
    assert!(runs.values().all(|n| *n == 1), "each job ran once");
}

#[tokio::test]
async fn the_per_key_cap_holds_and_other_keys_are_not_held_up() {
    // 40 jobs of one key and 40 of others, each 10 ms: with a cap of 2 per key, the busy
    // key never runs more than 2 at once, and everything still finishes.
    let mut keys = vec!["hot"; 40];
    let others: Vec<String> = (0..40).map(|i| format!("cold{i}")).collect();
    keys.extend(others.iter().map(String::as_str));
    let toy = Toy::new(&keys, Duration::from_millis(10)).await;
    let handle = Runner::new(Arc::clone(&toy), options().per_key(Some(2))).spawn();
    until_done(&toy, 80).await;
    handle.shutdown().await;
    assert_eq!(toy.most_at_once.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_lease_that_ran_out_is_taken_back_and_the_last_one_is_buried() {
    let toy = Toy::new(&["a"], Duration::ZERO).await;
    let runner = Runner::new(Arc::clone(&toy), options());
    // A worker that claims and dies: the job stays leased until its lease runs out.
    let held = toy.claim("dead:0", 10, &Busy::default()).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(runner.run_once(10).await.unwrap(), 0, "still leased");
    toy.clock.advance(Duration::from_millis(30_001));
    // Taken back by the next claim (the reaper is the claim); this worker dies too.
    assert_eq!(
        toy.claim("dead:1", 10, &Busy::default())
            .await
            .unwrap()
            .len(),
        1
    );
    toy.clock.advance(Duration::from_millis(30_001));
    assert_eq!(
        toy.claim("dead:2", 10, &Busy::default())
            .await
            .unwrap()
            .len(),
        1
    );
    toy.clock.advance(Duration::from_millis(30_001));
    // Three attempts, each ended with its worker: buried, not claimed a fourth time.
    assert_eq!(runner.run_once(10).await.unwrap(), 0);
    assert_eq!(toy.status_counts().await.get("dead"), Some(&1));
}

#[tokio::test]
async fn a_job_given_back_is_due_again_with_its_attempt_returned() {
    let toy = Toy::new(&["a"], Duration::ZERO).await;
    let jobs = toy.claim("w:0", 10, &Busy::default()).await.unwrap();
    toy.release("w:0", &[jobs[0].id]).await.unwrap();
    let Pool::Sqlite(p) = &toy.pool else {
        unreachable!()
    };
    let (status, attempts): (String, i64) = sqlx::query_as("SELECT status, attempts FROM toy")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    // A release under another token changes nothing.
    let jobs = toy.claim("w:1", 10, &Busy::default()).await.unwrap();
    toy.release("w:other", &[jobs[0].id]).await.unwrap();
    assert_eq!(toy.status_counts().await.get("running"), Some(&1));
}

#[tokio::test]
async fn shutdown_waits_for_the_running_jobs_and_records_them() {
    let keys = vec!["k"; 8];
    let toy = Toy::new(&keys, Duration::from_millis(200)).await;
    let handle = Runner::new(Arc::clone(&toy), options()).spawn();
    // Let it claim and start them, then stop while they run.
    for _ in 0..200 {
        if toy.status_counts().await.get("running") == Some(&8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.shutdown().await;
    assert_eq!(
        toy.status_counts().await.get("done"),
        Some(&8),
        "recorded before shutdown returned"
    );
}

/// A job whose worker died (its lease ran out) is claimed before a backlog of due jobs larger
/// than the claim: it never waits for the backlog to drain.
#[tokio::test]
async fn an_expired_lease_is_claimed_before_a_backlog() {
    let pool = Pool::memory().await.unwrap();
    pool.migrate(SCHEMA, SCHEMA, &[]).await.unwrap();
    let Pool::Sqlite(p) = &pool else {
        unreachable!()
    };
    for i in 0..100 {
        sqlx::query(
            "INSERT INTO toy (key, status, next_attempt_at, updated_at) VALUES ($1, 'pending', 0, 0)",
        )
        .bind(format!("due-{i}"))
        .execute(p)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO toy (key, status, next_attempt_at, lease_until, lease_token, updated_at) \
         VALUES ('orphan', 'running', 0, 5, 'dead-worker', 0)",
    )
    .execute(p)
    .await
    .unwrap();
    let orphan: i64 = sqlx::query_scalar("SELECT id FROM toy WHERE key = 'orphan'")
        .fetch_one(p)
        .await
        .unwrap();
    let mut c = p.acquire().await.unwrap();
    let claimed = crate::sql::sqlite::claim(
        &mut c,
        TOY,
        Claim::new("next-worker", 10, 1_000, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 10);
    assert!(claimed.contains(&orphan), "{claimed:?}");
}
