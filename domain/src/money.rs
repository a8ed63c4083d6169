//! Money as integer micro-USD (6 decimals, like USDC) and the network token in base units
//! (also 6 decimals). Never floats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of US dollars in millionths. Arithmetic is checked: overflow is an error, not a wrap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct MicroUsd(i64);

pub const MICROS_PER_USD: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error(
        "'{0}' is not an amount in dollars (expected digits with at most 6 decimals, e.g. 2.49)"
    )]
    Malformed(String),
    #[error("amount is too large")]
    Overflow,
    #[error("'{0}' is not an amount of {TOKEN_SYMBOL} (expected digits with at most 6 decimals, e.g. 12.5)")]
    MalformedTokens(String),
    #[error("'{0}' is not an asset (expected usdc or token)")]
    UnknownAsset(String),
    #[error("a token price must be more than zero (got {0} micro-USD)")]
    NotAPrice(i64),
}

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    pub const fn from_micros(micros: i64) -> Self {
        MicroUsd(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses a decimal dollar amount such as `2.49` or `-0.000001` exactly, without floats.
    pub fn parse_decimal(text: &str) -> Result<Self, MoneyError> {
        let malformed = || MoneyError::Malformed(text.to_owned());
        let trimmed = text.trim();
        let (negative, digits) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 6 {
            return Err(malformed());
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let fraction_micros: i64 = format!("{fraction:0<6}").parse().map_err(|_| malformed())?;
        let micros = whole
            .checked_mul(MICROS_PER_USD)
            .and_then(|w| w.checked_add(fraction_micros))
            .ok_or(MoneyError::Overflow)?;
        Ok(MicroUsd(if negative { -micros } else { micros }))
    }

    pub fn checked_add(self, other: MicroUsd) -> Option<MicroUsd> {
        self.0.checked_add(other.0).map(MicroUsd)
    }

    pub fn checked_sub(self, other: MicroUsd) -> Option<MicroUsd> {
        self.0.checked_sub(other.0).map(MicroUsd)
    }

    pub fn checked_mul(self, factor: i64) -> Option<MicroUsd> {
        self.0.checked_mul(factor).map(MicroUsd)
    }
}

/// Shows dollars with cents, rounding half away from zero only for display (`$2.49`).
impl fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let cents = (abs + 5_000) / 10_000;
        write!(f, "{sign}${}.{:02}", cents / 100, cents % 100)
    }
}

/// What the ledger counts: each account holds a balance per asset, and every transfer moves
/// one asset, so each asset's accounts sum to zero on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Asset {
    /// US dollars as USDC, in micro-USD ([`MicroUsd`]).
    Usdc,
    /// The network token, in base units ([`Tokens`]): block rewards and token payments.
    Token,
}

impl Asset {
    pub const ALL: [Asset; 2] = [Asset::Usdc, Asset::Token];

    pub fn as_str(self) -> &'static str {
        match self {
            Asset::Usdc => "usdc",
            Asset::Token => "token",
        }
    }

    pub fn parse(text: &str) -> Result<Asset, MoneyError> {
        Asset::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| MoneyError::UnknownAsset(text.to_owned()))
    }

    /// Parses a decimal amount of this asset (`12.5`) into base units, exactly.
    pub fn parse_amount(self, text: &str) -> Result<i64, MoneyError> {
        match self {
            Asset::Usdc => MicroUsd::parse_decimal(text).map(MicroUsd::micros),
            Asset::Token => Tokens::parse_decimal(text).map(Tokens::units),
        }
    }

    /// An asset by name (`usdc`, `token`) and a decimal amount of it, in base units: what the
    /// claim and deposit forms and their API twins send.
    pub fn parse_with_amount(asset: &str, amount: &str) -> Result<(Asset, i64), MoneyError> {
        let asset = Asset::parse(asset)?;
        Ok((asset, asset.parse_amount(amount)?))
    }

    /// Shows `units` of this asset the way people read it (`$2.49`, `12.5 GCT`).
    pub fn show(self, units: i64) -> String {
        match self {
            Asset::Usdc => MicroUsd::from_micros(units).to_string(),
            Asset::Token => Tokens::from_units(units).to_string(),
        }
    }
}

/// The network token's symbol, as wallets show it.
pub const TOKEN_SYMBOL: &str = "GCT";
pub const TOKEN_UNITS_PER_TOKEN: i64 = 1_000_000;

/// An amount of the network token in base units (6 decimals).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Tokens(i64);

impl Tokens {
    pub const ZERO: Tokens = Tokens(0);

    pub const fn from_units(units: i64) -> Tokens {
        Tokens(units)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    /// Parses a decimal token amount such as `1000` or `0.5` exactly.
    pub fn parse_decimal(text: &str) -> Result<Tokens, MoneyError> {
        // Same digits and scale as dollars; only the unit differs.
        MicroUsd::parse_decimal(text)
            .map(|m| Tokens(m.micros()))
            .map_err(|e| match e {
                MoneyError::Malformed(t) => MoneyError::MalformedTokens(t),
                other => other,
            })
    }
}

/// Every decimal that matters, without trailing zeros (`12.5 GCT`, `0.000001 GCT`).
impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / TOKEN_UNITS_PER_TOKEN as u64;
        let fraction = abs % TOKEN_UNITS_PER_TOKEN as u64;
        if fraction == 0 {
            write!(f, "{sign}{whole} {TOKEN_SYMBOL}")
        } else {
            let digits = format!("{fraction:06}");
            write!(
                f,
                "{sign}{whole}.{} {TOKEN_SYMBOL}",
                digits.trim_end_matches('0')
            )
        }
    }
}

/// What one whole token is worth in US dollars, as the operator sets it: the rate at which the
/// platform takes the token for a cluster and gives it back in that cluster's refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TokenPrice(MicroUsd);

impl TokenPrice {
    /// A price of more than zero.
    pub fn new(per_token: MicroUsd) -> Result<TokenPrice, MoneyError> {
        if per_token.micros() <= 0 {
            return Err(MoneyError::NotAPrice(per_token.micros()));
        }
        Ok(TokenPrice(per_token))
    }

    /// Parses dollars per token (`0.5`).
    pub fn parse_decimal(text: &str) -> Result<TokenPrice, MoneyError> {
        TokenPrice::new(MicroUsd::parse_decimal(text)?)
    }

    pub fn per_token(self) -> MicroUsd {
        self.0
    }

    /// The tokens that pay `usd`, rounded up: the platform never takes less than the price.
    pub fn tokens_to_pay(self, usd: MicroUsd) -> Result<Tokens, MoneyError> {
        let scaled = i128::from(usd.micros()) * i128::from(TOKEN_UNITS_PER_TOKEN);
        let price = i128::from(self.0.micros());
        let units = (scaled + price - 1).div_euclid(price);
        i64::try_from(units)
            .map(Tokens)
            .map_err(|_| MoneyError::Overflow)
    }

    /// The tokens a refund of `usd` returns, rounded down: refunds of what was paid at this
    /// price never add up to more tokens than were paid.
    pub fn tokens_returned(self, usd: MicroUsd) -> Tokens {
        let scaled = i128::from(usd.micros()) * i128::from(TOKEN_UNITS_PER_TOKEN);
        // At most the tokens paid for `usd`, which fit an i64.
        Tokens(scaled.div_euclid(i128::from(self.0.micros())) as i64)
    }
}

/// Every decimal that matters (`$0.125 per GCT`): a price is not rounded to cents.
impl fmt::Display for TokenPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.micros();
        let fraction = format!("{:06}", micros % MICROS_PER_USD);
        let fraction = fraction.trim_end_matches('0');
        let fraction = format!("{fraction:0<2}");
        write!(
            f,
            "${}.{fraction} per {TOKEN_SYMBOL}",
            micros / MICROS_PER_USD
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_dollar_amounts_exactly() {
        assert_eq!(MicroUsd::parse_decimal("2.49").unwrap().micros(), 2_490_000);
        assert_eq!(MicroUsd::parse_decimal("0.000001").unwrap().micros(), 1);
        assert_eq!(MicroUsd::parse_decimal("-1").unwrap().micros(), -1_000_000);
        assert_eq!(MicroUsd::parse_decimal("12.").unwrap().micros(), 12_000_000);
    }

    #[test]
    fn rejects_malformed_amounts_with_the_input_in_the_message() {
        for bad in ["", ".5", "1.2.3", "1,5", "abc", "1.0000001", "1e3"] {
            let err = MicroUsd::parse_decimal(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert_eq!(
            MicroUsd::parse_decimal("99999999999999999"),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn displays_dollars_and_cents() {
        assert_eq!(MicroUsd::from_micros(2_490_000).to_string(), "$2.49");
        assert_eq!(MicroUsd::from_micros(-1_005_000).to_string(), "-$1.01");
        assert_eq!(MicroUsd::ZERO.to_string(), "$0.00");
    }

    #[test]
    fn token_amounts_show_every_decimal_that_matters() {
        assert_eq!(Tokens::from_units(12_500_000).to_string(), "12.5 GCT");
        assert_eq!(Tokens::from_units(1).to_string(), "0.000001 GCT");
        assert_eq!(Tokens::from_units(-3_000_000).to_string(), "-3 GCT");
        assert_eq!(Tokens::parse_decimal("0.5").unwrap().units(), 500_000);
        assert!(Tokens::parse_decimal("x")
            .unwrap_err()
            .to_string()
            .contains("GCT"));
        assert_eq!(Asset::parse("token").unwrap(), Asset::Token);
        assert!(Asset::parse("sol")
            .unwrap_err()
            .to_string()
            .contains("'sol'"));
        assert_eq!(Asset::Usdc.show(2_490_000), "$2.49");
    }

    #[test]
    fn token_prices_convert_dollars_without_losing_a_unit() {
        let price = TokenPrice::parse_decimal("0.125").unwrap();
        assert_eq!(price.to_string(), "$0.125 per GCT");
        assert_eq!(
            TokenPrice::parse_decimal("2").unwrap().to_string(),
            "$2.00 per GCT"
        );
        // $1 buys 8 GCT at $0.125.
        let dollar = MicroUsd::from_micros(1_000_000);
        assert_eq!(
            price.tokens_to_pay(dollar),
            Ok(Tokens::from_units(8_000_000))
        );
        assert_eq!(price.tokens_returned(dollar), Tokens::from_units(8_000_000));
        // A third of a unit is paid in full and never returned.
        let odd = TokenPrice::parse_decimal("3").unwrap();
        assert_eq!(
            odd.tokens_to_pay(MicroUsd::from_micros(1)),
            Ok(Tokens::from_units(1))
        );
        assert_eq!(odd.tokens_returned(MicroUsd::from_micros(1)), Tokens::ZERO);
        assert_eq!(
            TokenPrice::parse_decimal("0"),
            Err(MoneyError::NotAPrice(0))
        );
        assert!(TokenPrice::parse_decimal("-1").is_err());
        let tiny = TokenPrice::new(MicroUsd::from_micros(1)).unwrap();
        assert_eq!(
            tiny.tokens_to_pay(MicroUsd::from_micros(i64::MAX / 2)),
            Err(MoneyError::Overflow)
        );
    }

    proptest! {
        /// Whatever a cluster's refunds, they return no more tokens than its payment took, and
        /// the tokens paid are worth at least the dollars asked.
        #[test]
        fn refunds_never_return_more_tokens_than_were_paid(
            price in 1i64..100_000_000,
            paid in 0i64..1_000_000_000_000,
            cuts in proptest::collection::vec(0i64..1_000, 0..6),
        ) {
            let price = TokenPrice::new(MicroUsd::from_micros(price)).unwrap();
            let tokens = price.tokens_to_pay(MicroUsd::from_micros(paid)).unwrap();
            let worth = i128::from(tokens.units()) * i128::from(price.per_token().micros());
            prop_assert!(worth >= i128::from(paid) * i128::from(TOKEN_UNITS_PER_TOKEN));
            // Refunds are parts of what was paid, in dollars.
            let total_cut: i64 = cuts.iter().sum::<i64>().max(1);
            let returned: i64 = cuts
                .iter()
                .map(|c| price.tokens_returned(MicroUsd::from_micros(paid / total_cut * c)).units())
                .sum();
            prop_assert!(returned <= tokens.units());
        }

        #[test]
        fn display_of_whole_cents_round_trips_through_parse(cents in -10_000_000_000i64..10_000_000_000) {
            let amount = MicroUsd::from_micros(cents * 10_000);
            let shown = amount.to_string().replace('$', "");
            prop_assert_eq!(MicroUsd::parse_decimal(&shown).unwrap(), amount);
        }
    }
}
