//! The Solana JSON-RPC calls the platform makes, as a trait, and its HTTP implementation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use solana_hash::Hash;
use solana_pubkey::Pubkey;
use solana_signature::Signature;

use crate::ChainError;

/// What the trait's calls return: boxed so the platform can hold any implementation as
/// `Arc<dyn SolanaRpc>`.
pub type ChainFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChainError>> + Send + 'a>>;

/// A recent blockhash and the last block height at which a transaction made with it can land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blockhash {
    pub hash: Hash,
    pub last_valid_block_height: u64,
}

/// How final a landed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confirmation {
    Processed,
    Confirmed,
    Finalized,
}

/// A transaction the cluster knows: where it landed and whether it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureStatus {
    pub slot: u64,
    pub confirmation: Confirmation,
    /// The error it failed with, if it failed (it still landed and paid its fee).
    pub err: Option<String>,
}

/// One token account a transaction touched: whose, of which mint, and its balance (base units)
/// before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBalanceChange {
    pub owner: Pubkey,
    pub mint: Pubkey,
    pub before: u64,
    pub after: u64,
}

/// One token account's balance at one moment, by its position among the transaction's
/// accounts: what `getTransaction` lists before and after.
pub(crate) struct PositionedBalance {
    pub position: u64,
    pub owner: Pubkey,
    pub mint: Pubkey,
    pub amount: u64,
}

impl TokenBalanceChange {
    /// Each account's balance `after` a transaction with its balance `before` (zero for an
    /// account the transaction created).
    pub(crate) fn paired(
        before: &[PositionedBalance],
        after: Vec<PositionedBalance>,
    ) -> Vec<TokenBalanceChange> {
        after
            .into_iter()
            .map(|a| TokenBalanceChange {
                before: before
                    .iter()
                    .find(|b| b.position == a.position)
                    .map_or(0, |b| b.amount),
                owner: a.owner,
                mint: a.mint,
                after: a.amount,
            })
            .collect()
    }
}

/// A landed transaction as the chain recorded it: what `getTransaction` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedTransaction {
    pub slot: u64,
    /// The error it failed with, if it failed (then no token balance changed).
    pub err: Option<String>,
    pub token_balances: Vec<TokenBalanceChange>,
}

impl LandedTransaction {
    /// How much of `mint` the token accounts `owner` holds gained in this transaction
    /// (negative when they lost).
    pub fn received(&self, owner: &Pubkey, mint: &Pubkey) -> i128 {
        self.token_balances
            .iter()
            .filter(|c| c.owner == *owner && c.mint == *mint)
            .map(|c| i128::from(c.after) - i128::from(c.before))
            .sum()
    }
}

/// The JSON-RPC methods the platform uses (Solana's names in the docs).
pub trait SolanaRpc: Send + Sync {
    /// `getLatestBlockhash` at `confirmed`.
    fn latest_blockhash(&self) -> ChainFuture<'_, Blockhash>;
    /// `sendTransaction` of a signed transaction in wire format. Sending the same bytes again
    /// is harmless: the cluster runs a signature once.
    fn send_transaction<'a>(&'a self, wire: &'a [u8]) -> ChainFuture<'a, Signature>;
    /// `getSignatureStatuses` with the history searched; None for a signature the cluster
    /// does not know (never sent, or expired without landing).
    fn signature_statuses<'a>(
        &'a self,
        signatures: &'a [Signature],
    ) -> ChainFuture<'a, Vec<Option<SignatureStatus>>>;
    /// `getBlockHeight` at `confirmed`.
    fn block_height(&self) -> ChainFuture<'_, u64>;
    /// `getTransaction` at `confirmed`: what a landed transaction did to token balances;
    /// None while the node does not have it (not landed, or not confirmed yet).
    fn transaction<'a>(
        &'a self,
        signature: &'a Signature,
    ) -> ChainFuture<'a, Option<LandedTransaction>>;
}

/// JSON-RPC over HTTP to a Solana cluster's RPC endpoint.
pub struct HttpRpc {
    url: String,
    client: reqwest::Client,
    next_id: AtomicU64,
}

impl HttpRpc {
    pub fn new(url: &str) -> Result<HttpRpc, ChainError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| ChainError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(HttpRpc {
            url: url.to_owned(),
            client,
            next_id: AtomicU64::new(1),
        })
    }

    async fn call(&self, method: &'static str, params: Value) -> Result<Value, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let unreachable = |e: reqwest::Error| ChainError::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        };
        let response: Value = self
            .client
            .post(&self.url)
            .json(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        answer_of(method, response)
    }
}

/// The `result` of a JSON-RPC response, or its `error` as [`ChainError`]. A preflight failure
/// of `sendTransaction` (code -32002) means the transaction was rejected before running.
fn answer_of(method: &'static str, mut response: Value) -> Result<Value, ChainError> {
    if let Some(error) = response.get("error") {
        let message = error["message"].as_str().unwrap_or("no message").to_owned();
        return Err(if error["code"].as_i64() == Some(-32002) {
            ChainError::Rejected(message)
        } else {
            ChainError::Rpc { method, message }
        });
    }
    match response.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(malformed(method, "neither result nor error")),
    }
}

fn malformed(method: &'static str, detail: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        method,
        detail: detail.into(),
    }
}

fn parse_blockhash(result: &Value) -> Result<Blockhash, ChainError> {
    const METHOD: &str = "getLatestBlockhash";
    let value = &result["value"];
    let hash = value["blockhash"]
        .as_str()
        .and_then(|text| text.parse::<Hash>().ok())
        .ok_or_else(|| malformed(METHOD, "no blockhash"))?;
    let last_valid_block_height = value["lastValidBlockHeight"]
        .as_u64()
        .ok_or_else(|| malformed(METHOD, "no lastValidBlockHeight"))?;
    Ok(Blockhash {
        hash,
        last_valid_block_height,
    })
}

fn parse_statuses(
    result: &Value,
    expected: usize,
) -> Result<Vec<Option<SignatureStatus>>, ChainError> {
    const METHOD: &str = "getSignatureStatuses";
    let entries = result["value"]
        .as_array()
        .filter(|entries| entries.len() == expected)
        .ok_or_else(|| malformed(METHOD, format!("expected {expected} statuses")))?;
    entries
        .iter()
        .map(|entry| {
            if entry.is_null() {
                return Ok(None);
            }
            let confirmation = match entry["confirmationStatus"].as_str() {
                Some("finalized") => Confirmation::Finalized,
                Some("confirmed") => Confirmation::Confirmed,
                Some("processed") => Confirmation::Processed,
                other => return Err(malformed(METHOD, format!("confirmationStatus {other:?}"))),
            };
            Ok(Some(SignatureStatus {
                slot: entry["slot"].as_u64().unwrap_or(0),
                confirmation,
                err: (!entry["err"].is_null()).then(|| entry["err"].to_string()),
            }))
        })
        .collect()
}

/// `meta.preTokenBalances` and `meta.postTokenBalances` paired by account index; an account
/// the transaction created has no "pre" entry and started at zero.
fn parse_transaction(result: &Value) -> Result<Option<LandedTransaction>, ChainError> {
    const METHOD: &str = "getTransaction";
    if result.is_null() {
        return Ok(None);
    }
    let meta = &result["meta"];
    if !meta.is_object() {
        return Err(malformed(METHOD, "no meta"));
    }
    let balances = |field: &str| -> Result<Vec<PositionedBalance>, ChainError> {
        let entries = match &meta[field] {
            Value::Null => return Ok(Vec::new()),
            Value::Array(entries) => entries,
            _ => return Err(malformed(METHOD, format!("{field} is not a list"))),
        };
        entries
            .iter()
            .map(|entry| {
                let key = |name: &str| {
                    entry[name]
                        .as_str()
                        .and_then(|text| text.parse::<Pubkey>().ok())
                        .ok_or_else(|| malformed(METHOD, format!("{field} entry without {name}")))
                };
                let amount = entry["uiTokenAmount"]["amount"]
                    .as_str()
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| malformed(METHOD, format!("{field} entry without amount")))?;
                let position = entry["accountIndex"]
                    .as_u64()
                    .ok_or_else(|| malformed(METHOD, format!("{field} entry without index")))?;
                Ok(PositionedBalance {
                    position,
                    owner: key("owner")?,
                    mint: key("mint")?,
                    amount,
                })
            })
            .collect()
    };
    let token_balances = TokenBalanceChange::paired(
        &balances("preTokenBalances")?,
        balances("postTokenBalances")?,
    );
    Ok(Some(LandedTransaction {
        slot: result["slot"]
            .as_u64()
            .ok_or_else(|| malformed(METHOD, "no slot"))?,
        err: (!meta["err"].is_null()).then(|| meta["err"].to_string()),
        token_balances,
    }))
}

impl SolanaRpc for HttpRpc {
    fn latest_blockhash(&self) -> ChainFuture<'_, Blockhash> {
        Box::pin(async move {
            let result = self
                .call("getLatestBlockhash", json!([{ "commitment": "confirmed" }]))
                .await?;
            parse_blockhash(&result)
        })
    }

    fn send_transaction<'a>(&'a self, wire: &'a [u8]) -> ChainFuture<'a, Signature> {
        Box::pin(async move {
            let encoded = base64::engine::general_purpose::STANDARD.encode(wire);
            let result = self
                .call(
                    "sendTransaction",
                    json!([encoded, { "encoding": "base64", "preflightCommitment": "confirmed" }]),
                )
                .await?;
            result
                .as_str()
                .and_then(|text| text.parse::<Signature>().ok())
                .ok_or_else(|| malformed("sendTransaction", "no signature"))
        })
    }

    fn signature_statuses<'a>(
        &'a self,
        signatures: &'a [Signature],
    ) -> ChainFuture<'a, Vec<Option<SignatureStatus>>> {
        Box::pin(async move {
            let texts: Vec<String> = signatures.iter().map(Signature::to_string).collect();
            let result = self
                .call(
                    "getSignatureStatuses",
                    json!([texts, { "searchTransactionHistory": true }]),
                )
                .await?;
            parse_statuses(&result, signatures.len())
        })
    }

    fn block_height(&self) -> ChainFuture<'_, u64> {
        Box::pin(async move {
            self.call("getBlockHeight", json!([{ "commitment": "confirmed" }]))
                .await?
                .as_u64()
                .ok_or_else(|| malformed("getBlockHeight", "not a number"))
        })
    }

    fn transaction<'a>(
        &'a self,
        signature: &'a Signature,
    ) -> ChainFuture<'a, Option<LandedTransaction>> {
        Box::pin(async move {
            let result = self
                .call(
                    "getTransaction",
                    json!([signature.to_string(), { "encoding": "json",
                        "commitment": "confirmed", "maxSupportedTransactionVersion": 0 }]),
                )
                .await?;
            parse_transaction(&result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_results_and_specific_errors() {
        let ok = answer_of(
            "getBlockHeight",
            json!({ "jsonrpc": "2.0", "id": 1, "result": 42 }),
        );
        assert_eq!(ok, Ok(json!(42)));
        let preflight = answer_of(
            "sendTransaction",
            json!({ "error": { "code": -32002, "message": "Blockhash not found" } }),
        );
        assert_eq!(
            preflight,
            Err(ChainError::Rejected("Blockhash not found".into()))
        );
        let other = answer_of(
            "getBlockHeight",
            json!({ "error": { "code": -32005, "message": "node is behind" } }),
        );
        assert!(other
            .unwrap_err()
            .to_string()
            .contains("getBlockHeight: node is behind"));
        assert!(answer_of("getBlockHeight", json!({})).is_err());
    }

    #[test]
    fn statuses_and_blockhashes_parse_as_the_rpc_documents_them() {
        let statuses = parse_statuses(
            &json!({ "context": { "slot": 9 }, "value": [
                null,
                { "slot": 7, "confirmations": null, "err": null, "confirmationStatus": "finalized" },
                { "slot": 8, "confirmations": 1, "err": { "InstructionError": [0, "Custom"] }, "confirmationStatus": "confirmed" }
            ]}),
            3,
        )
        .unwrap();
        assert_eq!(statuses[0], None);
        assert_eq!(
            statuses[1].as_ref().unwrap().confirmation,
            Confirmation::Finalized
        );
        assert!(statuses[2]
            .as_ref()
            .unwrap()
            .err
            .as_deref()
            .unwrap()
            .contains("InstructionError"));
        assert!(parse_statuses(&json!({ "value": [] }), 1).is_err());
        let hash = Hash::new_from_array([7; 32]);
        let parsed = parse_blockhash(&json!({ "value": {
            "blockhash": hash.to_string(), "lastValidBlockHeight": 150 } }))
        .unwrap();
        assert_eq!(
            parsed,
            Blockhash {
                hash,
                last_valid_block_height: 150
            }
        );
    }

    #[test]
    fn transactions_parse_as_the_rpc_documents_them() {
        let (payer, treasury) = (Pubkey::new_unique(), Pubkey::new_unique());
        let mint = Pubkey::new_unique();
        let balance = |index: u64, owner: &Pubkey, amount: &str| {
            json!({ "accountIndex": index, "mint": mint.to_string(), "owner": owner.to_string(),
                "programId": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
                "uiTokenAmount": { "amount": amount, "decimals": 6, "uiAmount": 1.0,
                    "uiAmountString": "1" } })
        };
        // The treasury's account is created by the transaction: no "pre" entry.
        let landed = parse_transaction(&json!({ "slot": 44, "blockTime": null,
            "meta": { "err": null, "fee": 5000,
                "preTokenBalances": [balance(1, &payer, "9000000")],
                "postTokenBalances": [balance(1, &payer, "7000000"), balance(2, &treasury, "2000000")] },
            "transaction": {} }))
        .unwrap()
        .unwrap();
        assert_eq!(landed.slot, 44);
        assert_eq!(landed.err, None);
        assert_eq!(landed.received(&treasury, &mint), 2_000_000);
        assert_eq!(landed.received(&payer, &mint), -2_000_000);
        assert_eq!(landed.received(&treasury, &Pubkey::new_unique()), 0);
        assert_eq!(parse_transaction(&Value::Null), Ok(None));
        let failed = parse_transaction(&json!({ "slot": 45,
            "meta": { "err": { "InstructionError": [0, { "Custom": 1 }] } } }))
        .unwrap()
        .unwrap();
        assert!(failed.err.unwrap().contains("InstructionError"));
        let bad_amount = json!({ "slot": 46, "meta": { "err": null,
            "postTokenBalances": [{ "accountIndex": 1, "mint": mint.to_string(),
                "owner": treasury.to_string(), "uiTokenAmount": { "amount": 5 } }] } });
        assert!(parse_transaction(&bad_amount)
            .unwrap_err()
            .to_string()
            .contains("without amount"));
    }
}
