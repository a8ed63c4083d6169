//! [`SolanaRpc`] over litesvm: an in-process Solana runtime that runs the real SPL Token and
//! Associated Token Account programs, so tests check balances on chain instead of assuming
//! them. Block height and blockhash expiry are modelled here (a new blockhash every block, each
//! valid for 150 blocks; one block per sent transaction, more on demand), and seeded faults can
//! lose requests, sends and answers, delay transactions and crash the caller.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use litesvm::LiteSVM;
use solana_account::Account;
use solana_hash::Hash;
use solana_program_option::COption;
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;
use spl_token_interface::state::{Account as TokenAccount, AccountState, Mint};

use crate::rpc::{
    Blockhash, ChainFuture, Confirmation, LandedTransaction, PositionedBalance, SignatureStatus,
    SolanaRpc, TokenBalanceChange,
};
use crate::transfer::{associated_token_address, TokenMint};
use crate::ChainError;

/// Blocks a blockhash stays valid for, as on Solana.
const BLOCKHASH_VALIDITY: u64 = 150;

/// Faults injected into calls, each with a chance in a thousand, drawn from a seeded sequence
/// so a failing run can be replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// A call is lost before it reaches the node (nothing happens).
    pub lost_request_permille: u32,
    /// A `sendTransaction` is lost before it reaches the node (on top of the above).
    pub lost_send_permille: u32,
    /// A call takes effect but its answer is lost.
    pub lost_answer_permille: u32,
    /// The caller crashes during the call (it panics), before or after the call took effect.
    pub crash_permille: u32,
    /// A sent transaction is accepted but lands only with the next block (if its blockhash is
    /// still valid then), as when the leader gets it late.
    pub delayed_permille: u32,
}

pub struct LiteSvmRpc {
    state: Mutex<State>,
}

struct State {
    svm: LiteSVM,
    block_height: u64,
    valid_until: HashMap<Hash, u64>,
    faults: Faults,
    random: u64,
    /// Transactions that ran successfully.
    landed: usize,
    /// Accepted transactions that have not reached a block yet, with the height they land at.
    in_flight: Vec<(VersionedTransaction, u64)>,
    /// What each transaction that reached a block did to token balances (`getTransaction`).
    history: HashMap<Signature, LandedTransaction>,
}

impl State {
    fn request_lost(&mut self) -> bool {
        let permille = self.faults.lost_request_permille;
        self.chance(permille)
    }

    fn answer_lost(&mut self) -> bool {
        let permille = self.faults.lost_answer_permille;
        self.chance(permille)
    }

    fn delayed(&mut self) -> bool {
        let permille = self.faults.delayed_permille;
        self.chance(permille)
    }

    fn send_lost(&mut self) -> bool {
        let permille = self.faults.lost_send_permille;
        self.chance(permille)
    }

    /// Panics (an injected crash of the caller) now and then.
    fn maybe_crash(&mut self, when: &str) {
        let permille = self.faults.crash_permille;
        if self.chance(permille) {
            panic!("injected crash {when}");
        }
    }

    /// splitmix64: a small seeded sequence, enough to place faults reproducibly.
    fn next(&mut self, below: u64) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z % below.max(1)
    }

    fn chance(&mut self, permille: u32) -> bool {
        permille > 0 && self.next(1000) < u64::from(permille)
    }

    fn lost(&self, what: &str) -> ChainError {
        ChainError::Unreachable {
            url: "litesvm".into(),
            reason: format!("{what} lost (injected fault)"),
        }
    }

    fn valid(&self, transaction: &VersionedTransaction) -> bool {
        self.valid_until
            .get(transaction.message.recent_blockhash())
            .is_some_and(|until| self.block_height <= *until)
    }

    /// The token accounts among `keys`, with their positions there.
    fn token_accounts(&self, keys: &[Pubkey]) -> Vec<PositionedBalance> {
        keys.iter()
            .zip(0u64..)
            .filter_map(|(key, position)| {
                let account = self.svm.get_account(key)?;
                if account.owner != spl_token_interface::ID {
                    return None;
                }
                let token = TokenAccount::unpack(&account.data).ok()?;
                Some(PositionedBalance {
                    position,
                    owner: token.owner,
                    mint: token.mint,
                    amount: token.amount,
                })
            })
            .collect()
    }

    /// Runs a transaction now and records what it did, as a node does for `getTransaction`.
    fn execute(&mut self, transaction: VersionedTransaction) -> Result<(), ChainError> {
        let signature = transaction.signatures[0];
        let keys = transaction.message.static_account_keys().to_vec();
        let before = self.token_accounts(&keys);
        let outcome = self.svm.send_transaction(transaction);
        self.landed += usize::from(outcome.is_ok());
        // A repeat of a landed signature is refused without running; keep the first record.
        if !self.history.contains_key(&signature) && self.svm.get_transaction(&signature).is_some()
        {
            let token_balances = TokenBalanceChange::paired(&before, self.token_accounts(&keys));
            let landed = LandedTransaction {
                slot: self.block_height,
                err: outcome.as_ref().err().map(|failed| failed.err.to_string()),
                token_balances,
            };
            self.history.insert(signature, landed);
        }
        outcome
            .map(|_| ())
            .map_err(|failed| ChainError::Rejected(failed.err.to_string()))
    }

    fn advance(&mut self, blocks: u64) {
        for _ in 0..blocks {
            self.block_height += 1;
            // Every block has a new blockhash; older ones stay valid for their 150 blocks.
            self.svm.expire_blockhash();
            // What was in flight lands when its block comes, if it still can.
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(_, at)| *at <= self.block_height);
            self.in_flight = later;
            for (transaction, _) in due {
                if self.valid(&transaction) {
                    let _ = self.execute(transaction);
                }
            }
        }
    }
}

impl Default for LiteSvmRpc {
    fn default() -> Self {
        LiteSvmRpc::new(0, Faults::default())
    }
}

impl LiteSvmRpc {
    /// A fresh runtime with the standard SPL programs; `seed` places the `faults`.
    pub fn new(seed: u64, faults: Faults) -> LiteSvmRpc {
        // The blockhash check is this wrapper's (with block heights), not litesvm's.
        let svm = LiteSVM::new().with_blockhash_check(false);
        LiteSvmRpc {
            state: Mutex::new(State {
                svm,
                block_height: 1,
                valid_until: HashMap::new(),
                faults,
                random: seed,
                landed: 0,
                in_flight: Vec::new(),
                history: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock already failed; its state is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Gives `address` SOL for fees and rent.
    pub fn airdrop(&self, address: &Pubkey, lamports: u64) {
        let mut state = self.state();
        let before = state.svm.get_balance(address).unwrap_or(0);
        let account = Account {
            lamports: before + lamports,
            data: Vec::new(),
            owner: solana_pubkey::Pubkey::default(),
            executable: false,
            rent_epoch: 0,
        };
        // Setting a system account cannot fail.
        let _ = state.svm.set_account(*address, account);
    }

    /// A new token mint with `decimals` (no mint authority: supply comes from [`Self::mint_to`]).
    pub fn create_mint(&self, decimals: u8) -> TokenMint {
        self.create_mint_at(Pubkey::new_unique(), decimals)
    }

    /// A new token mint at `address` (to match a server configured with that mint).
    pub fn create_mint_at(&self, address: Pubkey, decimals: u8) -> TokenMint {
        self.write_mint(address, decimals, 0);
        TokenMint { address, decimals }
    }

    fn write_mint(&self, address: Pubkey, decimals: u8, supply: u64) {
        let mint = Mint {
            mint_authority: COption::None,
            supply,
            decimals,
            is_initialized: true,
            freeze_authority: COption::None,
        };
        let mut data = vec![0; Mint::LEN];
        mint.pack_into_slice(&mut data);
        self.write_token_program_account(address, data);
    }

    fn write_token_program_account(&self, address: Pubkey, data: Vec<u8>) {
        let mut state = self.state();
        let lamports = state.svm.minimum_balance_for_rent_exemption(data.len());
        let account = Account {
            lamports,
            data,
            owner: spl_token_interface::ID,
            executable: false,
            rent_epoch: 0,
        };
        let _ = state.svm.set_account(address, account);
    }

    /// Puts `amount` of `mint` into `owner`'s associated token account (created if missing).
    pub fn mint_to(&self, owner: &Pubkey, mint: &TokenMint, amount: u64) {
        let ata = associated_token_address(owner, &mint.address);
        let held = self.token_balance(owner, mint);
        let supply = self.read::<Mint>(&mint.address).map_or(0, |m| m.supply);
        let account = TokenAccount {
            mint: mint.address,
            owner: *owner,
            amount: held + amount,
            delegate: COption::None,
            state: AccountState::Initialized,
            is_native: COption::None,
            delegated_amount: 0,
            close_authority: COption::None,
        };
        let mut data = vec![0; TokenAccount::LEN];
        account.pack_into_slice(&mut data);
        self.write_token_program_account(ata, data);
        self.write_mint(mint.address, mint.decimals, supply + amount);
    }

    fn read<T: Pack + solana_program_pack::IsInitialized>(&self, address: &Pubkey) -> Option<T> {
        let account = self.state().svm.get_account(address)?;
        T::unpack(&account.data).ok()
    }

    /// What `owner`'s associated token account holds of `mint` (0 when it has none).
    pub fn token_balance(&self, owner: &Pubkey, mint: &TokenMint) -> u64 {
        self.read::<TokenAccount>(&associated_token_address(owner, &mint.address))
            .map_or(0, |a| a.amount)
    }

    /// Lets `blocks` blocks pass (blockhashes older than 150 blocks expire).
    pub fn advance_blocks(&self, blocks: u64) {
        self.state().advance(blocks);
    }

    /// Transactions that landed successfully so far.
    pub fn landed(&self) -> usize {
        self.state().landed
    }
}

impl SolanaRpc for LiteSvmRpc {
    fn latest_blockhash(&self) -> ChainFuture<'_, Blockhash> {
        Box::pin(async move {
            let mut state = self.state();
            if state.request_lost() {
                return Err(state.lost("getLatestBlockhash"));
            }
            let hash = state.svm.latest_blockhash();
            let height = state.block_height;
            let last_valid_block_height = *state
                .valid_until
                .entry(hash)
                .or_insert(height + BLOCKHASH_VALIDITY);
            Ok(Blockhash {
                hash,
                last_valid_block_height,
            })
        })
    }

    fn send_transaction<'a>(&'a self, wire: &'a [u8]) -> ChainFuture<'a, Signature> {
        Box::pin(async move {
            let mut state = self.state();
            state.maybe_crash("before sendTransaction");
            if state.request_lost() || state.send_lost() {
                return Err(state.lost("sendTransaction"));
            }
            let transaction: VersionedTransaction = bincode::deserialize(wire)
                .map_err(|e| ChainError::Rejected(format!("not a transaction: {e}")))?;
            let signature = transaction.signatures[0];
            if !state.valid(&transaction) {
                return Err(ChainError::Rejected("Blockhash not found".into()));
            }
            let outcome = if state.delayed() {
                let lands_at = state.block_height + 1 + state.next(4);
                state.in_flight.push((transaction, lands_at));
                Ok(())
            } else {
                let outcome = state.execute(transaction);
                state.advance(1);
                outcome
            };
            state.maybe_crash("after sendTransaction");
            if state.answer_lost() {
                return Err(state.lost("the answer to sendTransaction"));
            }
            outcome.map(|()| signature)
        })
    }

    fn signature_statuses<'a>(
        &'a self,
        signatures: &'a [Signature],
    ) -> ChainFuture<'a, Vec<Option<SignatureStatus>>> {
        Box::pin(async move {
            let mut state = self.state();
            state.maybe_crash("before getSignatureStatuses");
            if state.request_lost() {
                return Err(state.lost("getSignatureStatuses"));
            }
            let statuses = signatures
                .iter()
                .map(|signature| {
                    state
                        .svm
                        .get_transaction(signature)
                        .map(|result| SignatureStatus {
                            slot: state.block_height,
                            confirmation: Confirmation::Finalized,
                            err: result.as_ref().err().map(|failed| failed.err.to_string()),
                        })
                })
                .collect();
            state.maybe_crash("after getSignatureStatuses");
            if state.answer_lost() {
                return Err(state.lost("the answer to getSignatureStatuses"));
            }
            Ok(statuses)
        })
    }

    fn block_height(&self) -> ChainFuture<'_, u64> {
        Box::pin(async move {
            let mut state = self.state();
            if state.request_lost() {
                return Err(state.lost("getBlockHeight"));
            }
            Ok(state.block_height)
        })
    }

    fn transaction<'a>(
        &'a self,
        signature: &'a Signature,
    ) -> ChainFuture<'a, Option<LandedTransaction>> {
        Box::pin(async move {
            let mut state = self.state();
            if state.request_lost() {
                return Err(state.lost("getTransaction"));
            }
            let landed = state.history.get(signature).cloned();
            if state.answer_lost() {
                return Err(state.lost("the answer to getTransaction"));
            }
            Ok(landed)
        })
    }
}

/// A landed transaction in the shape of Solana's `getTransaction` answer (`json` encoding):
/// the parts the platform reads, token balances paired by account position.
fn transaction_json(landed: &LandedTransaction) -> serde_json::Value {
    use serde_json::json;
    let balances = |amount: fn(&TokenBalanceChange) -> u64| -> Vec<serde_json::Value> {
        landed
            .token_balances
            .iter()
            .enumerate()
            .map(|(index, change)| {
                json!({ "accountIndex": index, "mint": change.mint.to_string(),
                    "owner": change.owner.to_string(),
                    "programId": spl_token_interface::ID.to_string(),
                    "uiTokenAmount": { "amount": amount(change).to_string() } })
            })
            .collect()
    };
    json!({ "slot": landed.slot, "blockTime": null, "meta": {
        "err": landed.err, "preTokenBalances": balances(|c| c.before),
        "postTokenBalances": balances(|c| c.after) } })
}

/// Serves `rpc` as a Solana JSON-RPC endpoint (the four methods of [`SolanaRpc`]) on
/// `listener` until the task is dropped, so the platform's HTTP client talks to it as to a
/// cluster.
pub async fn serve_json_rpc(
    rpc: std::sync::Arc<LiteSvmRpc>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/", axum::routing::post(answer_json_rpc))
        .route("/health", axum::routing::get(|| async { "ok" }))
        .with_state(rpc);
    axum::serve(listener, app).await
}

async fn answer_json_rpc(
    axum::extract::State(rpc): axum::extract::State<std::sync::Arc<LiteSvmRpc>>,
    axum::Json(call): axum::Json<serde_json::Value>,
) -> axum::Json<serde_json::Value> {
    use base64::Engine;
    use serde_json::json;
    let id = call["id"].clone();
    let params = &call["params"];
    let slot = rpc.state().block_height;
    let result: Result<serde_json::Value, ChainError> = match call["method"].as_str() {
        Some("getLatestBlockhash") => rpc.latest_blockhash().await.map(|b| {
            json!({ "context": { "slot": slot }, "value": {
                "blockhash": b.hash.to_string(), "lastValidBlockHeight": b.last_valid_block_height } })
        }),
        Some("getBlockHeight") => rpc.block_height().await.map(|h| json!(h)),
        Some("sendTransaction") => {
            match params[0]
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
            {
                Some(wire) => rpc.send_transaction(&wire).await.map(|s| json!(s.to_string())),
                None => Err(ChainError::Rejected("expected a base64 transaction".into())),
            }
        }
        Some("getSignatureStatuses") => {
            let signatures: Option<Vec<Signature>> = params[0].as_array().and_then(|list| {
                list.iter()
                    .map(|s| s.as_str().and_then(|s| s.parse().ok()))
                    .collect()
            });
            match signatures {
                Some(signatures) => rpc.signature_statuses(&signatures).await.map(|statuses| {
                    let value: Vec<serde_json::Value> = statuses
                        .into_iter()
                        .map(|status| match status {
                            None => serde_json::Value::Null,
                            Some(s) => json!({ "slot": s.slot, "confirmations": null,
                                "err": s.err, "confirmationStatus": "finalized" }),
                        })
                        .collect();
                    json!({ "context": { "slot": slot }, "value": value })
                }),
                None => Err(ChainError::Rejected("expected a list of signatures".into())),
            }
        }
        Some("getTransaction") => match params[0].as_str().and_then(|s| s.parse().ok()) {
            Some(signature) => rpc
                .transaction(&signature)
                .await
                .map(|landed| landed.as_ref().map_or(serde_json::Value::Null, transaction_json)),
            None => Err(ChainError::Rejected("expected a signature".into())),
        },
        // A faucet, as devnet's: SOL for fees.
        Some("requestAirdrop") => match (
            params[0].as_str().and_then(|a| a.parse::<Pubkey>().ok()),
            params[1].as_u64(),
        ) {
            (Some(address), Some(lamports)) => {
                rpc.airdrop(&address, lamports);
                Ok(json!(Signature::default().to_string()))
            }
            _ => Err(ChainError::Rejected("expected an address and lamports".into())),
        },
        // Local only: tokens of an existing mint for a wallet, so demos and tests can deposit.
        Some("localMintTo") => match (
            params[0].as_str().and_then(|a| a.parse::<Pubkey>().ok()),
            params[1].as_str().and_then(|a| a.parse::<Pubkey>().ok()),
            params[2].as_u64(),
        ) {
            (Some(owner), Some(mint), Some(amount)) => match rpc.read::<Mint>(&mint) {
                Some(m) => {
                    let mint = TokenMint { address: mint, decimals: m.decimals };
                    rpc.mint_to(&owner, &mint, amount);
                    Ok(json!(rpc.token_balance(&owner, &mint)))
                }
                None => Err(ChainError::Rejected(format!("no mint {mint}"))),
            },
            _ => Err(ChainError::Rejected("expected an owner, a mint and an amount".into())),
        },
        other => {
            return axum::Json(json!({ "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": format!("Method not found: {other:?}") } }))
        }
    };
    axum::Json(match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(ChainError::Rejected(message)) => json!({ "jsonrpc": "2.0", "id": id,
            "error": { "code": -32002, "message": message } }),
        Err(other) => json!({ "jsonrpc": "2.0", "id": id,
            "error": { "code": -32603, "message": other.to_string() } }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::payout_transfer;
    use solana_keypair::Keypair;
    use solana_signer::Signer;

    #[tokio::test]
    async fn a_payout_moves_real_tokens_once_and_expires_with_its_blockhash() {
        let rpc = LiteSvmRpc::default();
        let treasury = Keypair::new();
        rpc.airdrop(&treasury.pubkey(), 1_000_000_000);
        let usdc = rpc.create_mint(6);
        rpc.mint_to(&treasury.pubkey(), &usdc, 10_000_000);
        let provider = Pubkey::new_unique();

        let blockhash = rpc.latest_blockhash().await.unwrap();
        let payout =
            payout_transfer(&treasury, &usdc, &provider, 2_500_000, blockhash.hash).unwrap();
        assert_eq!(
            rpc.send_transaction(&payout.wire).await,
            Ok(payout.signature)
        );
        assert_eq!(rpc.token_balance(&provider, &usdc), 2_500_000);
        assert_eq!(rpc.token_balance(&treasury.pubkey(), &usdc), 7_500_000);
        // The same bytes again change nothing.
        assert!(rpc.send_transaction(&payout.wire).await.is_err());
        assert_eq!(rpc.token_balance(&provider, &usdc), 2_500_000);
        let status = rpc.signature_statuses(&[payout.signature]).await.unwrap();
        assert_eq!(status[0].as_ref().unwrap().err, None);

        // A transfer signed with a blockhash that has expired can never land.
        let stale = payout_transfer(&treasury, &usdc, &provider, 1, blockhash.hash).unwrap();
        rpc.advance_blocks(BLOCKHASH_VALIDITY + 1);
        assert!(rpc.block_height().await.unwrap() > blockhash.last_valid_block_height);
        assert_eq!(
            rpc.send_transaction(&stale.wire).await,
            Err(ChainError::Rejected("Blockhash not found".into()))
        );
        assert_eq!(
            rpc.signature_statuses(&[stale.signature]).await.unwrap(),
            [None]
        );

        // More than the treasury holds fails on chain and moves nothing.
        let fresh = rpc.latest_blockhash().await.unwrap();
        let too_much = payout_transfer(&treasury, &usdc, &provider, 8_000_000, fresh.hash).unwrap();
        assert!(matches!(
            rpc.send_transaction(&too_much.wire).await,
            Err(ChainError::Rejected(_))
        ));
        let failed = rpc.signature_statuses(&[too_much.signature]).await.unwrap();
        assert!(failed[0].as_ref().unwrap().err.is_some());
        assert_eq!(rpc.token_balance(&provider, &usdc), 2_500_000);
        let recorded = rpc.transaction(&too_much.signature).await.unwrap().unwrap();
        assert!(recorded.err.is_some());
        assert_eq!(recorded.received(&provider, &usdc.address), 0);
        // The first transfer's record is kept through the refused repeat.
        let first = rpc.transaction(&payout.signature).await.unwrap().unwrap();
        assert_eq!(first.received(&provider, &usdc.address), 2_500_000);
    }

    #[tokio::test]
    async fn the_http_client_pays_through_the_json_rpc_endpoint() {
        use crate::rpc::HttpRpc;
        let chain = std::sync::Arc::new(LiteSvmRpc::default());
        let treasury = Keypair::new();
        chain.airdrop(&treasury.pubkey(), 1_000_000_000);
        let usdc = chain.create_mint(6);
        chain.mint_to(&treasury.pubkey(), &usdc, 5_000_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(serve_json_rpc(chain.clone(), listener));

        let rpc = HttpRpc::new(&url).unwrap();
        let provider = Pubkey::new_unique();
        let blockhash = rpc.latest_blockhash().await.unwrap();
        assert!(blockhash.last_valid_block_height > rpc.block_height().await.unwrap());
        let payout =
            payout_transfer(&treasury, &usdc, &provider, 1_500_000, blockhash.hash).unwrap();
        assert_eq!(
            rpc.send_transaction(&payout.wire).await,
            Ok(payout.signature)
        );
        let statuses = rpc
            .signature_statuses(&[payout.signature, Signature::default()])
            .await
            .unwrap();
        assert_eq!(
            statuses[0].as_ref().unwrap().confirmation,
            Confirmation::Finalized
        );
        assert_eq!(statuses[1], None);
        assert_eq!(chain.token_balance(&provider, &usdc), 1_500_000);
        // What landed, as the node recorded it: the provider's new account gained exactly
        // what the treasury's lost.
        let landed = rpc.transaction(&payout.signature).await.unwrap().unwrap();
        assert_eq!(landed.err, None);
        assert_eq!(landed.received(&provider, &usdc.address), 1_500_000);
        assert_eq!(
            landed.received(&treasury.pubkey(), &usdc.address),
            -1_500_000
        );
        assert_eq!(rpc.transaction(&Signature::default()).await, Ok(None));
        let again = rpc.send_transaction(&payout.wire).await.unwrap_err();
        assert!(matches!(again, ChainError::Rejected(_)), "{again}");
    }
}
