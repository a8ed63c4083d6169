//! Reading rows by column name. Values the database keeps as text for a domain enum, as
//! integers for money or as sizes are decoded here once; a stored value that does not decode is
//! reported as corrupt data, naming the column.

use domain::money::MicroUsd;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::Error;

/// `column` of `row`, decoded by `parse` (a domain enum's `parse`, say).
pub(crate) fn enum_in<T, E: std::fmt::Display>(
    row: &AnyRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Error> {
    let text: &str = row.try_get(column)?;
    parse(text).map_err(|e| corrupt(column, e))
}

/// Like [`enum_in`], for a column that may be NULL.
pub(crate) fn optional_enum_in<T, E: std::fmt::Display>(
    row: &AnyRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    row.try_get::<Option<&str>, _>(column)?
        .map(parse)
        .transpose()
        .map_err(|e| corrupt(column, e))
}

/// A column holding JSON (a cluster's workload, say).
pub(crate) fn json_in<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<T, Error> {
    let text: &str = row.try_get(column)?;
    serde_json::from_str(text).map_err(|e| corrupt(column, e))
}

/// A money column (integer micro-dollars).
pub(crate) fn money_in(row: &AnyRow, column: &str) -> Result<MicroUsd, Error> {
    Ok(MicroUsd::from_micros(row.try_get(column)?))
}

/// A count or size column that must fit a `u32`.
pub(crate) fn u32_in(row: &AnyRow, column: &str) -> Result<u32, Error> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|e| corrupt(column, e))
}

pub(crate) fn corrupt(column: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{column}: {e}"))
}
