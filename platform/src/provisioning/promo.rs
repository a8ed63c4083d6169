//! Promotional credit's limits (issue 23; the rule is `domain::promo`): what a renter received
//! and spent of it, and which devices a promotional cluster may not hire.

use domain::ledger::{Account, OPERATOR_CREDITS};
use domain::money::Asset;
use domain::promo::{PromoStanding, PROVIDER_MIN_AGE_MS};
use domain::time::UnixMillis;
use rustc_hash::FxHashSet;
use sqlx::{AnyConnection, Row};

use super::ProvisioningService;
use crate::Error;

impl ProvisioningService {
    /// [`standing`], or none at all where promotional credit is not limited (a demo network).
    pub(super) async fn promo_standing(
        &self,
        conn: &mut AnyConnection,
        user_id: i64,
        asset: Asset,
    ) -> Result<PromoStanding, Error> {
        if !self.config.limit_promotional_credit {
            return Ok(PromoStanding {
                asset,
                granted: 0,
                spent_bound: 0,
            });
        }
        standing(conn, user_id, asset).await
    }
}

/// What renter `user_id` received of promotional credit in `asset` (the welcome credit and
/// operator credits both come from the operator's account) and spent, net of refunds, on
/// promotional clusters paid in it.
async fn standing(
    conn: &mut AnyConnection,
    user_id: i64,
    asset: Asset,
) -> Result<PromoStanding, Error> {
    let account = Account::UserAvailable(user_id).to_string();
    let granted: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_transfers \
         WHERE credit = $1 AND debit = $2 AND asset = $3",
    )
    .bind(&account)
    .bind(OPERATOR_CREDITS.to_string())
    .bind(asset.as_str())
    .fetch_one(&mut *conn)
    .await?;
    if granted == 0 {
        return Ok(PromoStanding {
            asset,
            granted,
            spent_bound: 0,
        });
    }
    // Charges and extensions leave the renter's account for a cluster; refunds come back.
    let spent_bound: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(CASE WHEN t.debit = $1 THEN t.amount ELSE -t.amount END), 0) \
           AS BIGINT) \
         FROM ledger_transfers t \
         JOIN ledger_transaction_kinds k ON k.transaction_id = t.transaction_id \
         JOIN clusters c ON c.id = k.cluster_id \
         WHERE (t.debit = $1 OR t.credit = $1) AND t.asset = $2 AND c.user_id = $3 \
           AND c.promotional",
    )
    .bind(&account)
    .bind(asset.as_str())
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(PromoStanding {
        asset,
        granted,
        spent_bound,
    })
}

/// The devices a promotional cluster of `user_id` may not hire at `now`: the renter's own and
/// those of providers whose account is younger than [`PROVIDER_MIN_AGE_MS`]. Read once per
/// placement of a bound renter; few new accounts are made in a week compared to the fleet.
pub(super) async fn barred_devices(
    conn: &mut AnyConnection,
    user_id: i64,
    now: UnixMillis,
) -> Result<FxHashSet<String>, Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT d.id FROM devices d WHERE d.owner_wallet = (SELECT wallet FROM users WHERE id = $1) \
         UNION \
         SELECT d.id FROM users u JOIN devices d ON d.owner_wallet = u.wallet \
         WHERE u.created_at > $2",
    )
    .bind(user_id)
    .bind(now.0 - PROVIDER_MIN_AGE_MS)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids.into_iter().collect())
}

/// The first of `devices` that a promotional cluster of `user_id` may not hire at `now`, read
/// in the caller's transaction (the check that holds, whatever was read before it).
pub(super) async fn first_barred(
    conn: &mut AnyConnection,
    user_id: i64,
    devices: &[&str],
    now: UnixMillis,
) -> Result<Option<String>, Error> {
    let renter: String = sqlx::query_scalar("SELECT wallet FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
    for device in devices {
        let row = sqlx::query(
            "SELECT d.owner_wallet, u.created_at FROM devices d \
             LEFT JOIN users u ON u.wallet = d.owner_wallet WHERE d.id = $1",
        )
        .bind(*device)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { continue };
        let owner: String = row.try_get("owner_wallet")?;
        let since: Option<i64> = row.try_get("created_at")?;
        if !domain::promo::may_serve_promotional(&renter, &owner, since, now.0) {
            return Ok(Some((*device).to_owned()));
        }
    }
    Ok(None)
}
