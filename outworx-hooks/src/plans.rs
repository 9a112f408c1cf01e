//! Every query an operator, a tenant, the dashboard, the CLI or the purge runs on the outbox
//! and the inbox, in one list, with the plan the database makes for it: a test seeds large
//! tables and fails on any plan that reads a whole table, or sorts more than a bounded set
//! of rows (`tests/tests/sdk/query_plans.rs`). A query added later joins this list.
//!
//! Each entry plans the query's own builder (the text the code runs), with representative
//! arguments: ids that exist in the seeded tables are not needed, a plan does not depend on
//! them.

use std::time::Duration;

/// One listed query and its plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What it is for (`outbox: deliveries of one tenant`).
    pub name: &'static str,
    /// The plan's lines: SQLite's `EXPLAIN QUERY PLAN` details, PostgreSQL's `EXPLAIN`.
    pub plan: Vec<String>,
    /// Why a sort, or a walk of a whole index, reads a bounded number of rows (`a message
    /// has at most 100 deliveries`; `an ordered walk that stops at the limit`); `None`: the
    /// plan may do neither.
    pub bounded: Option<&'static str>,
    /// A column SQLite's plan must read by (its index range starts with it), where another
    /// index would also be a range but read far more: the purge's deletes by key, not by
    /// status; an endpoint's deliveries by endpoint, not by owner.
    pub reads_by: Option<&'static str>,
}

/// The names a query gives the tables: their own, and the aliases the listed queries use.
const TABLES: &[&str] = &["d", "m", "a", "e"];

impl Planned {
    /// What is wrong with the plan: each line that reads a whole table, or (unless
    /// [`Planned::bounded`] says why that is bounded) walks a whole index or sorts what it
    /// read. Empty when the plan only reads index ranges.
    ///
    /// On PostgreSQL, plan with `enable_seqscan` and `enable_sort` off: the planner then
    /// takes an index wherever one serves the query, so a `Seq Scan` or a `Sort` left in the
    /// plan means no index does (with them on, it may prefer a scan of a small test table).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, line) in self.plan.iter().enumerate() {
            let l = line.trim_start_matches([' ', '-', '>']).trim();
            // PostgreSQL: an index scan without an `Index Cond` reads the whole index (for
            // its order), which only a walk that stops at a limit may do.
            let node = ["Index Scan", "Index Only Scan", "Bitmap Index Scan"]
                .iter()
                .any(|n| l.starts_with(n));
            if node && self.bounded.is_none() {
                let cond = self.plan[i + 1..]
                    .iter()
                    .take_while(|next| {
                        !next.contains("->") && !next.trim_start().starts_with("SubPlan")
                    })
                    .any(|next| next.contains("Index Cond:"));
                if !cond {
                    out.push(format!("walks a whole index: {l}"));
                }
            }
            // SQLite: `SCAN t`, `SCAN t USING INDEX i`, `SCAN t USING COVERING INDEX i`.
            if let Some(rest) = l.strip_prefix("SCAN ") {
                let mut words = rest.split_whitespace();
                let table = words.next().unwrap_or_default();
                let by_index = words.next() == Some("USING");
                if (table.starts_with("outworx_") || TABLES.contains(&table))
                    && (!by_index || self.bounded.is_none())
                {
                    out.push(format!("reads all of {table}: {l}"));
                }
            }
            // PostgreSQL.
            if let Some(rest) = l.strip_prefix("Seq Scan on ") {
                let table = rest.split_whitespace().next().unwrap_or_default();
                out.push(format!("reads all of {table}: {l}"));
            }
            // A sort node (`Sort  (cost=..)`; not `Incremental Sort`, which sorts only rows
            // whose leading key ties, presorted by its index).
            if self.bounded.is_none() && (l.contains("TEMP B-TREE") || l.starts_with("Sort  (")) {
                out.push(format!("sorts what it read: {l}"));
            }
        }
        // SQLite picks among the indexes that serve a query by rule, and may take the one
        // that reads far more; PostgreSQL (analyzed) picks by cost, which its plan bounds.
        let sqlite = self
            .plan
            .iter()
            .any(|l| l.starts_with("SEARCH") || l.starts_with("SCAN"));
        if let Some(column) = self.reads_by.filter(|_| sqlite) {
            // The column an index range starts with: SQLite's `SEARCH t USING .. (col=? ..)`,
            // PostgreSQL's `Index Cond: ((col = ..) ..)` (SQLite names the key `rowid`).
            let first = |cond: &str| -> String {
                let word: String = cond
                    .trim_start_matches(['(', ' '])
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                word.rsplit('.').next().unwrap_or_default().to_owned()
            };
            let by = self.plan.iter().any(|l| {
                let l = l.trim_start_matches([' ', '-', '>']).trim();
                let cond = if l.starts_with("SEARCH") {
                    l.rfind('(').map(|i| first(&l[i..]))
                } else {
                    l.strip_prefix("Index Cond:").map(first)
                };
                cond.is_some_and(|c| c == column || (column == "id" && c == "rowid"))
            });
            if !by {
                out.push(format!("does not read by {column}"));
            }
        }
        out
    }
}

/// A listed read, timed warm: its name, the median and the most of its runs.
pub type Timed = (&'static str, Duration, Duration);

macro_rules! listed {
    ($d:ident, $core:ident, $timed:ident, $conn:ty) => {
        /// Plans every listed query on this driver's connection.
        pub async fn $d(c: &mut $conn) -> Result<Vec<Planned>, sqlx::Error> {
            $core(c, None)
                .await
                .map(|all| all.into_iter().map(|(p, _)| p).collect())
        }

        /// Runs every listed read (not the writes) once, then `runs` times, on this
        /// driver's connection: for the scale benchmark.
        pub async fn $timed(c: &mut $conn, runs: u32) -> Result<Vec<Timed>, sqlx::Error> {
            Ok($core(c, Some(runs.max(1)))
                .await?
                .into_iter()
                .filter_map(|(p, t)| t.map(|(median, most)| (p.name, median, most)))
                .collect())
        }

        async fn $core(
            c: &mut $conn,
            timed: Option<u32>,
        ) -> Result<Vec<(Planned, Option<(Duration, Duration)>)>, sqlx::Error> {
            use outworx_hooks_queue::sql::$d::explain;
            // Planned, or run as it is when timed.
            let p: &str = match timed {
                Some(_) => "",
                None => outworx_hooks_queue::sql::$d::EXPLAIN,
            };
            let mut out = Vec::new();
            #[allow(unused_macros)]
            macro_rules! plan {
                ($name:expr, $q:expr) => {
                    plan!($name, None, $q)
                };
                ($name:expr, $bound:expr, $q:expr) => {
                    plan!($name, $bound, None, $q)
                };
                ($name:expr, $bound:expr, $by:expr, $q:expr) => {{
                    let mut q = $q;
                    let planned = |plan| Planned {
                        name: $name,
                        plan,
                        bounded: $bound,
                        reads_by: $by,
                    };
                    match timed {
                        None => out.push((planned(explain(c, &mut q).await?), None)),
                        // The writes change the data: timed apart (`sqlite_writes`).
                        Some(_)
                            if !q.sql().starts_with("SELECT") && !q.sql().starts_with("WITH") => {}
                        Some(runs) => {
                            use futures_util::TryStreamExt as _;
                            let once = q.build();
                            let _ = once.fetch(&mut *c).try_collect::<Vec<_>>().await?;
                            let mut times = Vec::with_capacity(runs as usize);
                            for _ in 0..runs {
                                let mut q = $q;
                                let started = std::time::Instant::now();
                                let _ = q.build().fetch(&mut *c).try_collect::<Vec<_>>().await?;
                                times.push(started.elapsed());
                            }
                            times.sort();
                            let (median, most) = (times[times.len() / 2], times[times.len() - 1]);
                            out.push((planned(Vec::new()), Some((median, most))));
                        }
                    }
                }};
            }
            #[cfg(feature = "send")]
            {
                use crate::send::DeliveryStatus;
                use crate::send::store::retention::$d as retention;
                use crate::send::store::views::$d as views;
                use crate::send::store::{
                    DeliveryFilter, Scope, deliveries::$d as deliveries, endpoints::$d as endpoints,
                };
                use outworx_hooks_queue::Cutoffs;

                let tenant = Scope::Owner("t1");
                let none = DeliveryFilter::default();
                let dead = DeliveryFilter::default().status(DeliveryStatus::Dead);
                let endpoint = DeliveryFilter::default().endpoint("ep_1");
                let message = DeliveryFilter::default().message("msg_1");
                let window = DeliveryFilter::default()
                    .endpoint("ep_1")
                    .status(DeliveryStatus::Dead)
                    .since(1)
                    .until(2);
                let per_message =
                    Some("a message has a delivery per endpoint of its owner: at most 100");
                // Each with the column its index range must start with, where another index
                // would also be a range (and read far more).
                let lists: [(
                    &'static str,
                    Scope<'_>,
                    &DeliveryFilter,
                    Option<&'static str>,
                    Option<&'static str>,
                ); 8] = [
                    (
                        "outbox: deliveries, every tenant's",
                        Scope::All,
                        &none,
                        None,
                        None,
                    ),
                    (
                        "outbox: deliveries, dead, every tenant's",
                        Scope::All,
                        &dead,
                        None,
                        Some("status"),
                    ),
                    (
                        "outbox: deliveries of a tenant",
                        tenant,
                        &none,
                        None,
                        Some("owner"),
                    ),
                    (
                        "outbox: deliveries of a tenant, dead",
                        tenant,
                        &dead,
                        None,
                        Some("owner"),
                    ),
                    (
                        "outbox: deliveries of an endpoint",
                        tenant,
                        &endpoint,
                        None,
                        Some("endpoint_id"),
                    ),
                    (
                        "outbox: deliveries of a message",
                        tenant,
                        &message,
                        per_message,
                        Some("message_id"),
                    ),
                    (
                        "outbox: deliveries of a message, any tenant",
                        Scope::All,
                        &message,
                        per_message,
                        Some("message_id"),
                    ),
                    (
                        "outbox: an endpoint's dead deliveries in a window",
                        Scope::All,
                        &window,
                        None,
                        Some("endpoint_id"),
                    ),
                ];
                for (name, scope, f, bound, by) in lists {
                    plan!(
                        name,
                        bound,
                        by,
                        views::deliveries_query(p, scope, f, i64::MAX)
                    );
                }
                for (name, scope, f) in [
                    ("outbox: replay a message", tenant, &message),
                    ("outbox: replay a tenant's dead deliveries", tenant, &dead),
                    ("outbox: replay every dead delivery", Scope::All, &dead),
                    (
                        "outbox: replay an endpoint's failures in a window",
                        Scope::All,
                        &window,
                    ),
                ] {
                    plan!(name, deliveries::replay_query(p, scope, f, 1));
                }
                plan!(
                    "outbox: attempts of an endpoint",
                    views::attempts_query(p, tenant, Some("ep_1"), None, 100)
                );
                plan!(
                    "outbox: attempts of a message",
                    views::attempts_query(p, tenant, None, Some("msg_1"), 100)
                );
                plan!(
                    "outbox: attempts, every tenant's",
                    views::attempts_query(p, Scope::All, None, None, 100)
                );
                let walk =
                    Some("an ordered walk of the (created_at, id) index that stops at the limit");
                plan!(
                    "outbox: endpoints, every tenant's",
                    walk,
                    endpoints::endpoints_query(p, Scope::All)
                );
                plan!(
                    "outbox: endpoints of a tenant",
                    endpoints::endpoints_query(p, tenant)
                );
                plan!(
                    "outbox: endpoint health, every tenant's",
                    walk,
                    views::endpoint_health_query(p, Scope::All, 100, 200, 10_000)
                );
                plan!(
                    "outbox: endpoint health of a tenant",
                    views::endpoint_health_query(p, tenant, 100, 200, 10_000)
                );
                for scope in [Scope::All, tenant] {
                    plan!(
                        "outbox: deliveries of a status, counted to a cap",
                        views::capped_count_query(p, scope, DeliveryStatus::Dead, 10_000)
                    );
                }
                plan!(
                    "outbox: purge, the next messages",
                    retention::candidates_query(p, 1_000, (0, "msg_0"), 500)
                );
                let cut = Cutoffs {
                    done_before: Some(1_000),
                    dead_before: Some(10),
                };
                let ids = vec!["msg_1".to_owned(), "msg_2".to_owned()];
                plan!(
                    "outbox: purge, their finished deliveries",
                    None,
                    Some("message_id"),
                    retention::finished_deliveries_query(p, cut, &ids)
                );
                plan!(
                    "outbox: expunge, a message's answers",
                    retention::expunge_answers_query(p, "msg_1")
                );

                // The Svix-compatible API's pages (`send::svix`): each a range of one index,
                // in its order, stopping at the page's size (or a filtered page's scan). An
                // application is an owner: `t1` is one the scale benchmark seeds.
                use crate::send::svix::store::{Page, $d as svix};
                let pages = [
                    Page {
                        from: None,
                        back: false,
                        ascending: false,
                        rows: 51,
                    },
                    Page {
                        from: Some("x_1"),
                        back: false,
                        ascending: false,
                        rows: 51,
                    },
                    Page {
                        from: Some("x_1"),
                        back: true,
                        ascending: false,
                        rows: 51,
                    },
                    Page {
                        from: Some("x_1"),
                        back: false,
                        ascending: true,
                        rows: 51,
                    },
                ];
                for page in pages {
                    plan!("svix: applications", svix::app_page_query(p, "ns1", page));
                    plan!(
                        "svix: event types",
                        svix::event_type_page_query(p, "ns1", false, page)
                    );
                    plan!(
                        "svix: endpoints of an application",
                        endpoints::endpoint_page_query(
                            p,
                            "t1",
                            page.from,
                            page.back,
                            page.ascending,
                            50
                        )
                    );
                    plan!(
                        "svix: messages of an application",
                        None,
                        Some("owner"),
                        svix::message_page_query(p, "t1", None, None, false, page)
                    );
                }
                plan!(
                    "svix: messages of an application in a window",
                    None,
                    Some("owner"),
                    svix::message_page_query(p, "t1", Some("msg_0"), Some("msg_9"), true, pages[1])
                );
                for (from, back) in [(None, false), (Some(7), false), (Some(7), true)] {
                    plan!(
                        "svix: attempts of an endpoint",
                        svix::attempt_page_query(p, Some("ep_1"), None, from, back, 51)
                    );
                    plan!(
                        "svix: attempts of a message",
                        None,
                        Some("message_id"),
                        svix::attempt_page_query(p, None, Some("msg_1"), from, back, 51)
                    );
                    plan!(
                        "svix: deliveries of an endpoint (its messages)",
                        None,
                        Some("endpoint_id"),
                        svix::endpoint_deliveries_query(p, "ep_1", from, back, 51)
                    );
                }
                plan!(
                    "svix: attempts of a message to an endpoint",
                    per_message,
                    Some("message_id"),
                    svix::attempt_page_query(p, Some("ep_1"), Some("msg_1"), None, false, 51)
                );
                plan!(
                    "svix: deliveries of a message (its destinations)",
                    None,
                    Some("message_id"),
                    svix::message_deliveries_query(p, "msg_1", Some("ep_1"), 51)
                );
                plan!(
                    "svix: an endpoint's stats, one status",
                    None,
                    Some("endpoint_id"),
                    svix::endpoint_stat_query(p, "ep_1", "dead", 1, 2, 1_000_000)
                );
            }
            #[cfg(feature = "inbox")]
            {
                use crate::inbox::store::$d as inbox;
                use crate::inbox::{DeliveryFilter, DeliveryStatus};

                let none = DeliveryFilter::default();
                let one = DeliveryFilter::default().id(7);
                let dead = DeliveryFilter::default().status(DeliveryStatus::Dead);
                let route = DeliveryFilter::default().route("r1");
                let retrying = DeliveryFilter {
                    retrying: true,
                    ..DeliveryFilter::default().status(DeliveryStatus::Pending)
                };
                let window = DeliveryFilter::default()
                    .status(DeliveryStatus::Dead)
                    .since(1)
                    .until(2);
                for (name, f) in [
                    ("inbox: deliveries", &none),
                    ("inbox: one delivery", &one),
                    ("inbox: dead deliveries", &dead),
                    ("inbox: deliveries of a route", &route),
                    ("inbox: deliveries waiting for a retry", &retrying),
                    ("inbox: dead deliveries in a window", &window),
                ] {
                    plan!(name, inbox::list_query(p, f, i64::MAX));
                }
                for (name, f) in [
                    ("inbox: replay one delivery", &one),
                    ("inbox: replay the dead deliveries", &dead),
                    ("inbox: replay a route's deliveries", &route),
                ] {
                    plan!(name, inbox::replay_query(p, f, 1));
                }
                for (status, retrying) in [("pending", false), ("pending", true), ("done", false)] {
                    plan!(
                        "inbox: deliveries of a status, counted to a cap",
                        inbox::summary_count_query(p, status, retrying, 10_000)
                    );
                }
                let ids = [1_i64, 2, 3];
                plan!(
                    "inbox: purge, a batch's delete",
                    None,
                    Some("id"),
                    inbox::purge_delete_query(p, &ids, "done", 1_000)
                );
                for status in ["done", "dead"] {
                    plan!(
                        "inbox: purge, one batch",
                        inbox::purge_query(p, status, 1_000, 500)
                    );
                }
            }
            Ok(out)
        }
    };
}

listed!(sqlite, sqlite_listed, sqlite_timed, sqlx::SqliteConnection);
listed!(
    postgres,
    postgres_listed,
    postgres_timed,
    sqlx::PgConnection
);

/// The writes the scale benchmark times: claims of 64 (as a worker claims: fair by owner; each
/// rolled back), and purge batches of the outbox and the inbox (each committed, as the
/// purge commits them), each from `BEGIN` to the end of its transaction: how long it holds
/// the write lock.
#[cfg(all(feature = "send", feature = "inbox"))]
pub type Writes = (Vec<Duration>, Vec<Duration>, Vec<Duration>);

#[cfg(all(feature = "send", feature = "inbox"))]
macro_rules! writes {
    ($d:ident, $outbox:expr, $inbox:expr, $begin:ident, $runs:expr) => {{
        use crate::send::store::deliveries::$d as deliveries;
        use crate::send::store::retention::$d as retention;
        let runs = $runs;
        let keep = outworx_hooks_queue::Retention::older_than(Duration::from_secs(1));
        let (cut, batch) = (
            keep.cutoffs(outworx_hooks_queue::now_ms()),
            keep.batch_size(),
        );
        let (mut claims, mut outbox_batches, mut inbox_batches) =
            (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let started = std::time::Instant::now();
            let mut tx = $begin(&$outbox).await?;
            let token = format!("bench:{i}");
            let owners =
                deliveries::owners_waiting(&mut tx, None, 32, outworx_hooks_queue::now_ms())
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            let claim = outworx_hooks_queue::Claim::new(
                &token,
                64,
                outworx_hooks_queue::now_ms(),
                Duration::from_secs(60),
            )
            .fair("owner", &owners);
            deliveries::claim(&mut tx, claim)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tx.rollback().await?;
            claims.push(started.elapsed());
        }
        let mut cursor = None;
        for _ in 0..runs {
            let started = std::time::Instant::now();
            let mut tx = $begin(&$outbox).await?;
            retention::purge(&mut tx, cut, batch, &mut cursor)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tx.commit().await?;
            outbox_batches.push(started.elapsed());
        }
        for _ in 0..runs {
            let started = std::time::Instant::now();
            let mut tx = $begin(&$inbox).await?;
            crate::inbox::store::$d::purge(&mut tx, cut, batch)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tx.commit().await?;
            inbox_batches.push(started.elapsed());
        }
        Ok((claims, outbox_batches, inbox_batches))
    }};
}

/// [`Writes`] on the SQLite files of an outbox and an inbox (write-locked from `BEGIN
/// IMMEDIATE`, as the queues' own transactions are).
#[cfg(all(feature = "send", feature = "inbox"))]
pub async fn sqlite_writes(outbox: &str, inbox: &str, runs: u32) -> Result<Writes, sqlx::Error> {
    async fn begin(
        pool: &sqlx::SqlitePool,
    ) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }
    let outbox = sqlx::SqlitePool::connect(&format!("sqlite://{outbox}")).await?;
    let inbox = sqlx::SqlitePool::connect(&format!("sqlite://{inbox}")).await?;
    writes!(sqlite, outbox, inbox, begin, runs)
}

/// [`Writes`] on one PostgreSQL database holding an outbox and an inbox.
#[cfg(all(feature = "send", feature = "inbox"))]
pub async fn postgres_writes(url: &str, runs: u32) -> Result<Writes, sqlx::Error> {
    async fn begin(
        pool: &sqlx::PgPool,
    ) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        pool.begin().await
    }
    let pool = sqlx::PgPool::connect(url).await?;
    writes!(postgres, pool, pool, begin, runs)
}

#[cfg(test)]
mod tests {
    use super::Planned;

    fn planned(plan: &[&str], bounded: Option<&'static str>) -> Planned {
        Planned {
            name: "t",
            plan: plan.iter().map(|l| (*l).to_owned()).collect(),
            bounded,
            reads_by: None,
        }
    }

    #[test]
    fn whole_reads_and_unbounded_sorts_are_problems() {
        for (plan, bad) in [
            (
                &["SEARCH d USING INDEX outworx_deliveries_owner (owner=? AND rowid<?)"][..],
                0,
            ),
            (&["SCAN d"][..], 1),
            (&["SCAN outworx_inbox USING INDEX outworx_inbox_due"][..], 1),
            (&["SCAN r", "SEARCH a USING INDEX x (endpoint_id=?)"][..], 0),
            (
                &[
                    "SEARCH d USING INDEX x (message_id=?)",
                    "USE TEMP B-TREE FOR ORDER BY",
                ][..],
                1,
            ),
            (
                &[
                    "Limit  (cost=0.29..8.31 rows=1 width=8)",
                    "  ->  Seq Scan on outworx_inbox  (cost=..)",
                ][..],
                1,
            ),
            (
                &[
                    "Sort  (cost=..)",
                    "  ->  Index Scan using outworx_deliveries_owner on outworx_deliveries d",
                    "        Index Cond: (owner = 'a')",
                ][..],
                1,
            ),
            // An index read for its order alone, filtered as it goes: the whole index.
            (
                &[
                    "Limit",
                    "  ->  Index Scan Backward using outworx_deliveries_pkey on outworx_deliveries d",
                    "        Filter: (status = 'dead')",
                ][..],
                1,
            ),
            (
                &[
                    "Limit",
                    "  ->  Index Only Scan using x on outworx_endpoints e",
                    "        Index Cond: (owner = 'a')",
                    "        SubPlan 1",
                    "          ->  Limit",
                ][..],
                0,
            ),
        ] {
            assert_eq!(planned(plan, None).problems().len(), bad, "{plan:?}");
        }
        // A sort over a bounded set, or an ordered walk to a limit, is declared, and allowed;
        // a whole table never is.
        let sorted = planned(
            &[
                "SEARCH d USING INDEX x (message_id=?)",
                "USE TEMP B-TREE FOR ORDER BY",
            ],
            Some("bounded"),
        );
        assert!(sorted.problems().is_empty());
        assert!(
            planned(&["SCAN e USING COVERING INDEX c"], Some("walk"))
                .problems()
                .is_empty()
        );
        assert_eq!(planned(&["SCAN e"], Some("walk")).problems().len(), 1);
        // A range of the wrong index, where the key was meant.
        let by_status = Planned {
            reads_by: Some("message_id"),
            ..planned(
                &["SEARCH outworx_deliveries USING INDEX s (status=?)"],
                None,
            )
        };
        assert_eq!(by_status.problems().len(), 1);
        let by_key = Planned {
            reads_by: Some("message_id"),
            ..planned(
                &["SEARCH outworx_deliveries USING INDEX k (message_id=?)"],
                None,
            )
        };
        assert!(by_key.problems().is_empty());
    }
}
