//! Server-side services of GPU Commons over one store (SQLite or PostgreSQL): sign-in and
//! sessions (`auth`), the network read models and demo fleet (`fleet`), the Worker tab
//! (`worker`) and the agent API with the live fleet (`agents`). The `app` server functions and
//! the `server` JSON API call these; neither writes SQL.

pub mod agents;
pub mod api_keys;
pub mod auth;
pub mod compliance;
pub mod deposits;
mod error;
pub mod explorer;
pub mod fleet;
mod hires;
mod idempotency;
mod index;
pub mod ledger;
mod lifecycle;
mod live;
pub mod metrics;
pub mod output;
pub mod payouts;
pub mod provisioning;
pub mod replicas;
pub mod rewards;
mod rows;
mod secret;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tunnels;
mod uptime;
pub mod worker;

pub use error::{AgentRefusal, Error, SignInRefusal};

use std::sync::Arc;

use agents::{AgentService, FleetConfig};
use api_keys::ApiKeyService;
use auth::{AuthConfig, AuthService};
use compliance::ComplianceService;
use deposits::DepositService;
use explorer::ExplorerService;
use fleet::FleetService;
use ledger::LedgerService;
use output::OutputService;
use payouts::{PayoutService, SolanaAccess};
use provisioning::{ProvisioningConfig, ProvisioningService};
use rewards::{RewardsConfig, RewardsService};
use store::Store;
use worker::{WorkerConfig, WorkerService};

#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub auth: AuthConfig,
    pub worker: WorkerConfig,
    pub fleet: FleetConfig,
    pub provisioning: ProvisioningConfig,
    pub rewards: RewardsConfig,
    /// What payouts are paid with; None runs without payouts (claims are refused).
    pub solana_access: Option<Arc<SolanaAccess>>,
}

/// All services behind one shared pointer: the web framework clones this for every request
/// and every extractor, so a clone is one reference count.
#[derive(Clone)]
pub struct Platform(Arc<Services>);

pub struct Services {
    pub store: Store,
    pub auth: AuthService,
    pub fleet: FleetService,
    pub worker: WorkerService,
    pub agents: AgentService,
    pub provisioning: ProvisioningService,
    pub ledger: LedgerService,
    pub rewards: RewardsService,
    pub payouts: PayoutService,
    pub deposits: DepositService,
    pub explorer: ExplorerService,
    pub api_keys: ApiKeyService,
    pub output: OutputService,
    pub tunnels: tunnels::TunnelService,
    pub compliance: ComplianceService,
    pub replicas: replicas::ReplicaService,
}

impl Platform {
    /// The services over one store. The live fleet and the fleet index start empty: call
    /// [`AgentService::rebuild`] before serving.
    pub fn new(store: Store, config: PlatformConfig) -> Platform {
        // Parsed once; the services share it.
        let catalog = domain::catalog::GpuCatalog::builtin();
        let live = Arc::new(live::LiveFleet::new());
        let tunnel_origin = config.provisioning.tunnel_origin.clone();
        let index = Arc::new(index::FleetIndex::new(catalog.clone()));
        let provisioning = ProvisioningService::new(
            store.clone(),
            live.clone(),
            index.clone(),
            catalog.clone(),
            config.provisioning,
        );
        let worker = WorkerService::new(store.clone(), live.clone(), index.clone(), config.worker);
        let rewards = RewardsService::new(store.clone(), catalog.clone(), config.rewards);
        let compliance = ComplianceService::new(store.clone(), index.clone());
        let replicas = replicas::ReplicaService::new(store.clone());
        Platform(Arc::new(Services {
            auth: AuthService::new(store.clone(), config.auth),
            fleet: FleetService::new(store.clone(), index.clone(), catalog.clone()),
            explorer: ExplorerService::new(
                store.clone(),
                index.clone(),
                worker.clone(),
                rewards.clone(),
                compliance.clone(),
                catalog.clone(),
            ),
            worker,
            compliance,
            agents: AgentService::new(
                store.clone(),
                live,
                index,
                catalog.clone(),
                config.fleet,
                provisioning.clone(),
                replicas.clone(),
            ),
            provisioning,
            ledger: LedgerService::new(store.clone()),
            rewards,
            payouts: PayoutService::new(store.clone(), config.solana_access.clone()),
            deposits: DepositService::new(store.clone(), config.solana_access),
            api_keys: ApiKeyService::new(store.clone()),
            output: OutputService::new(store.clone()),
            tunnels: tunnels::TunnelService::new(store.clone(), tunnel_origin),
            replicas,
            store,
        }))
    }
}

/// Rows the money pages list at most.
const STATEMENT_LINES: u32 = 500;
/// Days the earnings charts cover.
const EARNINGS_DAYS: i64 = 30;

impl Services {
    /// A renter's balances and movements (`/cloud/billing`).
    pub async fn billing(&self, user_id: i64) -> Result<domain::ledger::Billing, Error> {
        let account = domain::ledger::Account::UserAvailable(user_id);
        Ok(domain::ledger::Billing {
            available: self.ledger.balance(&account).await?,
            available_tokens: self.ledger.tokens(&account).await?,
            lines: self.ledger.statement(&account, STATEMENT_LINES).await?,
        })
    }

    /// A provider's balances, hire earnings, block rewards and movements (`/worker/earnings`).
    pub async fn earnings(
        &self,
        owner: &domain::wallet::WalletAddress,
        now: domain::time::UnixMillis,
    ) -> Result<domain::rewards::ProviderEarnings, Error> {
        let wallet = owner.as_str();
        use domain::ledger::{daily_series, Account};
        use domain::money::Asset;
        let account = Account::ProviderClaimable(wallet.to_owned());
        let since = domain::time::UnixMillis(now.0 - EARNINGS_DAYS * 86_400_000);
        let daily = |asset| self.ledger.daily_credits(&account, asset, since);
        let (hire_days, reward_days) = (daily(Asset::Usdc).await?, daily(Asset::Token).await?);
        let (hired_earned, hired_forfeited) = self.provisioning.hire_totals(wallet).await?;
        Ok(domain::rewards::ProviderEarnings {
            claimable: self.ledger.balance(&account).await?,
            claimable_tokens: self.ledger.tokens(&account).await?,
            held_tokens: self
                .ledger
                .tokens(&Account::ProviderHeld(wallet.to_owned()))
                .await?,
            hired_earned,
            hired_forfeited,
            hires: self
                .provisioning
                .hires_of(wallet, None, STATEMENT_LINES)
                .await?,
            rewards: self.rewards.rewards_of(wallet, STATEMENT_LINES).await?,
            payments: self.ledger.statement(&account, STATEMENT_LINES).await?,
            daily_hire: daily_series(&hire_days, now.0, EARNINGS_DAYS),
            daily_rewards: daily_series(&reward_days, now.0, EARNINGS_DAYS),
        })
    }
}

impl std::ops::Deref for Platform {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The wall clock as the services count time: UTC milliseconds.
pub fn now() -> domain::time::UnixMillis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    domain::time::UnixMillis(ms)
}
