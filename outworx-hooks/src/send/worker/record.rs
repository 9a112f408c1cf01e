//! Recording a batch of attempts in one transaction: each delivery (while its lease is still
//! this worker's), its attempt, its endpoint's health; then, after the commit, the dead
//! letters and disabled endpoints go to their hooks and the log.

use outworx_hooks_queue::on_pool;

use crate::send::SendError;
use crate::send::model::DeliveryStatus;
use crate::send::shared::{DeadLetter, DisabledEndpoint, Shared};
use crate::send::store::deliveries::{Settle, Settled};

/// Records results grouped by the claim (lease token) they came from, in one transaction:
/// one commit for everything that finished meanwhile.
pub(crate) async fn record(
    shared: &Shared,
    disable_after_ms: i64,
    groups: &[(String, Vec<Settle>)],
) -> Result<(), SendError> {
    if groups.iter().all(|(_, r)| r.is_empty()) {
        return Ok(());
    }
    let now = shared.now();
    let settled = on_pool!(
        &shared.outbox.pool,
        tx,
        crate::send::store::deliveries,
        |c, db| {
            let mut all = Settled::default();
            for (token, results) in groups {
                let one = db::settle(c, results, token, now, disable_after_ms).await?;
                all.lost_leases += one.lost_leases;
                all.lost_dead.extend(one.lost_dead);
                all.disabled.extend(one.disabled);
            }
            all
        }
    );
    if settled.lost_leases > 0 {
        tracing::warn!(
            deliveries = settled.lost_leases,
            "outbox worker: attempts outlived their lease; another worker may repeat them"
        );
    }
    let results = groups.iter().flat_map(|(_, r)| r);
    let lost = &settled.lost_dead;
    for s in results.filter(|s| s.status == DeliveryStatus::Dead && !lost.contains(&s.delivery_id))
    {
        let dead = DeadLetter {
            delivery_id: s.delivery_id,
            message_id: s.message_id.clone(),
            endpoint_id: s.endpoint_id.clone(),
            owner: s.owner.clone(),
            event_type: s.event_type.clone(),
            attempts: s.attempts,
            last_status: s.last_status,
            last_error: s.last_error.clone(),
        };
        tracing::warn!(
            message_id = %dead.message_id,
            endpoint_id = %dead.endpoint_id,
            attempts = dead.attempts,
            last_status = ?dead.last_status,
            "webhook delivery is dead"
        );
        if let Some(hook) = &shared.on_dead {
            call_hook(|| hook(&dead));
        }
        crate::metrics::outbound_dead(1);
    }
    for (endpoint_id, reason) in settled.disabled {
        tracing::warn!(%endpoint_id, %reason, "webhook endpoint disabled");
        let e = DisabledEndpoint {
            endpoint_id,
            reason,
        };
        if let Some(hook) = &shared.on_disabled {
            call_hook(|| hook(&e));
        }
    }
    Ok(())
}

/// A hook that panics is logged, never takes the worker down.
fn call_hook(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("an outbox hook (on_dead / on_disabled) panicked");
    }
}
