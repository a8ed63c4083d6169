//! Countries (ISO 3166-1) with a representative point for the explorer's map. The table ships in
//! `data/countries.csv` (derived from `world-countries`, ODbL; see `data/README.md`).

const COUNTRIES_CSV: &str = include_str!("../data/countries.csv");

/// The table's alpha-2 codes alone, space-separated in the table's order: what the browser needs
/// to check a request (the hydrate bundle then carries 750 bytes instead of the whole table). A
/// test keeps it equal to the table.
const CODES: &str = concat!(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ ",
    "BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR ",
    "CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR ",
    "GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ",
    "ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ ",
    "LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ ",
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF ",
    "PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI ",
    "SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR ",
    "TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW",
);

#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    pub code: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub region: String,
}

/// All countries, parsed once per call; callers keep the result.
pub fn all() -> Vec<Country> {
    COUNTRIES_CSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Names may contain commas inside quotes; the shipped file quotes none, so split plainly
            // and skip (rather than mis-read) any line that does not have exactly 7 fields.
            let f: Vec<&str> = line.split(',').collect();
            let [code, _iso3, name, lat, lon, region, _sub] = f[..] else {
                return None;
            };
            Some(Country {
                code: code.to_owned(),
                name: name.to_owned(),
                lat: lat.parse().ok()?,
                lon: lon.parse().ok()?,
                region: region.to_owned(),
            })
        })
        .collect()
}

/// Whether `code` is a known ISO alpha-2 code (upper case).
pub fn is_known(code: &str) -> bool {
    CODES.split(' ').any(|known| known == code)
}

/// The English name of an ISO alpha-2 code, if known.
pub fn name_of(code: &str) -> Option<String> {
    // A scan of the text, without parsing every row: callers look up one code at a time.
    COUNTRIES_CSV.lines().skip(1).find_map(|line| {
        let mut fields = line.split(',');
        let found = fields.next()?.eq_ignore_ascii_case(code);
        found.then(|| fields.nth(1).map(str::to_owned)).flatten()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_code_list_is_the_tables() {
        let table: Vec<&str> = super::COUNTRIES_CSV
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').next())
            .collect();
        let list: Vec<&str> = super::CODES.split(' ').collect();
        assert_eq!(list, table);
        assert!(super::is_known("DE") && super::is_known("ZW"));
        assert!(!super::is_known("XX") && !super::is_known("de") && !super::is_known(""));
    }

    #[test]
    fn the_table_has_the_countries_a_fleet_lives_in() {
        let all = super::all();
        assert!(all.len() >= 240, "{}", all.len());
        let name_of = |code: &str| all.iter().find(|c| c.code == code).map(|c| c.name.as_str());
        assert_eq!(name_of("DE"), Some("Germany"));
        assert_eq!(name_of("US"), Some("United States"));
    }
}
