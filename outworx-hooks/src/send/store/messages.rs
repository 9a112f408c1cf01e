//! Messages: one committed with a delivery per subscribed endpoint, once per idempotency
//! key. `send_in` runs this on the caller's own transaction.

use std::collections::HashMap;
use std::sync::Arc;

use outworx_hooks_queue::{Clock, Commit, Committed, Pool, Refusal};

use crate::send::SendError;
use crate::send::limits::MAX_ENDPOINTS_PER_OWNER;
use crate::send::model::{NewMessage, Sent};

/// A send waiting for its transaction: the message, its id, and the span context it was sent
/// in (read when it was sent, not in the committer's task).
pub(crate) struct Pending {
    pub(crate) message: NewMessage,
    pub(crate) id: String,
    pub(crate) traceparent: Option<String>,
}

/// One enabled endpoint of a tenant: its id, event filters and channels.
type Subscriber = (String, Vec<String>, Option<Vec<String>>);
/// A tenant's enabled endpoints, read once per transaction.
type Subscribers = HashMap<String, Vec<Subscriber>>;

/// Whether `m` goes to the endpoint `(ep, events, channels)`: the one it names, or one
/// taking its event type and one of its channels.
fn takes(m: &NewMessage, (ep, events, channels): &Subscriber) -> bool {
    match &m.only_endpoint {
        Some(only) => only == ep,
        None => {
            crate::send::filter::matches_any(events, &m.event_type)
                && crate::send::filter::channels_match(channels.as_deref(), m.channels.as_deref())
        }
    }
}

/// The outbox's group commit: concurrent sends (not the ones in the caller's own
/// transaction) join one transaction.
pub(crate) struct Sends {
    pub(crate) pool: Pool,
    pub(crate) clock: Arc<dyn Clock>,
}

/// A message refused as invalid (its id taken, in practice never) may be that message's
/// fault: the batch is then tried a message at a time. Anything else is the batch's.
impl From<SendError> for Refusal<SendError> {
    fn from(error: SendError) -> Self {
        Refusal {
            one_item: matches!(error, SendError::Invalid { .. }),
            error,
        }
    }
}

impl Commit for Sends {
    type Item = Pending;
    type Output = Sent;
    type Error = SendError;

    fn bytes(p: &Pending) -> usize {
        p.message.payload.len() + p.message.event_type.len() + p.message.owner.len() + 128
    }

    fn commit<'a>(&'a self, items: &'a [Pending]) -> Committed<'a, Sent, SendError> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            Ok(outworx_hooks_queue::on_pool!(
                &self.pool,
                tx,
                crate::send::store::messages,
                |c, db| db::insert_messages(c, items, now).await?
            ))
        })
    }
}

outworx_hooks_queue::dialects! {
    pub(crate),
    use sqlx::Row as _;

    use super::*;


    /// Stores a message and one pending delivery per subscribed endpoint; a message
    /// whose idempotency key was seen answers the first one's id.
    pub(crate) async fn insert_message(
        c: &mut Conn,
        m: &NewMessage,
        id: &str,
        now: i64,
    ) -> Result<Sent, SendError> {
        // The span it was emitted in: each attempt's span is that span's child.
        let traceparent = crate::otel::traceparent(&tracing::Span::current());
        insert_message_with(c, m, id, now, traceparent.as_deref(), &mut Subscribers::new()).await
    }

    /// [`insert_message`], with the span context given, and the tenants' subscribers read
    /// once per transaction (`subscribers` holds the ones read so far).
    pub(crate) async fn insert_message_with(
        c: &mut Conn,
        m: &NewMessage,
        id: &str,
        now: i64,
        traceparent: Option<&str>,
        subscribers: &mut Subscribers,
    ) -> Result<Sent, SendError> {
        if let Some(key) = &m.idempotency_key
            && let Some(first) = message_with_key(c, &m.owner, key).await?
        {
            return Ok(Sent { message_id: first, deliveries: 0, duplicate: true });
        }
        let done = sqlx::query(
            "INSERT INTO outworx_messages (id, owner, event_type, payload, idempotency_key, created_at, \
             traceparent, channels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&m.owner)
        .bind(&m.event_type)
        .bind(&m.payload)
        .bind(&m.idempotency_key)
        .bind(now)
        .bind(traceparent)
        .bind(m.channels.as_ref().map(serde_json::to_string).transpose()?)
        .execute(&mut *c)
        .await?;
        if done.rows_affected() == 0 {
            // Another sender committed the same key between our read and write.
            let first = match &m.idempotency_key {
                Some(key) => message_with_key(c, &m.owner, key).await?,
                None => None,
            };
            return match first {
                Some(first) => Ok(Sent { message_id: first, deliveries: 0, duplicate: true }),
                None => Err(SendError::invalid("message", "its id is already taken")),
            };
        }
        if !subscribers.contains_key(&m.owner) {
            let list = subscribers_of(c, &m.owner).await?;
            subscribers.insert(m.owner.clone(), list);
        }
        let targets: Vec<&str> = subscribers
            .get(&m.owner)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|s| takes(m, s))
            .map(|s| s.0.as_str())
            .collect();
        let rows: Vec<(&str, &str, &str)> =
            targets.iter().map(|ep| (id, *ep, m.owner.as_str())).collect();
        insert_deliveries(c, &rows, now).await?;
        Ok(Sent { message_id: id.to_owned(), deliveries: targets.len(), duplicate: false })
    }

    /// Stores many messages, and their deliveries, in a few statements whatever their number:
    /// one for the messages, one per tenant for its subscribers, one for the deliveries (per
    /// 500). A message whose idempotency key was seen (stored, or earlier in `items`) answers
    /// the first one's id. Run it in a transaction: it is one commit or none.
    pub(crate) async fn insert_messages(
        c: &mut Conn,
        items: &[Pending],
        now: i64,
    ) -> Result<Vec<Sent>, Refusal<SendError>> {
        // The first of each (owner, key) in the batch; a later one repeats it.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut fresh: Vec<usize> = Vec::with_capacity(items.len());
        for (i, p) in items.iter().enumerate() {
            match &p.message.idempotency_key {
                Some(key) => {
                    if let std::collections::hash_map::Entry::Vacant(v) =
                        first.entry((p.message.owner.as_str(), key.as_str()))
                    {
                        v.insert(i);
                        fresh.push(i);
                    }
                }
                None => fresh.push(i),
            }
        }
        // In one order, so that concurrent committers (PostgreSQL) inserting the same keys
        // wait for each other instead of deadlocking.
        fresh.sort_unstable_by(|a, b| {
            let key = |i: &usize| {
                let m = &items[*i].message;
                (m.owner.as_str(), m.idempotency_key.as_deref(), items[*i].id.as_str())
            };
            key(a).cmp(&key(b))
        });
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO outworx_messages (id, owner, event_type, payload, idempotency_key, \
             created_at, traceparent, channels) ",
        );
        let channels: Vec<Option<String>> = fresh
            .iter()
            .map(|i| {
                items[*i]
                    .message
                    .channels
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map_err(SendError::from)?;
        q.push_values(fresh.iter().zip(&channels), |mut row, (i, channels)| {
            let p = &items[*i];
            row.push_bind(&p.id)
                .push_bind(&p.message.owner)
                .push_bind(&p.message.event_type)
                .push_bind(&p.message.payload)
                .push_bind(&p.message.idempotency_key)
                .push_bind(now)
                .push_bind(&p.traceparent)
                .push_bind(channels);
        });
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        let inserted: std::collections::HashSet<String> = q
            .build()
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?;
        let mut subscribers = Subscribers::new();
        let mut sent: Vec<Option<Sent>> = vec![None; items.len()];
        let mut deliveries: Vec<(&str, String, &str)> = Vec::new();
        for &i in &fresh {
            let p = &items[i];
            let m = &p.message;
            if !inserted.contains(&p.id) {
                // Its key was stored before (or, never in practice, its random id was taken).
                let known = match &m.idempotency_key {
                    Some(key) => message_with_key(c, &m.owner, key).await?,
                    None => None,
                };
                let Some(known) = known else {
                    return Err(SendError::invalid("message", "its id is already taken").into());
                };
                sent[i] = Some(Sent { message_id: known, deliveries: 0, duplicate: true });
                continue;
            }
            if !subscribers.contains_key(&m.owner) {
                let list = subscribers_of(c, &m.owner).await?;
                subscribers.insert(m.owner.clone(), list);
            }
            let mut n = 0;
            for s in subscribers.get(&m.owner).map_or(&[][..], Vec::as_slice) {
                if takes(m, s) {
                    n += 1;
                    deliveries.push((p.id.as_str(), s.0.clone(), m.owner.as_str()));
                }
            }
            sent[i] = Some(Sent { message_id: p.id.clone(), deliveries: n, duplicate: false });
        }
        let rows: Vec<(&str, &str, &str)> =
            deliveries.iter().map(|(m, ep, owner)| (*m, ep.as_str(), *owner)).collect();
        insert_deliveries(c, &rows, now).await?;
        // A repeat within the batch answers its first's id.
        for (i, p) in items.iter().enumerate() {
            if sent[i].is_some() {
                continue;
            }
            let first_id = p
                .message
                .idempotency_key
                .as_deref()
                .and_then(|key| first.get(&(p.message.owner.as_str(), key)))
                .and_then(|&f| sent[f].as_ref())
                .map(|s| s.message_id.clone());
            let Some(first_id) = first_id else {
                return Err(SendError::invalid("message", "a repeat without its first").into());
            };
            sent[i] = Some(Sent { message_id: first_id, deliveries: 0, duplicate: true });
        }
        Ok(sent.into_iter().flatten().collect())
    }

    /// Pending deliveries, `(message, endpoint, owner)`, one statement per 500 (under every
    /// bind limit).
    async fn insert_deliveries(
        c: &mut Conn,
        rows: &[(&str, &str, &str)],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO outworx_deliveries (message_id, endpoint_id, owner, status, attempts, \
                 next_attempt_at, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut row, (message, ep, owner)| {
                row.push_bind(*message)
                    .push_bind(*ep)
                    .push_bind(*owner)
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *c).await?;
        }
        Ok(())
    }

    /// A tenant's enabled endpoints, with their event filters and channels.
    async fn subscribers_of(c: &mut Conn, owner: &str) -> Result<Vec<Subscriber>, SendError> {
        let rows = sqlx::query(
            "SELECT id, events, channels FROM outworx_endpoints WHERE owner = $1 AND enabled = 1 \
             ORDER BY id LIMIT $2",
        )
        .bind(owner)
        .bind(i64::try_from(MAX_ENDPOINTS_PER_OWNER).unwrap_or(i64::MAX))
        .fetch_all(&mut *c)
        .await?;
        let mut list = Vec::with_capacity(rows.len());
        for r in &rows {
            let events: String = r.try_get("events")?;
            let channels: Option<String> = r.try_get("channels")?;
            list.push((
                r.try_get("id")?,
                serde_json::from_str(&events).unwrap_or_default(),
                channels.and_then(|c| serde_json::from_str(&c).ok()),
            ));
        }
        Ok(list)
    }

    async fn message_with_key(
        c: &mut Conn,
        owner: &str,
        key: &str,
    ) -> Result<Option<String>, SendError> {
        let row = sqlx::query(
            "SELECT id FROM outworx_messages WHERE owner = $1 AND idempotency_key = $2",
        )
        .bind(owner)
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}
