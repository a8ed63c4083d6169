//! Payouts: a provider claims claimable balance to their wallet; the payout worker pays it as
//! an SPL token transfer signed by the platform treasury.
//!
//! Never twice, never lost: the claim holds the funds (`provider:<w>:claimable →
//! payout:<id>:held`) in the transaction that records it. The worker signs a transfer and
//! stores it with the last block height at which it can land *before* sending it, then sends
//! the same bytes until a status shows it landed (`held → external:solana`) or failed on chain
//! (`held → claimable`). It signs anew only once the chain's block height has passed that
//! height with no status for any earlier signature (height first, then statuses, so nothing can
//! land in between), and the new signature replaces the old with a conditional update, so two
//! workers cannot both put a transfer in flight. A lease keeps workers from crossing paths.

use std::sync::Arc;

use chain::{
    parse_address, payout_transfer, Confirmation, Keypair, Signature, SolanaRpc, TokenMint,
};
use domain::ledger::{Account, Posting, PostingKind, SOLANA};
use domain::money::Asset;
use domain::payout::{
    check_claim, explorer_url, ClaimError, Minimums, Payout, PayoutStatus, CLAIMS_IN_FLIGHT,
    CLAIMS_PER_HOUR,
};
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::idempotency::key_or_fresh;
use crate::ledger::{balance_in, post};
use crate::rows::enum_in;
use crate::secret::random_hex;
use crate::store::Store;
use crate::Error;

/// How long a worker holds a payout or deposit it is moving on (longer than any RPC call).
const LEASE_MS: i64 = 60_000;
/// Payouts one pass of the worker moves on at most.
const PAYOUTS_PER_PASS: i64 = 50;
/// Transfers a payout is signed as before it is given up (each expired without landing).
const MAX_SIGNINGS: i64 = 5;

/// What payouts are paid with and deposits are received by: a Solana RPC, the treasury key
/// and the mints of both assets.
pub struct SolanaAccess {
    /// The Solana cluster's name (`mainnet`, `devnet`, …), for explorer links.
    pub cluster: String,
    pub rpc: Arc<dyn SolanaRpc>,
    pub treasury: Keypair,
    pub usdc: TokenMint,
    pub token: TokenMint,
    /// The smallest claim and deposit.
    pub minimums: Minimums,
}

impl std::fmt::Debug for SolanaAccess {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chain::Signer;
        f.debug_struct("SolanaAccess")
            .field("treasury", &self.treasury.pubkey())
            .field("usdc", &self.usdc.address)
            .field("token", &self.token.address)
            .finish()
    }
}

impl SolanaAccess {
    pub(crate) fn mint(&self, asset: Asset) -> &TokenMint {
        match asset {
            Asset::Usdc => &self.usdc,
            Asset::Token => &self.token,
        }
    }
}

#[derive(Clone)]
pub struct PayoutService {
    store: Store,
    chain: Option<Arc<SolanaAccess>>,
}

const COLUMNS: &str = "id, owner_wallet, asset, amount, status, status_reason, requested_at, \
                       signature, wire, last_valid_height, finished_at";

/// A payout as stored, with what the worker needs beyond what the provider sees.
struct Stored {
    payout: Payout,
    owner: String,
    wire: Option<Vec<u8>>,
    last_valid_height: Option<i64>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("payout {what}: {e}"))
}

fn read_row(row: &AnyRow) -> Result<Stored, Error> {
    use base64::Engine;
    let wire: Option<String> = row.try_get("wire")?;
    Ok(Stored {
        payout: Payout {
            id: row.try_get("id")?,
            asset: enum_in(row, "asset", Asset::parse)?,
            amount: row.try_get("amount")?,
            status: enum_in(row, "status", PayoutStatus::parse)?,
            status_reason: row.try_get("status_reason")?,
            requested_at: row.try_get("requested_at")?,
            signature: row.try_get("signature")?,
            finished_at: row.try_get("finished_at")?,
            explorer_url: None,
        },
        owner: row.try_get("owner_wallet")?,
        wire: wire
            .map(|w| base64::engine::general_purpose::STANDARD.decode(w))
            .transpose()
            .map_err(|e| corrupt("transaction", e))?,
        last_valid_height: row.try_get("last_valid_height")?,
    })
}

impl PayoutService {
    pub(crate) fn new(store: Store, chain: Option<Arc<SolanaAccess>>) -> PayoutService {
        PayoutService { store, chain }
    }

    /// Whether this server pays out (it has a treasury key).
    pub fn enabled(&self) -> bool {
        self.chain.is_some()
    }

    fn chain(&self) -> Result<&Arc<SolanaAccess>, Error> {
        self.chain.as_ref().ok_or_else(|| {
            Error::Conflict(
                "payouts are not enabled on this server (it runs without a treasury key); \
                 your balance stays claimable"
                    .into(),
            )
        })
    }

    /// Records a claim of `amount` base units of `asset` to `owner`'s wallet and holds the
    /// funds. The same `key` again returns the same payout, for the same asset and amount
    /// (another is refused), also when the two arrive at once.
    pub async fn request(
        &self,
        owner: &WalletAddress,
        asset: Asset,
        amount: i64,
        key: Option<&str>,
        now: UnixMillis,
    ) -> Result<Payout, Error> {
        match self.request_once(owner, asset, amount, key, now).await {
            // A retry racing this one recorded the claim first (PostgreSQL lets both look
            // before either writes): it is answered as a retry that came after.
            Err(Error::Database(e)) if key.is_some() && crate::store::is_unique_violation(&e) => {
                self.request_once(owner, asset, amount, key, now).await
            }
            other => other,
        }
    }

    async fn request_once(
        &self,
        owner: &WalletAddress,
        asset: Asset,
        amount: i64,
        key: Option<&str>,
        now: UnixMillis,
    ) -> Result<Payout, Error> {
        let minimums = self.chain()?.minimums;
        let given = key;
        let key = key_or_fresh(key)?;
        let wallet = owner.as_str();
        let mut tx = self.store.begin_write().await?;
        if let Some(row) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payouts WHERE owner_wallet = $1 AND idempotency_key = $2"
        ))
        .bind(wallet)
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?
        {
            let first = read_row(&row)?.payout;
            // The payout row is the request's fingerprint: its asset and amount.
            if given.is_some() && (first.asset, first.amount) != (asset, amount) {
                return Err(Error::Invalid(format!(
                    "the Idempotency-Key '{key}' was already used for a claim of another \
                     amount; send the same claim to retry it, or a new key for a new one"
                )));
            }
            return Ok(first);
        }
        let hour_ago = now.0 - 3_600_000;
        let (recent, oldest_recent, in_flight): (i64, Option<i64>, i64) = {
            let row = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS recent, MIN(requested_at) AS oldest, \
                   CAST(SUM(CASE WHEN status IN ('requested', 'submitted') THEN 1 ELSE 0 END) AS BIGINT) \
                     AS in_flight \
                 FROM payouts WHERE owner_wallet = $1 AND (requested_at > $2 OR status IN ('requested', 'submitted'))",
            )
            .bind(wallet)
            .bind(hour_ago)
            .fetch_one(&mut *tx)
            .await?;
            (
                row.try_get("recent")?,
                row.try_get("oldest")?,
                row.try_get::<Option<i64>, _>("in_flight")?.unwrap_or(0),
            )
        };
        let refused = |e: ClaimError| Error::Conflict(e.to_string());
        if in_flight >= CLAIMS_IN_FLIGHT {
            return Err(refused(ClaimError::TooManyInFlight));
        }
        if recent >= CLAIMS_PER_HOUR {
            let retry_after_secs = (oldest_recent.unwrap_or(now.0) + 3_600_000 - now.0) / 1_000 + 1;
            return Err(refused(ClaimError::TooMany { retry_after_secs }));
        }
        let claimable = Account::ProviderClaimable(wallet.to_owned());
        let have = balance_in(&mut tx, &claimable, asset).await?;
        check_claim(asset, amount, have, &minimums).map_err(|e| Error::Invalid(e.to_string()))?;
        let id = format!("po-{}", random_hex(8));
        sqlx::query(
            "INSERT INTO payouts (id, owner_wallet, asset, amount, idempotency_key, status, \
               status_reason, requested_at) VALUES ($1, $2, $3, $4, $5, 'requested', $6, $7)",
        )
        .bind(&id)
        .bind(wallet)
        .bind(asset.as_str())
        .bind(amount)
        .bind(&key)
        .bind("waiting to be signed")
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let posting = Posting::new(
            PostingKind::PayoutClaim,
            format!("payout:{id}"),
            format!("claim {id} to your wallet"),
        )
        .transfer_units(asset, claimable, Account::PayoutHeld(id.clone()), amount)
        .map_err(|e| Error::Invalid(e.to_string()))?;
        post(&mut tx, &posting, now).await?;
        let row = self.row_in(&mut tx, &id).await?;
        tx.commit().await?;
        tracing::info!(payout = %id, asset = asset.as_str(), amount, "payout requested");
        Ok(row.payout)
    }

    async fn row_in(&self, conn: &mut AnyConnection, id: &str) -> Result<Stored, Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no payout '{id}'")))?;
        read_row(&row)
    }

    /// The wallet's payouts, newest first.
    pub async fn payouts_of(
        &self,
        owner: &WalletAddress,
        limit: u32,
    ) -> Result<Vec<Payout>, Error> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payouts WHERE owner_wallet = $1 \
             ORDER BY requested_at DESC, id LIMIT $2"
        ))
        .bind(owner.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| {
            let mut payout = read_row(row)?.payout;
            if let (PayoutStatus::Confirmed, Some(signature), Some(chain)) =
                (payout.status, &payout.signature, &self.chain)
            {
                payout.explorer_url = Some(explorer_url(signature, &chain.cluster));
            }
            Ok(payout)
        })
        .collect()
    }

    /// One pass of the worker: moves on each open payout no other worker holds. A payout that
    /// fails to move on (the RPC is down, say) is left for the next pass. Returns how many it
    /// took up.
    pub async fn work(&self, now: UnixMillis) -> Result<usize, Error> {
        let Some(chain) = self.chain.clone() else {
            return Ok(0);
        };
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payouts WHERE status IN ('requested', 'submitted') AND lease_until <= $1 \
             ORDER BY requested_at LIMIT $2",
        )
        .bind(now.0)
        .bind(PAYOUTS_PER_PASS)
        .fetch_all(self.store.pool())
        .await?;
        let mut taken = 0;
        for id in open {
            let Some(lease) = Lease::take(&self.store, "payouts", &id, now).await? else {
                continue;
            };
            taken += 1;
            if let Err(e) = self.advance(&chain, &id, now).await {
                tracing::warn!(payout = %id, error = %e, "payout not moved on; retrying next pass");
            }
            lease.release(&self.store).await?;
        }
        Ok(taken)
    }

    async fn advance(&self, chain: &SolanaAccess, id: &str, now: UnixMillis) -> Result<(), Error> {
        let mut conn = self.store.pool().acquire().await?;
        let row = self.row_in(&mut conn, id).await?;
        drop(conn);
        match row.payout.status {
            PayoutStatus::Requested => {
                if let Some(wire) = self.sign(chain, &row, now).await? {
                    self.send(chain, id, &wire).await?;
                }
            }
            PayoutStatus::Submitted => self.follow(chain, &row, now).await?,
            PayoutStatus::Confirmed | PayoutStatus::Failed => {}
        }
        Ok(())
    }

    /// A submitted payout: finished when one of its transactions landed; otherwise its
    /// transaction is sent again, or, once it can no longer land, signed anew.
    async fn follow(
        &self,
        chain: &SolanaAccess,
        row: &Stored,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let id = &row.payout.id;
        // The height first: a transaction with no status once the height has passed its last
        // valid one can never land afterwards.
        let height = chain.rpc.block_height().await.map_err(chain_error)?;
        let signatures: Vec<String> =
            sqlx::query_scalar("SELECT signature FROM payout_signatures WHERE payout_id = $1")
                .bind(id)
                .fetch_all(self.store.pool())
                .await?;
        let parsed: Vec<Signature> = signatures
            .iter()
            .map(|s| s.parse().map_err(|_| corrupt("signature", s)))
            .collect::<Result<_, _>>()?;
        let statuses = chain
            .rpc
            .signature_statuses(&parsed)
            .await
            .map_err(chain_error)?;
        for (signature, status) in signatures.iter().zip(&statuses) {
            let Some(status) = status else { continue };
            if let Some(err) = &status.err {
                let why =
                    format!("the transfer failed on chain ({err}); the funds are claimable again");
                return self
                    .finish(row, PayoutStatus::Failed, signature, &why, now)
                    .await;
            }
            if status.confirmation >= Confirmation::Confirmed {
                return self
                    .finish(row, PayoutStatus::Confirmed, signature, "paid", now)
                    .await;
            }
            // Landed but not confirmed yet: wait for it.
            return Ok(());
        }
        let (Some(wire), Some(last_valid)) = (&row.wire, row.last_valid_height) else {
            return Err(corrupt("transaction", "a submitted payout without one"));
        };
        if (height as i64) <= last_valid {
            return self.send(chain, id, wire).await;
        }
        if signatures.len() as i64 >= MAX_SIGNINGS {
            let why = format!(
                "{} transfers expired without landing ({}); the funds are claimable again",
                signatures.len(),
                row.payout.status_reason
            );
            let last = row.payout.signature.clone().unwrap_or_default();
            return self
                .finish(row, PayoutStatus::Failed, &last, &why, now)
                .await;
        }
        if let Some(wire) = self.sign(chain, row, now).await? {
            self.send(chain, id, &wire).await?;
        }
        Ok(())
    }

    /// Signs a transfer for `row` and stores it (replacing the one it was read with) before
    /// anything is sent. None when another worker changed the payout meanwhile.
    async fn sign(
        &self,
        chain: &SolanaAccess,
        row: &Stored,
        now: UnixMillis,
    ) -> Result<Option<Vec<u8>>, Error> {
        use base64::Engine;
        let payout = &row.payout;
        let recipient = parse_address(&row.owner).map_err(|e| corrupt("wallet", e))?;
        let amount = u64::try_from(payout.amount).map_err(|e| corrupt("amount", e))?;
        let blockhash = chain.rpc.latest_blockhash().await.map_err(chain_error)?;
        let signed = payout_transfer(
            &chain.treasury,
            chain.mint(payout.asset),
            &recipient,
            amount,
            blockhash.hash,
        )
        .map_err(chain_error)?;
        let signature = signed.signature.to_string();
        let last_valid = i64::try_from(blockhash.last_valid_block_height)
            .map_err(|e| corrupt("block height", e))?;
        let mut tx = self.store.begin_write().await?;
        let replaced = sqlx::query(
            "UPDATE payouts SET status = 'submitted', signature = $1, wire = $2, \
               last_valid_height = $3, status_reason = $4 \
             WHERE id = $5 AND status = $6 AND COALESCE(signature, '') = $7",
        )
        .bind(&signature)
        .bind(base64::engine::general_purpose::STANDARD.encode(&signed.wire))
        .bind(last_valid)
        .bind("signed; sending")
        .bind(&payout.id)
        .bind(payout.status.as_str())
        .bind(payout.signature.clone().unwrap_or_default())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if replaced == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO payout_signatures (signature, payout_id, last_valid_height, signed_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&signature)
        .bind(&payout.id)
        .bind(last_valid)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(signed.wire))
    }

    /// Sends the stored transaction; what the RPC answered is kept as the payout's reason.
    async fn send(&self, chain: &SolanaAccess, id: &str, wire: &[u8]) -> Result<(), Error> {
        let reason = match chain.rpc.send_transaction(wire).await {
            Ok(_) => "sent; waiting for it to land".to_owned(),
            Err(e) => format!("sent; the RPC answered: {e}"),
        };
        sqlx::query("UPDATE payouts SET sends = sends + 1, status_reason = $1 WHERE id = $2 AND status = 'submitted'")
            .bind(&reason)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Confirms or fails a submitted payout once, moving its held funds out or back.
    async fn finish(
        &self,
        row: &Stored,
        to: PayoutStatus,
        signature: &str,
        reason: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let payout = &row.payout;
        let mut tx = self.store.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE payouts SET status = $1, signature = $2, status_reason = $3, finished_at = $4 \
             WHERE id = $5 AND status = 'submitted'",
        )
        .bind(to.as_str())
        .bind(signature)
        .bind(reason)
        .bind(now.0)
        .bind(&payout.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(());
        }
        let held = Account::PayoutHeld(payout.id.clone());
        let posting = match to {
            PayoutStatus::Confirmed => Posting::new(
                PostingKind::PayoutLanded,
                format!("paid:{}", payout.id),
                format!("payout {} landed", payout.id),
            )
            .transfer_units(payout.asset, held, SOLANA, payout.amount),
            _ => Posting::new(
                PostingKind::PayoutReturned,
                format!("unpaid:{}", payout.id),
                format!("payout {} could not be paid: returned", payout.id),
            )
            .transfer_units(
                payout.asset,
                held,
                Account::ProviderClaimable(row.owner.clone()),
                payout.amount,
            ),
        }
        .map_err(|e| Error::Invalid(e.to_string()))?;
        post(&mut tx, &posting, now).await?;
        tx.commit().await?;
        crate::metrics::payout_finished(to.as_str());
        tracing::info!(payout = %payout.id, status = to.as_str(), %signature, "payout finished");
        Ok(())
    }
}

pub(crate) fn chain_error(e: chain::ChainError) -> Error {
    Error::Chain(e.to_string())
}

/// A worker's hold on one row of `payouts` or `deposits` (its `lease_until`), so workers on
/// several server processes do not move the same one at once.
pub(crate) struct Lease {
    table: &'static str,
    id: String,
    until: i64,
}

impl Lease {
    /// Takes the row's lease if it is free; None when another worker holds it.
    pub(crate) async fn take(
        store: &Store,
        table: &'static str,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<Lease>, Error> {
        let until = now.0 + LEASE_MS;
        let taken = sqlx::query(&format!(
            "UPDATE {table} SET lease_until = $1 WHERE id = $2 AND lease_until <= $3"
        ))
        .bind(until)
        .bind(id)
        .bind(now.0)
        .execute(store.pool())
        .await?
        .rows_affected();
        Ok((taken == 1).then(|| Lease {
            table,
            id: id.to_owned(),
            until,
        }))
    }

    /// Done for this pass: the next pass of any worker may take the row up.
    pub(crate) async fn release(self, store: &Store) -> Result<(), Error> {
        sqlx::query(&format!(
            "UPDATE {} SET lease_until = 0 WHERE id = $1 AND lease_until = $2",
            self.table
        ))
        .bind(&self.id)
        .bind(self.until)
        .execute(store.pool())
        .await?;
        Ok(())
    }
}
