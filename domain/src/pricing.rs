//! Prices of clusters: the quote a renter sees before paying, exact to the micro-dollar. Fees are
//! in basis points and rounded half up once per line, so the lines always add up to the total.

use serde::{Deserialize, Serialize};

use crate::fleet::named_enum;
use crate::money::{MicroUsd, TokenPrice, Tokens};

named_enum!(
    /// How the renter pays: USDC carries a 2% fee, the network token none (DESIGN.md §3).
    PaymentMethod, "payment method", { Usdc => "usdc", Token => "token" }
);

impl PaymentMethod {
    /// The asset the renter's balance pays in.
    pub fn asset(self) -> crate::money::Asset {
        match self {
            PaymentMethod::Usdc => crate::money::Asset::Usdc,
            PaymentMethod::Token => crate::money::Asset::Token,
        }
    }
}

/// 0.25% on every cluster order (DESIGN.md §3).
pub const RESERVATION_FEE_BPS: i64 = 25;
/// 2% when paying in USDC, none in the network token.
pub const USDC_FEE_BPS: i64 = 200;
/// 0.25% taken from provider hire earnings.
pub const PROVIDER_FEE_BPS: i64 = 25;
/// Commitment discounts: 5% from one day, 10% from one week.
const DISCOUNTS: [(u32, i64); 2] = [(168, 1_000), (24, 500)];
/// The hourly price of one CPU device, which the GPU catalog does not cover.
pub const CPU_DEVICE_PRICE_PER_HOUR: MicroUsd = MicroUsd::from_micros(60_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub rate_per_unit_hour: MicroUsd,
    pub units: u32,
    pub hours: u32,
    pub unit_hours: u64,
    pub subtotal: MicroUsd,
    /// Subtracted from the subtotal.
    pub discount: MicroUsd,
    pub discount_bps: i64,
    pub reservation_fee: MicroUsd,
    pub payment_fee: MicroUsd,
    pub payment: PaymentMethod,
    pub total: MicroUsd,
    /// When paying in the network token: the total in tokens and the price that made it.
    pub in_tokens: Option<TokenTotal>,
}

/// A total paid in the network token: the dollars converted at the operator's price, rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenTotal {
    pub tokens: Tokens,
    pub price: TokenPrice,
}

impl Quote {
    /// What the renter pays, as they pay it: `$12.34`, or `24.68 GCT ($12.34 at $0.50 per GCT)`.
    pub fn shown_total(&self) -> String {
        match self.in_tokens {
            None => self.total.to_string(),
            Some(t) => format!("{} ({} at {})", t.tokens, self.total, t.price),
        }
    }

    /// The same quote paid in the network token at `price` (unchanged for USDC).
    pub fn priced_in_tokens(self, price: TokenPrice) -> Result<Quote, PriceOverflow> {
        if self.payment != PaymentMethod::Token {
            return Ok(self);
        }
        let tokens = price.tokens_to_pay(self.total).map_err(|_| PriceOverflow)?;
        Ok(Quote {
            in_tokens: Some(TokenTotal { tokens, price }),
            ..self
        })
    }

    /// What the providers' time costs after the discount: the part held in escrow while the
    /// cluster runs (the fees go to the platform at once).
    pub fn escrow(&self) -> MicroUsd {
        MicroUsd::from_micros(self.subtotal.micros() - self.discount.micros())
    }

    pub fn fees(&self) -> MicroUsd {
        MicroUsd::from_micros(self.reservation_fee.micros() + self.payment_fee.micros())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the order is too large to price")]
pub struct PriceOverflow;

/// `amount × bps / 10 000`, rounded half up; amounts are never negative here.
pub fn basis_points(amount: MicroUsd, bps: i64) -> MicroUsd {
    let scaled = (i128::from(amount.micros()) * i128::from(bps) + 5_000) / 10_000;
    MicroUsd::from_micros(scaled as i64)
}

/// The provider fee on `gross` hire earnings: what settlement moves to the platform.
pub fn provider_fee(gross: MicroUsd) -> MicroUsd {
    basis_points(gross, PROVIDER_FEE_BPS)
}

/// What a provider keeps of `gross` hire earnings, after the provider fee.
pub fn provider_share(gross: MicroUsd) -> MicroUsd {
    MicroUsd::from_micros(gross.micros() - provider_fee(gross).micros())
}

/// A rate in basis points as people read it: 25 → "0.25%", 200 → "2%", 9_975 → "99.75%".
pub fn percent_text(bps: i64) -> String {
    let (whole, hundredths) = (bps / 100, (bps % 100).abs());
    match hundredths {
        0 => format!("{whole}%"),
        h if h % 10 == 0 => format!("{whole}.{}%", h / 10),
        h => format!("{whole}.{h:02}%"),
    }
}

/// `amount × numerator / denominator`, rounded down, for pro-rata shares (`numerator ≤ denominator`).
pub fn share(amount: MicroUsd, numerator: i64, denominator: i64) -> MicroUsd {
    if denominator <= 0 {
        return MicroUsd::ZERO;
    }
    let part = i128::from(amount.micros()) * i128::from(numerator.clamp(0, denominator))
        / i128::from(denominator);
    MicroUsd::from_micros(part as i64)
}

/// Splits `amount` (at most the caps' sum) in proportion to `caps`: none exceeds its cap and
/// the parts add up to `amount` (see [`split_by_weights`]).
pub fn split_within(amount: MicroUsd, caps: &[MicroUsd]) -> Vec<MicroUsd> {
    let weights: Vec<i64> = caps.iter().map(|c| c.micros()).collect();
    let most = MicroUsd::from_micros(weights.iter().sum());
    split_by_weights(amount.min(most), &weights)
}

/// Splits `amount` in proportion to `weights`: each part its pro-rata share of what is left,
/// rounded down, the last the remainder, so the parts add up to `amount` exactly and (for an
/// amount up to the weights' sum) none exceeds its weight.
fn split_by_weights(amount: MicroUsd, weights: &[i64]) -> Vec<MicroUsd> {
    let mut left = amount;
    let mut weight_left: i64 = weights.iter().sum();
    weights
        .iter()
        .map(|&weight| {
            let part = if weight == weight_left {
                left
            } else {
                share(left, weight, weight_left)
            };
            left = MicroUsd::from_micros(left.micros() - part.micros());
            weight_left -= weight;
            part
        })
        .collect()
}

/// Splits `amount` over devices by their units: each gets its pro-rata share rounded down and
/// the last one the remainder, so the parts add up to `amount` exactly.
pub fn split_by_units(amount: MicroUsd, units: &[u32]) -> Vec<MicroUsd> {
    let weights: Vec<i64> = units.iter().map(|&u| i64::from(u)).collect();
    split_by_weights(amount, &weights)
}

/// The part of a device's escrow `budget` earned by `until`, the budget being spread evenly
/// over its hire from `start` to `end` (all UTC ms). Never more than the budget.
pub fn accrued(budget: MicroUsd, start: i64, until: i64, end: i64) -> MicroUsd {
    if end <= start {
        return budget;
    }
    share(budget, until.saturating_sub(start), end - start)
}

/// What the time a cluster served before its renter ended it early costs: `served_ms` of
/// `units` at `rate`, discounted as a booking of that long would have been (begun hours count
/// whole for the tier), never more than `escrowed` (what the booking put aside for its whole
/// time). Booking a week for its discount and stopping after a day so costs the day's rate.
pub fn early_end_cost(rate: MicroUsd, units: u32, served_ms: i64, escrowed: MicroUsd) -> MicroUsd {
    let served_ms = served_ms.max(0);
    let begun_hours = u32::try_from((served_ms + crate::time::HOUR_MS - 1) / crate::time::HOUR_MS)
        .unwrap_or(u32::MAX);
    let kept_bps = i128::from(10_000 - discount_bps(begun_hours.max(1)));
    let cost = i128::from(rate.micros()) * i128::from(units) * i128::from(served_ms) * kept_bps
        / (i128::from(crate::time::HOUR_MS) * 10_000);
    MicroUsd::from_micros(cost.min(i128::from(escrowed.micros())) as i64)
}

pub fn discount_bps(hours: u32) -> i64 {
    DISCOUNTS
        .iter()
        .find(|(from, _)| hours >= *from)
        .map_or(0, |(_, bps)| *bps)
}

/// Prices `units` for `hours` at `rate` per unit-hour.
pub fn quote(
    rate: MicroUsd,
    units: u32,
    hours: u32,
    payment: PaymentMethod,
) -> Result<Quote, PriceOverflow> {
    let unit_hours = u64::from(units) * u64::from(hours);
    let subtotal = i64::try_from(unit_hours)
        .ok()
        .and_then(|uh| rate.checked_mul(uh))
        .ok_or(PriceOverflow)?;
    let discount_bps = discount_bps(hours);
    let discount = basis_points(subtotal, discount_bps);
    let discounted = subtotal.checked_sub(discount).ok_or(PriceOverflow)?;
    let reservation_fee = basis_points(discounted, RESERVATION_FEE_BPS);
    let payment_fee = match payment {
        PaymentMethod::Usdc => basis_points(discounted, USDC_FEE_BPS),
        PaymentMethod::Token => MicroUsd::ZERO,
    };
    let total = discounted
        .checked_add(reservation_fee)
        .and_then(|t| t.checked_add(payment_fee))
        .ok_or(PriceOverflow)?;
    Ok(Quote {
        rate_per_unit_hour: rate,
        units,
        hours,
        unit_hours,
        subtotal,
        discount,
        discount_bps,
        reservation_fee,
        payment_fee,
        payment,
        total,
        in_tokens: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_read_as_percentages_and_the_provider_keeps_the_rest() {
        assert_eq!(percent_text(RESERVATION_FEE_BPS), "0.25%");
        assert_eq!(percent_text(USDC_FEE_BPS), "2%");
        assert_eq!(percent_text(10_000 - PROVIDER_FEE_BPS), "99.75%");
        assert_eq!(percent_text(50), "0.5%");
        assert_eq!(percent_text(1_000), "10%");
        let gross = MicroUsd::from_micros(2_490_002);
        assert_eq!(provider_fee(gross).micros(), 6_225);
        assert_eq!(
            provider_share(gross).micros() + provider_fee(gross).micros(),
            gross.micros()
        );
    }

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over random bookings and stop times: the time used never costs less than at the
        /// rate a booking of that length has (so a long booking stopped early is not a
        /// cheaper short one), never less than the booking's own pro-rata price, and never
        /// more than the booking put aside.
        #[test]
        fn an_early_end_is_never_cheaper_than_booking_the_time_used(
            rate in 1_000i64..50_000_000,
            units in 1u32..64,
            booked in 1u32..=2_160,
            served_permille in 0i64..=1_000,
        ) {
            let rate = MicroUsd::from_micros(rate);
            let booking = quote(rate, units, booked, PaymentMethod::Usdc).unwrap();
            let booked_ms = i64::from(booked) * crate::time::HOUR_MS;
            let served = booked_ms * served_permille / 1_000;
            let cost = early_end_cost(rate, units, served, booking.escrow());
            let used_hours =
                u32::try_from((served + crate::time::HOUR_MS - 1) / crate::time::HOUR_MS).unwrap().max(1);
            let short = quote(rate, units, used_hours, PaymentMethod::Usdc).unwrap();
            // The short booking's escrow, pro rata to the time served (rounding: a micro-dollar),
            // unless that is more than the whole booking put aside: near a week's end, 160 h at
            // the daily discount cost more than the week at the weekly one, and the renter, who
            // paid for the week, pays the week.
            let short_rate = share(short.escrow(), served, i64::from(used_hours) * crate::time::HOUR_MS)
                .min(booking.escrow());
            prop_assert!(cost.micros() + 1 >= short_rate.micros(), "{cost} < {short_rate}");
            // Its own discount rounds half up once: a micro-dollar either way.
            prop_assert!(cost.micros() + 1 >= share(booking.escrow(), served, booked_ms).micros());
            prop_assert!(cost <= booking.escrow());
        }
    }
    #[test]
    fn a_split_within_caps_adds_up_and_respects_each_cap() {
        let caps = [7, 0, 5, 1].map(MicroUsd::from_micros);
        for amount in 0..=13 {
            let parts = split_within(MicroUsd::from_micros(amount), &caps);
            assert_eq!(parts.iter().map(|p| p.micros()).sum::<i64>(), amount);
            assert!(parts.iter().zip(&caps).all(|(p, c)| p <= c), "{parts:?}");
        }
    }

    #[test]
    fn an_early_end_costs_the_time_served_at_its_own_tier() {
        let rate = MicroUsd::from_micros(2_000_000);
        let week = quote(rate, 2, 168, PaymentMethod::Usdc).unwrap();
        // A day of a week's booking: the day's 5%, not the week's 10%.
        let day = early_end_cost(rate, 2, 24 * crate::time::HOUR_MS, week.escrow());
        assert_eq!(
            day,
            quote(rate, 2, 24, PaymentMethod::Usdc).unwrap().escrow()
        );
        // Half an hour: the hourly rate, pro rata.
        let half = early_end_cost(rate, 2, crate::time::HOUR_MS / 2, week.escrow());
        assert_eq!(half, MicroUsd::from_micros(2_000_000));
        // Never more than was put aside.
        let all = early_end_cost(rate, 2, 1_000 * crate::time::HOUR_MS, week.escrow());
        assert_eq!(all, week.escrow());
    }

    #[test]
    fn a_usdc_quote_lists_every_fee() {
        // 8 GPUs × 2 days at $2.49: 384 GPU-hours.
        let q = quote(MicroUsd::from_micros(2_490_000), 8, 48, PaymentMethod::Usdc).unwrap();
        assert_eq!(q.unit_hours, 384);
        assert_eq!(q.subtotal.micros(), 956_160_000);
        assert_eq!(q.discount.micros(), 47_808_000); // 5% for a day or more
        assert_eq!(q.escrow().micros(), 908_352_000);
        assert_eq!(q.reservation_fee.micros(), 2_270_880);
        assert_eq!(q.payment_fee.micros(), 18_167_040);
        assert_eq!(q.total.micros(), 928_789_920);
    }

    #[test]
    fn the_token_pays_no_payment_fee_and_short_orders_no_discount() {
        let q = quote(MicroUsd::from_micros(1_000_000), 1, 3, PaymentMethod::Token).unwrap();
        assert_eq!(
            (q.discount, q.payment_fee),
            (MicroUsd::ZERO, MicroUsd::ZERO)
        );
        assert_eq!(q.total.micros(), 3_007_500);
        assert_eq!(discount_bps(168), 1_000);
        // $3.0075 at $0.40 per GCT is 7.51875 GCT.
        let price = TokenPrice::parse_decimal("0.4").unwrap();
        let in_tokens = q.priced_in_tokens(price).unwrap().in_tokens.unwrap();
        assert_eq!(in_tokens.tokens, Tokens::from_units(7_518_750));
        assert_eq!(in_tokens.price, price);
        assert_eq!(
            q.priced_in_tokens(price).unwrap().shown_total(),
            "7.51875 GCT ($3.01 at $0.40 per GCT)"
        );
        let usdc = quote(MicroUsd::from_micros(1_000_000), 1, 3, PaymentMethod::Usdc).unwrap();
        assert_eq!(usdc.priced_in_tokens(price).unwrap().in_tokens, None);
    }

    #[test]
    fn shares_round_down_and_clamp() {
        assert_eq!(share(MicroUsd::from_micros(10), 1, 3).micros(), 3);
        assert_eq!(share(MicroUsd::from_micros(10), 5, 3).micros(), 10);
        assert_eq!(share(MicroUsd::from_micros(10), 1, 0), MicroUsd::ZERO);
    }

    #[test]
    fn escrow_accrues_evenly_over_the_hire() {
        let budget = MicroUsd::from_micros(3_600);
        assert_eq!(accrued(budget, 0, 900, 3_600).micros(), 900);
        assert_eq!(accrued(budget, 0, -5, 3_600), MicroUsd::ZERO);
        assert_eq!(accrued(budget, 0, 9_999, 3_600), budget);
        assert_eq!(accrued(budget, 10, 10, 10), budget);
        let parts = split_by_units(MicroUsd::from_micros(10), &[1, 1, 1]);
        assert_eq!(
            parts.iter().map(|p| p.micros()).collect::<Vec<_>>(),
            [3, 3, 4]
        );
    }

    #[test]
    fn absurd_orders_overflow_instead_of_wrapping() {
        assert_eq!(
            quote(
                MicroUsd::from_micros(i64::MAX / 2),
                1_024,
                2_160,
                PaymentMethod::Usdc
            ),
            Err(PriceOverflow)
        );
    }

    proptest! {
        #[test]
        fn lines_add_up_and_fees_are_what_the_rules_say(
            rate in 0i64..100_000_000, units in 1u32..1_025, hours in 1u32..2_161, usdc in any::<bool>()
        ) {
            let payment = if usdc { PaymentMethod::Usdc } else { PaymentMethod::Token };
            let q = quote(MicroUsd::from_micros(rate), units, hours, payment).unwrap();
            prop_assert_eq!(q.subtotal.micros(), rate * i64::from(units) * i64::from(hours));
            prop_assert_eq!(
                q.total.micros(),
                q.subtotal.micros() - q.discount.micros() + q.reservation_fee.micros() + q.payment_fee.micros()
            );
            prop_assert_eq!(q.escrow().micros() + q.fees().micros(), q.total.micros());
            let base = q.escrow().micros() as i128;
            prop_assert!((i128::from(q.reservation_fee.micros()) * 10_000 - base * 25).abs() <= 5_000);
            prop_assert!(q.discount <= q.subtotal && q.total >= q.escrow());
        }

        #[test]
        fn splits_add_up_exactly_and_follow_the_units(
            amount in 0i64..1_000_000_000_000, units in proptest::collection::vec(1u32..9, 1..40)
        ) {
            let parts = split_by_units(MicroUsd::from_micros(amount), &units);
            prop_assert_eq!(parts.len(), units.len());
            prop_assert_eq!(parts.iter().map(|p| p.micros()).sum::<i64>(), amount);
            let total: i64 = units.iter().map(|&u| i64::from(u)).sum();
            for (part, &u) in parts.iter().zip(&units) {
                prop_assert!(part.micros() >= 0);
                // Within one micro-dollar per device of the exact share, the remainder aside.
                let exact = i128::from(amount) * i128::from(u) / i128::from(total);
                prop_assert!((i128::from(part.micros()) - exact).abs() <= units.len() as i128);
            }
        }

        #[test]
        fn accrual_grows_with_time_and_never_passes_the_budget(
            budget in 0i64..1_000_000_000_000, start in 0i64..1_000_000, length in 1i64..1_000_000,
            a in -10i64..2_000_000, b in -10i64..2_000_000
        ) {
            let (early, late) = (a.min(b), a.max(b));
            let budget = MicroUsd::from_micros(budget);
            let end = start + length;
            let x = accrued(budget, start, start + early, end);
            let y = accrued(budget, start, start + late, end);
            prop_assert!(MicroUsd::ZERO <= x && x <= y && y <= budget);
            prop_assert_eq!(accrued(budget, start, end, end), budget);
        }
    }
}
