//! Countries (ISO 3166-1) with a representative point for the explorer's map. The table ships in
//! `data/countries.csv` (derived from `world-countries`, ODbL; see `data/README.md`).

const COUNTRIES_CSV: &str = include_str!("../data/countries.csv");

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
    COUNTRIES_CSV
        .lines()
        .skip(1)
        .any(|line| line.split(',').next() == Some(code))
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
    fn the_table_has_the_countries_a_fleet_lives_in() {
        let all = super::all();
        assert!(all.len() >= 240, "{}", all.len());
        let name_of = |code: &str| all.iter().find(|c| c.code == code).map(|c| c.name.as_str());
        assert_eq!(name_of("DE"), Some("Germany"));
        assert_eq!(name_of("US"), Some("United States"));
    }
}
