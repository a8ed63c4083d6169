//! Compliance attestations: the operator's list of certified facilities and the devices in
//! them (the `gpu-commons facility`, `attest` and `unattest` commands), read into the fleet
//! index so SOC 2 and HIPAA orders see only devices attested for that standard. The database
//! is the truth: the index is refreshed at start-up and by the fleet monitor, so a command run
//! in another process or a certification that lapses takes effect within a minute, and the
//! hiring transaction checks each device again.

use std::sync::Arc;

use domain::cluster::SecurityCompliance;
use domain::compliance::{Attestations, Facility};
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::index::FleetIndex;
use crate::store::{flag, flag_sql, Store};
use crate::Error;

/// A facility with how many devices are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityListing {
    pub facility: Facility,
    pub devices: i64,
}

const FACILITY_COLUMNS: &str = concat!(
    "f.name, ",
    flag_sql!("f.soc2" as "soc2"),
    ", ",
    flag_sql!("f.hipaa" as "hipaa"),
    ", f.certified_until"
);

fn facility_of(row: &sqlx::any::AnyRow) -> Result<Facility, Error> {
    Ok(Facility {
        name: row.try_get("name")?,
        standards: Attestations {
            soc2: flag(row, "soc2")?,
            hipaa: flag(row, "hipaa")?,
        },
        certified_until: UnixMillis(row.try_get("certified_until")?),
    })
}

#[derive(Clone)]
pub struct ComplianceService {
    store: Store,
    index: Arc<FleetIndex>,
}

impl ComplianceService {
    pub(crate) fn new(store: Store, index: Arc<FleetIndex>) -> ComplianceService {
        ComplianceService { store, index }
    }

    /// Records a facility, or changes its standards and date (its devices follow).
    pub async fn set_facility(&self, facility: &Facility, now: UnixMillis) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO facilities (name, soc2, hipaa, certified_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET soc2 = excluded.soc2, hipaa = excluded.hipaa, \
               certified_until = excluded.certified_until, updated_at = excluded.updated_at",
        )
        .bind(&facility.name)
        .bind(facility.standards.soc2)
        .bind(facility.standards.hipaa)
        .bind(facility.certified_until.0)
        .bind(now.0)
        .execute(self.store.pool())
        .await?;
        self.refresh(now).await?;
        Ok(())
    }

    /// Places `devices` in the facility `name`, all or none: each must exist and not be
    /// removed by its owner.
    pub async fn attest(
        &self,
        name: &str,
        devices: &[String],
        now: UnixMillis,
    ) -> Result<(), Error> {
        if devices.is_empty() {
            return Err(Error::Invalid("name at least one device to attest".into()));
        }
        let mut tx = self.store.begin_write().await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT name FROM facilities WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Err(Error::NotFound(format!(
                "no facility '{name}'; record it first with `gpu-commons facility`"
            )));
        }
        for device in devices {
            let placed = sqlx::query(
                "UPDATE devices SET facility = $1 WHERE id = $2 AND status <> 'terminated'",
            )
            .bind(name)
            .bind(device)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if placed == 0 {
                return Err(Error::NotFound(format!(
                    "no device '{device}' in service; nothing was attested"
                )));
            }
        }
        tx.commit().await?;
        self.refresh(now).await?;
        Ok(())
    }

    /// Takes `devices` out of their facilities; returns how many were in one.
    pub async fn unattest(&self, devices: &[String], now: UnixMillis) -> Result<u64, Error> {
        let mut tx = self.store.begin_write().await?;
        let mut removed = 0;
        for device in devices {
            removed += sqlx::query(
                "UPDATE devices SET facility = NULL WHERE id = $1 AND facility IS NOT NULL",
            )
            .bind(device)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        self.refresh(now).await?;
        Ok(removed)
    }

    /// Every facility, by name, with its devices in service.
    pub async fn facilities(&self) -> Result<Vec<FacilityListing>, Error> {
        sqlx::query(&format!(
            "SELECT {FACILITY_COLUMNS}, \
               (SELECT COUNT(*) FROM devices d WHERE d.facility = f.name AND d.status <> 'terminated') \
               AS devices \
             FROM facilities f ORDER BY f.name"
        ))
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(FacilityListing {
                facility: facility_of(row)?,
                devices: row.try_get("devices")?,
            })
        })
        .collect()
    }

    /// The facility `device` is in, if any (lapsed or not: the page says which).
    pub async fn facility_of_device(&self, device: &str) -> Result<Option<Facility>, Error> {
        let mut conn = self.store.pool().acquire().await?;
        facility_holding(&mut conn, device).await
    }

    /// Reads what every device is attested for at `now` into the fleet index; returns how many
    /// devices are attested.
    pub async fn refresh(&self, now: UnixMillis) -> Result<usize, Error> {
        let rows = sqlx::query(&format!(
            "SELECT d.id, {FACILITY_COLUMNS} FROM devices d JOIN facilities f ON f.name = d.facility \
             WHERE d.status <> 'terminated' AND f.certified_until > $1"
        ))
        .bind(now.0)
        .fetch_all(self.store.pool())
        .await?;
        let mut attested = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let standards = Attestations {
                soc2: flag(row, "soc2")?,
                hipaa: flag(row, "hipaa")?,
            };
            attested.push((id, standards));
        }
        let count = attested.len();
        self.index.set_attestations(attested);
        Ok(count)
    }
}

/// Whether `device` meets `compliance` by the database at `now`: what the hiring transaction
/// checks, since the index may be a minute behind an operator's change.
pub(crate) async fn device_meets(
    conn: &mut AnyConnection,
    device: &str,
    compliance: SecurityCompliance,
    now: UnixMillis,
) -> Result<bool, Error> {
    if !compliance.needs_attestation() {
        return Ok(true);
    }
    Ok(facility_holding(conn, device)
        .await?
        .is_some_and(|f| f.attestations_at(now).meets(compliance)))
}

/// The facility `device` is in, if any.
async fn facility_holding(
    conn: &mut AnyConnection,
    device: &str,
) -> Result<Option<Facility>, Error> {
    sqlx::query(&format!(
        "SELECT {FACILITY_COLUMNS} FROM devices d JOIN facilities f ON f.name = d.facility \
         WHERE d.id = $1"
    ))
    .bind(device)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(facility_of)
    .transpose()
}
