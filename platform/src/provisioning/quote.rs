//! Quotes: the price of an order and whether it can be placed now (honest fillability),
//! and the options the deploy wizard offers for one kind of hardware.

use domain::allocator::{self, Asked, Want};
use domain::cluster::{
    CountrySupply, DeployOptions, DeployOrder, DeployRequest, Hardware, HardwareOffer,
    PaymentMethod, QuoteAnswer, SecurityCompliance,
};
use domain::money::{MicroUsd, TokenPrice, TOKEN_SYMBOL};
use domain::pricing::{self, Quote};
use rustc_hash::FxHashMap;

use super::deploy::name_taken;
use super::place::Placing;
use super::ProvisioningService;
use crate::Error;

impl ProvisioningService {
    pub(super) fn rate(&self, hardware: &Hardware) -> MicroUsd {
        match hardware {
            Hardware::Cpu => pricing::CPU_DEVICE_PRICE_PER_HOUR,
            Hardware::Gpu(name) => self
                .catalog
                .by_name(name)
                .map_or(MicroUsd::ZERO, |m| m.default_price_per_hour),
        }
    }

    pub(super) fn order(&self, request: &DeployRequest) -> Result<DeployOrder, Error> {
        request
            .validate(&self.catalog)
            .map_err(Error::InvalidFields)
    }

    /// The price of `request` and whether it can be placed now, from the fleet index alone.
    pub fn quote(&self, request: &DeployRequest) -> Result<QuoteAnswer, Error> {
        let started = std::time::Instant::now();
        let answer = self.answer_quote(request)?;
        crate::metrics::quoted(started.elapsed(), answer.fillability.fillable);
        Ok(answer)
    }

    /// [`Self::quote`], uncounted (a deploy that cannot be placed says why with it).
    pub(super) fn answer_quote(&self, request: &DeployRequest) -> Result<QuoteAnswer, Error> {
        let order = self.order(request)?;
        let cells = self.index.free_supply(&order.hardware, order.compliance);
        let want = Placing::of(&order).want;
        // Reasons name the attestation with the hardware: "0 HIPAA-attested H100 … GPUs".
        let hardware = match order.compliance {
            c if c.needs_attestation() => {
                format!("{}-attested {}", c.label(), order.hardware.as_str())
            }
            _ => order.hardware.as_str().to_owned(),
        };
        let mut asked = Asked {
            hardware: &hardware,
            unit_name: order.hardware.unit_name(),
            want,
            countries: &order.countries,
            min_tier: order.min_tier,
        };
        let mut fillability = allocator::fillability(&cells, &asked);
        if !fillability.fillable && order.compliance.needs_attestation() {
            // What the same order finds without the attestation, so the renter can weigh it.
            asked.hardware = order.hardware.as_str();
            let all = self
                .index
                .free_supply(&order.hardware, SecurityCompliance::E2eEncrypted);
            if allocator::fillability(&all, &asked).fillable {
                fillability.reasons.push(format!(
                    "without {} attestation it can be placed now (end-to-end encrypted)",
                    order.compliance.label()
                ));
            }
        }
        let units = match want {
            Want::Exactly(n) => n,
            Want::Everything => fillability.placeable,
        };
        let quote = self.order_quote(&order, units)?;
        Ok(QuoteAnswer { quote, fillability })
    }

    /// The price clusters paid in the network token are paid at; none: USDC only.
    pub fn token_price(&self) -> Option<TokenPrice> {
        self.config.token_price
    }

    /// What `units` of `order`'s hardware cost for its hours, as the renter pays it now.
    pub(super) fn order_quote(&self, order: &DeployOrder, units: u32) -> Result<Quote, Error> {
        self.priced(
            pricing::quote(
                self.rate(&order.hardware),
                units,
                order.hours(),
                order.payment,
            ),
            self.token_price(),
        )
    }

    /// `quote` as the renter pays it: in tokens at `price` when paying in the token, which
    /// needs a price.
    pub(super) fn priced(
        &self,
        quote: Result<Quote, pricing::PriceOverflow>,
        price: Option<TokenPrice>,
    ) -> Result<Quote, Error> {
        let quote = quote.map_err(|e| Error::Invalid(e.to_string()))?;
        match (quote.payment, price) {
            (PaymentMethod::Usdc, _) => Ok(quote),
            (PaymentMethod::Token, Some(price)) => quote
                .priced_in_tokens(price)
                .map_err(|e| Error::Invalid(e.to_string())),
            (PaymentMethod::Token, None) => {
                Err(Error::InvalidFields(vec![domain::cluster::FieldError {
                    field: "payment".into(),
                    message: format!(
                        "paying in {TOKEN_SYMBOL} is not offered here: the operator has set no \
                         token price; pay in USDC"
                    ),
                }]))
            }
        }
    }

    /// Every catalog model and CPU with its free units and price (most free first), and the
    /// countries that have free units of `hardware` (none while it is empty).
    pub fn deploy_options(&self, hardware: &str) -> Result<DeployOptions, Error> {
        let free: FxHashMap<Hardware, u64> =
            self.index.free_units_by_hardware().into_iter().collect();
        let mut offers: Vec<HardwareOffer> = self
            .catalog
            .models()
            .iter()
            .map(|m| Hardware::Gpu(m.name.clone()))
            .chain([Hardware::Cpu])
            .map(|h| HardwareOffer {
                free_units: free.get(&h).copied().unwrap_or(0),
                rate_per_unit_hour: self.rate(&h),
                hardware: h.as_str().to_owned(),
            })
            .collect();
        offers.sort_by_key(|o| std::cmp::Reverse(o.free_units));
        let mut by_country: FxHashMap<String, u64> = FxHashMap::default();
        let cells = match hardware.trim() {
            // Nothing chosen yet: the hardware list alone.
            "" => Vec::new(),
            text => {
                let chosen = Hardware::parse(text, &self.catalog).map_err(Error::Invalid)?;
                self.index
                    .free_supply(&chosen, SecurityCompliance::E2eEncrypted)
            }
        };
        for cell in cells {
            *by_country.entry(cell.country).or_default() += cell.devices * u64::from(cell.units);
        }
        let mut countries: Vec<CountrySupply> = by_country
            .into_iter()
            .map(|(code, free_units)| CountrySupply {
                name: domain::country::name_of(&code).unwrap_or_else(|| code.clone()),
                code,
                free_units,
            })
            .collect();
        countries.sort_by(|a, b| b.free_units.cmp(&a.free_units).then(a.name.cmp(&b.name)));
        // Then every other country, by name, so the wizard can offer any of them.
        let mut others: Vec<CountrySupply> = domain::country::all()
            .into_iter()
            .filter(|c| !countries.iter().any(|free| free.code == c.code))
            .map(|c| CountrySupply {
                code: c.code,
                name: c.name,
                free_units: 0,
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        countries.extend(others);
        Ok(DeployOptions {
            hardware: offers,
            countries,
            token_price: self.token_price(),
        })
    }

    /// Whether the renter can still use `name` for a new cluster.
    pub async fn name_available(&self, user_id: i64, name: &str) -> Result<bool, Error> {
        let name = domain::cluster::parse_cluster_name(name).map_err(Error::Invalid)?;
        let mut conn = self.store.pool().acquire().await?;
        Ok(!name_taken(&mut conn, user_id, &name).await?)
    }
}
