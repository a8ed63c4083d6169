//! Deposits: the server builds an SPL token transfer from the renter's wallet to the treasury,
//! the wallet signs it (Wallet Standard `signTransaction`), the server checks it is exactly that
//! transfer signed by that wallet, sends it, and credits the balance only once it is confirmed
//! on chain and the chain's record of the transaction shows that amount reached the treasury
//! — once per signature (the ledger key is the signature; the column is unique).
//! A deposit whose blockhash expires before it lands expires with nothing moved.

use std::sync::Arc;

use base64::Engine;
use chain::{check_signed, deposit_transfer, parse_address, Confirmation, Signature, Signer};
use domain::ledger::{Account, Posting, PostingKind, SOLANA};
use domain::money::Asset;
use domain::payout::{Deposit, DepositStatus, DepositToSign};
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::ledger::post;
use crate::payouts::{chain_error, Lease, SolanaAccess};
use crate::rows::enum_in;
use crate::secret::random_hex;
use crate::store::Store;
use crate::Error;

const COLUMNS: &str = "id, user_id, wallet, asset, amount, status, status_reason, created_at, \
                       signature, finished_at, message, last_valid_height, wire";

/// Deposits one worker pass moves on at most.
const DEPOSITS_PER_PASS: i64 = 50;

fn base64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("deposit {what}: {e}"))
}

/// A deposit as stored, with what the worker needs beyond what the renter sees.
struct Stored {
    deposit: Deposit,
    user_id: i64,
    wallet: String,
    message: Vec<u8>,
    last_valid_height: i64,
    wire: Option<Vec<u8>>,
}

fn read_row(row: &AnyRow) -> Result<Stored, Error> {
    let wire: Option<String> = row.try_get("wire")?;
    Ok(Stored {
        deposit: Deposit {
            id: row.try_get("id")?,
            asset: enum_in(row, "asset", Asset::parse)?,
            amount: row.try_get("amount")?,
            status: enum_in(row, "status", DepositStatus::parse)?,
            status_reason: row.try_get("status_reason")?,
            created_at: row.try_get("created_at")?,
            signature: row.try_get("signature")?,
            finished_at: row.try_get("finished_at")?,
        },
        user_id: row.try_get("user_id")?,
        wallet: row.try_get("wallet")?,
        message: base64()
            .decode(row.try_get::<&str, _>("message")?)
            .map_err(|e| corrupt("message", e))?,
        last_valid_height: row.try_get("last_valid_height")?,
        wire: wire
            .map(|w| base64().decode(w))
            .transpose()
            .map_err(|e| corrupt("transaction", e))?,
    })
}

#[derive(Clone)]
pub struct DepositService {
    store: Store,
    solana: Option<Arc<SolanaAccess>>,
}

impl DepositService {
    pub(crate) fn new(store: Store, solana: Option<Arc<SolanaAccess>>) -> DepositService {
        DepositService { store, solana }
    }

    /// Whether this server takes deposits (it has a treasury).
    pub fn enabled(&self) -> bool {
        self.solana.is_some()
    }

    fn solana(&self) -> Result<&Arc<SolanaAccess>, Error> {
        self.solana.as_ref().ok_or_else(|| {
            Error::Conflict(
                "deposits are not enabled on this server (it runs without a treasury)".into(),
            )
        })
    }

    /// Builds the transfer of `amount` of `asset` from `wallet` to the treasury for the wallet
    /// to sign.
    pub async fn prepare(
        &self,
        user_id: i64,
        wallet: &WalletAddress,
        asset: Asset,
        amount: i64,
        now: UnixMillis,
    ) -> Result<DepositToSign, Error> {
        let solana = self.solana()?;
        let minimum = solana.minimums.of(asset);
        if amount < minimum {
            return Err(Error::Invalid(format!(
                "the smallest deposit is {}; {} was asked",
                asset.show(minimum),
                asset.show(amount)
            )));
        }
        let from = parse_address(wallet.as_str()).map_err(|e| Error::Invalid(e.to_string()))?;
        let units = u64::try_from(amount).map_err(|e| Error::Invalid(e.to_string()))?;
        let blockhash = solana.rpc.latest_blockhash().await.map_err(chain_error)?;
        let unsigned = deposit_transfer(
            &from,
            &solana.treasury.pubkey(),
            solana.mint(asset),
            units,
            blockhash.hash,
        )
        .map_err(chain_error)?;
        let id = format!("dep-{}", random_hex(8));
        let last_valid = i64::try_from(blockhash.last_valid_block_height)
            .map_err(|e| corrupt("block height", e))?;
        sqlx::query(
            "INSERT INTO deposits (id, user_id, wallet, asset, amount, status, status_reason, \
               message, last_valid_height, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'awaiting_signature', $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(wallet.as_str())
        .bind(asset.as_str())
        .bind(amount)
        .bind("waiting for your wallet's signature")
        .bind(base64().encode(&unsigned.message))
        .bind(last_valid)
        .bind(now.0)
        .execute(self.store.pool())
        .await?;
        Ok(DepositToSign {
            deposit: self.row(user_id, &id).await?.deposit,
            transaction: base64().encode(&unsigned.wire),
            chain: format!("solana:{}", solana.cluster),
        })
    }

    async fn row(&self, user_id: i64, id: &str) -> Result<Stored, Error> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deposits WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.store.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no deposit '{id}'")))?;
        read_row(&row)
    }

    /// Takes the wallet's signed transaction (base64 wire format) for deposit `id`, checks it
    /// is the transfer built for it signed by the wallet, and sends it. Submitting the same
    /// signed transaction again changes nothing.
    pub async fn submit(
        &self,
        user_id: i64,
        id: &str,
        signed_base64: &str,
    ) -> Result<Deposit, Error> {
        domain::id::IdKind::Deposit
            .check(id)
            .map_err(Error::NotFound)?;
        let solana = self.solana()?;
        let stored = self.row(user_id, id).await?;
        let signed = base64()
            .decode(signed_base64.trim())
            .map_err(|_| Error::Invalid("the signed transaction is not base64".into()))?;
        let wallet = parse_address(&stored.wallet).map_err(|e| corrupt("wallet", e))?;
        let signature = check_signed(&signed, &stored.message, &wallet)
            .map_err(|e| Error::Invalid(e.to_string()))?
            .to_string();
        match stored.deposit.status {
            DepositStatus::AwaitingSignature => {}
            _ if stored.deposit.signature.as_deref() == Some(&signature) => {
                return Ok(stored.deposit)
            }
            other => {
                return Err(Error::Conflict(format!(
                    "this deposit is {other}; start a new one"
                )))
            }
        }
        if self.expired(solana, &stored).await? {
            return Err(Error::Conflict(
                "this deposit's transaction expired before it was signed; start a new one".into(),
            ));
        }
        sqlx::query(
            "UPDATE deposits SET status = 'submitted', signature = $1, wire = $2, status_reason = $3 \
             WHERE id = $4 AND status = 'awaiting_signature'",
        )
        .bind(&signature)
        .bind(base64().encode(&signed))
        .bind("signed; sending")
        .bind(id)
        .execute(self.store.pool())
        .await?;
        self.send(solana, id, &signed).await?;
        Ok(self.row(user_id, id).await?.deposit)
    }

    async fn expired(&self, solana: &SolanaAccess, stored: &Stored) -> Result<bool, Error> {
        let height = solana.rpc.block_height().await.map_err(chain_error)?;
        Ok(height as i64 > stored.last_valid_height)
    }

    async fn send(&self, solana: &SolanaAccess, id: &str, wire: &[u8]) -> Result<(), Error> {
        let reason = match solana.rpc.send_transaction(wire).await {
            Ok(_) => "sent; waiting for it to land".to_owned(),
            Err(e) => format!("sent; the RPC answered: {e}"),
        };
        sqlx::query(
            "UPDATE deposits SET status_reason = $1 WHERE id = $2 AND status = 'submitted'",
        )
        .bind(&reason)
        .bind(id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The renter's deposits, newest first.
    pub async fn deposits_of(&self, user_id: i64, limit: u32) -> Result<Vec<Deposit>, Error> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deposits WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| Ok(read_row(row)?.deposit))
        .collect()
    }

    /// One pass of the worker: credits landed deposits, re-sends those in flight, and expires
    /// those whose transaction can no longer land. Returns how many it took up.
    pub async fn work(&self, now: UnixMillis) -> Result<usize, Error> {
        let Some(solana) = self.solana.clone() else {
            return Ok(0);
        };
        let open = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deposits WHERE status IN ('awaiting_signature', 'submitted') \
               AND lease_until <= $1 ORDER BY created_at LIMIT $2"
        ))
        .bind(now.0)
        .bind(DEPOSITS_PER_PASS)
        .fetch_all(self.store.pool())
        .await?;
        let mut taken = 0;
        for row in &open {
            let stored = read_row(row)?;
            let Some(lease) = Lease::take(&self.store, "deposits", &stored.deposit.id, now).await?
            else {
                continue;
            };
            taken += 1;
            if let Err(e) = self.advance(&solana, &stored, now).await {
                tracing::warn!(deposit = %stored.deposit.id, error = %e, "deposit not moved on; retrying next pass");
            }
            lease.release(&self.store).await?;
        }
        Ok(taken)
    }

    async fn advance(
        &self,
        solana: &SolanaAccess,
        stored: &Stored,
        now: UnixMillis,
    ) -> Result<(), Error> {
        // The height first: with no status once the height has passed, it can never land.
        let expired = self.expired(solana, stored).await?;
        let Some(signature) = &stored.deposit.signature else {
            if expired {
                let why = "the wallet did not sign it before its transaction expired";
                self.finish(
                    stored,
                    DepositStatus::AwaitingSignature,
                    DepositStatus::Expired,
                    why,
                    now,
                )
                .await?;
            }
            return Ok(());
        };
        let parsed: Signature = signature
            .parse()
            .map_err(|_| corrupt("signature", signature))?;
        let status = solana
            .rpc
            .signature_statuses(&[parsed])
            .await
            .map_err(chain_error)?
            .pop()
            .flatten();
        let from = DepositStatus::Submitted;
        match status {
            Some(s) if s.err.is_some() => {
                let why = format!(
                    "the transfer failed on chain ({}); nothing moved",
                    s.err.unwrap_or_default()
                );
                self.finish(stored, from, DepositStatus::Failed, &why, now)
                    .await
            }
            Some(s) if s.confirmation >= Confirmation::Confirmed => {
                self.credit_what_arrived(solana, stored, &parsed, now).await
            }
            Some(_) => Ok(()),
            None if expired => {
                let why = "its transaction expired before it landed; nothing moved";
                self.finish(stored, from, DepositStatus::Expired, why, now)
                    .await
            }
            None => match &stored.wire {
                Some(wire) => self.send(solana, &stored.deposit.id, wire).await,
                None => Err(corrupt("transaction", "a submitted deposit without one")),
            },
        }
    }

    /// Credits a confirmed deposit after reading what the landed transaction did: the
    /// treasury's token account must have gained exactly the amount signed for. The signed
    /// bytes were checked at submission; this checks the chain's own record of them.
    async fn credit_what_arrived(
        &self,
        solana: &SolanaAccess,
        stored: &Stored,
        signature: &Signature,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let from = DepositStatus::Submitted;
        // A node that has the status may not serve the transaction yet: next pass.
        let Some(landed) = solana
            .rpc
            .transaction(signature)
            .await
            .map_err(chain_error)?
        else {
            return Ok(());
        };
        let deposit = &stored.deposit;
        let mint = solana.mint(deposit.asset);
        let arrived = landed.received(&solana.treasury.pubkey(), &mint.address);
        if landed.err.is_none() && arrived == i128::from(deposit.amount) {
            return self
                .finish(stored, from, DepositStatus::Confirmed, "credited", now)
                .await;
        }
        // In base units: a difference of one must not be rounded away.
        let why = format!(
            "it landed, but the chain shows {arrived} base units of {} reached the treasury, not \
             the {} signed for ({}); nothing credited (the operator reviews it)",
            deposit.asset.as_str(),
            deposit.amount,
            deposit.asset.show(deposit.amount)
        );
        tracing::error!(deposit = %deposit.id, %signature, arrived = %arrived, "deposit landed with an unexpected amount");
        self.finish(stored, from, DepositStatus::Failed, &why, now)
            .await
    }

    /// Moves a deposit on from `from` once; a confirmed one credits the balance, keyed by its
    /// signature.
    async fn finish(
        &self,
        stored: &Stored,
        from: DepositStatus,
        to: DepositStatus,
        reason: &str,
        now: UnixMillis,
    ) -> Result<(), Error> {
        let deposit = &stored.deposit;
        let mut tx = self.store.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE deposits SET status = $1, status_reason = $2, finished_at = $3 \
             WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now.0)
        .bind(&deposit.id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 && to == DepositStatus::Confirmed {
            let signature = deposit.signature.clone().unwrap_or_default();
            let posting = Posting::new(
                PostingKind::Deposit,
                format!("deposit:{signature}"),
                format!("deposit {} from your wallet", deposit.id),
            )
            .transfer_units(
                deposit.asset,
                SOLANA,
                Account::UserAvailable(stored.user_id),
                deposit.amount,
            )
            .map_err(|e| Error::Invalid(e.to_string()))?;
            post(&mut tx, &posting, now).await?;
        }
        tx.commit().await?;
        if changed == 1 {
            crate::metrics::deposit_finished(to.as_str());
        }
        Ok(())
    }
}
