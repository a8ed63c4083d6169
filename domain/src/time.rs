//! UTC instants as milliseconds since the Unix epoch, with the RFC 3339 form that Sign-In With
//! Solana messages carry. Written here (not pulled from a date crate) because the domain needs only
//! this one exact format, in WASM and on the server.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a UTC time of the form 2026-11-25T08:00:00.000Z")]
pub struct TimeParseError(pub String);

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl UnixMillis {
    pub fn plus_seconds(self, seconds: i64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, min, s, ms) = (
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000,
        );
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }

    /// Accepts `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only; fractions beyond milliseconds are cut).
    pub fn parse_rfc3339(text: &str) -> Result<UnixMillis, TimeParseError> {
        let err = || TimeParseError(text.to_owned());
        let b = text.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
            let part = text.get(range).ok_or_else(err)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let (y, mo, d, h, mi, s) = (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        );
        let rest = &text[19..];
        let millis = match rest.strip_suffix('Z').ok_or_else(err)? {
            "" => 0,
            fraction => {
                let digits = fraction.strip_prefix('.').ok_or_else(err)?;
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(err());
                }
                format!("{:0<3}", &digits[..digits.len().min(3)])
                    .parse::<i64>()
                    .map_err(|_| err())?
            }
        };
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || s > 59
        {
            return Err(err());
        }
        let days = days_from_civil(y, mo, d);
        Ok(UnixMillis(
            days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + millis,
        ))
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithms (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(UnixMillis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_795_600_000_123).to_rfc3339(),
            "2026-11-25T09:46:40.123Z"
        );
        assert_eq!(
            UnixMillis(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_with_and_without_fraction() {
        assert_eq!(
            UnixMillis::parse_rfc3339("1970-01-01T00:00:01Z"),
            Ok(UnixMillis(1000))
        );
        assert_eq!(
            UnixMillis::parse_rfc3339("1970-01-01T00:00:00.5Z"),
            Ok(UnixMillis(500))
        );
    }

    #[test]
    fn rejects_non_utc_and_impossible_dates() {
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-25T08:00:00+01:00",
            "2026-11-25 08:00:00Z",
            "2026-13-01T00:00:00Z",
            "x",
        ] {
            assert!(UnixMillis::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in -62_000_000_000_000i64..253_000_000_000_000) {
            let t = UnixMillis(ms);
            prop_assert_eq!(UnixMillis::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        }
    }
}
