//! The twin migrations (`migrations/sqlite`, `migrations/postgres`) must give the same schema:
//! this migrates a fresh database of each backend and compares tables, columns (normalised
//! type, nullability, default or none), primary keys, foreign keys, indexes (name, columns,
//! uniqueness) and the number of CHECK constraints per table. Drift fails CI.

use std::collections::BTreeMap;

use platform::store::Store;
use sqlx::Row;

/// One backend's schema, in a form both backends can be written in.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// Table → column → "type null|not null default|no default".
    columns: BTreeMap<String, BTreeMap<String, String>>,
    /// Table → its primary key's columns, in order.
    primary_keys: BTreeMap<String, Vec<String>>,
    /// Table → "column -> table.column" for each foreign key, sorted.
    foreign_keys: BTreeMap<String, Vec<String>>,
    /// Index name → "table(columns) unique|plain", for indexes made by the migrations.
    indexes: BTreeMap<String, String>,
    /// Table → how many CHECK constraints it has.
    checks: BTreeMap<String, usize>,
}

/// The type families the migrations use, named the same on both backends.
fn normalised_type(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    match t.as_str() {
        "integer" | "bigint" | "int8" | "bigserial" => "integer",
        "text" | "character varying" | "varchar" => "text",
        "boolean" | "bool" => "boolean",
        "blob" | "bytea" => "bytes",
        "double precision" | "real" | "float8" => "float",
        other => other,
    }
    .to_owned()
}

fn column_shape(declared: &str, not_null: bool, has_default: bool) -> String {
    format!(
        "{} {} {}",
        normalised_type(declared),
        if not_null { "not null" } else { "null" },
        if has_default { "default" } else { "no default" }
    )
}

async fn sqlite_schema(store: &Store) -> Schema {
    let pool = platform::testing::pool_of(store);
    let mut schema = Schema::default();
    let tables: Vec<(String, String)> = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("name"), r.get("sql")))
    .collect();
    for (table, sql) in &tables {
        let mut keys: Vec<(i64, String)> = Vec::new();
        let mut columns = BTreeMap::new();
        for row in sqlx::query(&format!("PRAGMA table_info('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let name: String = row.get("name");
            let declared: String = row.get("type");
            let pk: i64 = row.get("pk");
            let default: Option<String> = row.get("dflt_value");
            // A primary key is NOT NULL on PostgreSQL whatever it declares.
            let not_null = row.get::<i64, _>("notnull") != 0 || pk > 0;
            columns.insert(
                name.clone(),
                column_shape(&declared, not_null, default.is_some()),
            );
            if pk > 0 {
                keys.push((pk, name));
            }
        }
        keys.sort();
        schema.columns.insert(table.clone(), columns);
        schema
            .primary_keys
            .insert(table.clone(), keys.into_iter().map(|(_, c)| c).collect());
        let mut foreign: Vec<String> = sqlx::query(&format!("PRAGMA foreign_key_list('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let from: String = r.get("from");
                let to_table: String = r.get("table");
                let to: Option<String> = r.get("to");
                format!("{from} -> {to_table}.{}", to.unwrap_or_default())
            })
            .collect();
        foreign.sort();
        schema.foreign_keys.insert(table.clone(), foreign);
        schema.checks.insert(
            table.clone(),
            sql.to_ascii_uppercase().matches("CHECK").count(),
        );
        for index in sqlx::query(&format!("PRAGMA index_list('{table}')"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            // Only indexes the migrations made: not those SQLite makes for keys itself.
            if index.get::<String, _>("origin") != "c" {
                continue;
            }
            let name: String = index.get("name");
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA index_info('{name}')"))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Option<String>, _>("name").unwrap_or_default())
                .collect();
            let unique = index.get::<i64, _>("unique") != 0;
            schema.indexes.insert(
                name,
                format!(
                    "{table}({}) {}",
                    columns.join(", "),
                    if unique { "unique" } else { "plain" }
                ),
            );
        }
    }
    schema
}

async fn postgres_schema(store: &Store) -> Schema {
    let pool = platform::testing::pool_of(store);
    let mut schema = Schema::default();
    for row in sqlx::query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
           c.data_type::text AS data_type, c.is_nullable::text AS is_nullable, \
           (c.column_default IS NOT NULL) AS has_default \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
           AND c.table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        let table: String = row.get("table_name");
        let declared: String = row.get("data_type");
        let not_null = row.get::<String, _>("is_nullable") == "NO";
        let default = row.get::<bool, _>("has_default");
        schema.columns.entry(table).or_default().insert(
            row.get("column_name"),
            column_shape(&declared, not_null, default),
        );
    }
    for table in schema.columns.keys() {
        schema.primary_keys.insert(table.clone(), Vec::new());
        schema.foreign_keys.insert(table.clone(), Vec::new());
        schema.checks.insert(table.clone(), 0);
    }
    // Constraints: primary keys, foreign keys and checks, with their columns in key order.
    for row in sqlx::query(
        "SELECT rel.relname::text AS table_name, con.contype::text AS kind, \
           COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum), '') AS cols, \
           COALESCE(frel.relname::text, '') AS to_table, \
           COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum), '') AS to_cols \
         FROM pg_constraint con \
         JOIN pg_class rel ON rel.oid = con.conrelid \
         JOIN pg_namespace ns ON ns.oid = rel.relnamespace \
         LEFT JOIN pg_class frel ON frel.oid = con.confrelid \
         WHERE ns.nspname = 'public' AND rel.relname NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        let table: String = row.get("table_name");
        let columns: String = row.get("cols");
        match row.get::<String, _>("kind").as_str() {
            "p" => {
                schema.primary_keys.insert(
                    table,
                    columns.split(',').map(str::to_owned).collect(),
                );
            }
            "f" => schema.foreign_keys.entry(table).or_default().push(format!(
                "{columns} -> {}.{}",
                row.get::<String, _>("to_table"),
                row.get::<String, _>("to_cols")
            )),
            "c" => *schema.checks.entry(table).or_default() += 1,
            _ => {}
        }
    }
    for keys in schema.foreign_keys.values_mut() {
        keys.sort();
    }
    // Indexes the migrations made: not those behind primary keys and UNIQUE constraints.
    for row in sqlx::query(
        "SELECT i.relname::text AS name, t.relname::text AS table_name, ix.indisunique AS is_unique, \
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) \
             FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS cols \
         FROM pg_index ix \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace ns ON ns.oid = t.relnamespace \
         WHERE ns.nspname = 'public' AND t.relname NOT LIKE '\\_sqlx%' \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        let columns: Option<String> = row.get("cols");
        schema.indexes.insert(
            row.get("name"),
            format!(
                "{}({}) {}",
                row.get::<String, _>("table_name"),
                columns.unwrap_or_default().replace(',', ", "),
                if row.get::<bool, _>("is_unique") {
                    "unique"
                } else {
                    "plain"
                }
            ),
        );
    }
    schema
}

/// Each difference between the two schemas, one line each.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    fn compare<V: std::fmt::Debug + PartialEq>(
        what: &str,
        a: &BTreeMap<String, V>,
        b: &BTreeMap<String, V>,
        out: &mut Vec<String>,
    ) {
        for key in a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) if x == y => {}
                (x, y) => out.push(format!("{what} {key}: SQLite {x:?}, PostgreSQL {y:?}")),
            }
        }
    }
    let mut out = Vec::new();
    for table in sqlite.columns.keys().chain(postgres.columns.keys()) {
        let empty = BTreeMap::new();
        compare(
            &format!("column of {table}:"),
            sqlite.columns.get(table).unwrap_or(&empty),
            postgres.columns.get(table).unwrap_or(&empty),
            &mut out,
        );
    }
    compare(
        "primary key of",
        &sqlite.primary_keys,
        &postgres.primary_keys,
        &mut out,
    );
    compare(
        "foreign keys of",
        &sqlite.foreign_keys,
        &postgres.foreign_keys,
        &mut out,
    );
    compare("index", &sqlite.indexes, &postgres.indexes, &mut out);
    compare(
        "CHECK constraints of",
        &sqlite.checks,
        &postgres.checks,
        &mut out,
    );
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_schema() {
    let sqlite = Store::open(&platform::testing::fresh_sqlite_url())
        .await
        .unwrap();
    let sqlite_schema = sqlite_schema(&sqlite).await;
    assert!(
        sqlite_schema.columns.len() > 10,
        "the SQLite schema was read: {:?}",
        sqlite_schema.columns.keys()
    );
    let Some(url) = platform::testing::fresh_postgres_url().await else {
        return;
    };
    let postgres = Store::open(&url).await.unwrap();
    let postgres_schema = postgres_schema(&postgres).await;
    let drift = differences(&sqlite_schema, &postgres_schema);
    postgres.close().await;
    platform::testing::drop_postgres_database(&url)
        .await
        .unwrap();
    assert!(
        drift.is_empty(),
        "the twin migrations differ ({} differences):\n{}",
        drift.len(),
        drift.join("\n")
    );
}

#[test]
fn a_difference_is_reported_with_both_sides() {
    let mut a = Schema::default();
    a.columns
        .entry("devices".into())
        .or_default()
        .insert("name".into(), column_shape("TEXT", true, false));
    let mut b = Schema::default();
    b.columns
        .entry("devices".into())
        .or_default()
        .insert("name".into(), column_shape("text", false, false));
    let drift = differences(&a, &b);
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0].contains("not null") && drift[0].contains("PostgreSQL"),
        "{drift:?}"
    );
    assert!(differences(&a, &a).is_empty());
}

/// The values a CHECK (`column IN (…)`) on `table` admits, as the migrated database has it.
async fn checked_values(store: &Store, table: &str, column: &str) -> Vec<String> {
    let pool = platform::testing::pool_of(store);
    let definitions: Vec<String> = match store.backend() {
        platform::store::Backend::Sqlite => {
            let sql: String = sqlx::query("SELECT sql FROM sqlite_master WHERE name = $1")
                .bind(table)
                .fetch_one(pool)
                .await
                .unwrap()
                .get("sql");
            let opening = format!("CHECK ({column} IN (");
            sql.match_indices(&opening)
                .map(|(at, _)| {
                    let rest = &sql[at + opening.len()..];
                    rest[..rest.find(')').unwrap_or(rest.len())].to_owned()
                })
                .collect()
        }
        platform::store::Backend::Postgres => sqlx::query(
            "SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid \
             WHERE t.relname = $1 AND c.contype = 'c'",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("definition"))
        // `CHECK ((kind = ANY (ARRAY['ray'::text, …])))`
        .filter(|d| d.starts_with(&format!("CHECK (({column} = ANY")))
        .collect(),
    };
    assert_eq!(
        definitions.len(),
        1,
        "one CHECK lists the values of {table}.{column}: {definitions:?}"
    );
    let mut values: Vec<String> = definitions[0]
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    values.sort();
    values
}

/// Each column whose values are a domain enum admits exactly that enum's names, on both
/// backends: a new variant fails here until both migrations admit it.
#[tokio::test]
async fn enum_columns_admit_exactly_the_domain_enums() {
    use domain::cluster::SecurityCompliance;
    use domain::cluster::{ClusterKind, ClusterRole, ClusterStatus, PaymentMethod, Purpose};
    use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
    use domain::ledger::PostingKind;
    use domain::rewards::RewardHold;
    fn sorted(names: Vec<&str>) -> Vec<String> {
        let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        names.sort();
        names
    }
    let columns: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "clusters",
            "kind",
            sorted(ClusterKind::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "clusters",
            "purpose",
            sorted(Purpose::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "clusters",
            "status",
            sorted(ClusterStatus::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "clusters",
            "compliance",
            sorted(SecurityCompliance::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "clusters",
            "payment",
            sorted(PaymentMethod::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "clusters",
            "min_tier",
            sorted(ConnectivityTier::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "cluster_devices",
            "role",
            sorted(ClusterRole::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "devices",
            "status",
            sorted(DeviceStatus::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "devices",
            "kind",
            sorted(DeviceKind::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "devices",
            "tier",
            sorted(ConnectivityTier::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "ledger_transaction_kinds",
            "kind",
            sorted(PostingKind::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "block_rewards",
            "hold",
            sorted(RewardHold::ALL.iter().map(|k| k.as_str()).collect()),
        ),
    ];
    let sqlite = Store::open(&platform::testing::fresh_sqlite_url())
        .await
        .unwrap();
    let postgres_url = platform::testing::fresh_postgres_url().await;
    let postgres = match &postgres_url {
        Some(url) => Some(Store::open(url).await.unwrap()),
        None => None,
    };
    for (table, column, names) in &columns {
        assert_eq!(
            &checked_values(&sqlite, table, column).await,
            names,
            "SQLite {table}.{column}"
        );
        if let Some(postgres) = &postgres {
            assert_eq!(
                &checked_values(postgres, table, column).await,
                names,
                "PostgreSQL {table}.{column}"
            );
        }
    }
    if let (Some(store), Some(url)) = (postgres, postgres_url) {
        store.close().await;
        platform::testing::drop_postgres_database(&url)
            .await
            .unwrap();
    }
}

/// The posting-kinds migration gives the postings recorded before it their kinds from the key
/// prefixes the services used, and their clusters; run here on rows of each prefix.
#[tokio::test]
async fn postings_recorded_before_kinds_get_them_from_their_keys() {
    let sqlite = Store::open(&platform::testing::fresh_sqlite_url())
        .await
        .unwrap();
    check_kind_backfill(
        &sqlite,
        include_str!("../../migrations/sqlite/20261203000011_posting_kinds.sql"),
    )
    .await;
    if let Some(url) = platform::testing::fresh_postgres_url().await {
        let postgres = Store::open(&url).await.unwrap();
        check_kind_backfill(
            &postgres,
            include_str!("../../migrations/postgres/20261203000011_posting_kinds.sql"),
        )
        .await;
        postgres.close().await;
        platform::testing::drop_postgres_database(&url)
            .await
            .unwrap();
    }
}

async fn check_kind_backfill(store: &Store, migration: &str) {
    let pool = platform::testing::pool_of(store);
    let keys = [
        ("deploy:cl-1", "cluster_charge", Some("cl-1")),
        ("extend:cl-1:key", "cluster_extension", Some("cl-1")),
        ("finish:cl-1", "cluster_end", Some("cl-1")),
        ("lose:cl-2:dev-1:5", "device_loss", Some("cl-2")),
        ("settle:cl-3:dev-2:7:100", "hire_settlement", Some("cl-3")),
        ("block:42", "block_rewards", None),
        ("payout:po-1", "payout_claim", None),
        ("paid:po-1", "payout_landed", None),
        ("unpaid:po-2", "payout_returned", None),
        ("deposit:sig", "deposit", None),
        ("welcome:3", "welcome_credit", None),
        ("credit:promo", "operator_credit", None),
        ("no prefix", "operator_credit", None),
    ];
    for (key, _, _) in &keys {
        sqlx::query(
            "INSERT INTO ledger_transactions (idempotency_key, at, memo) VALUES ($1, 0, 'old')",
        )
        .bind(*key)
        .execute(pool)
        .await
        .unwrap();
    }
    // The migration's backfill statement, as it ran on databases that had postings.
    let backfill = migration
        .split(';')
        .find(|statement| statement.trim_start().starts_with("WITH parts"))
        .expect("the migration backfills with one WITH parts … statement");
    sqlx::query(backfill).execute(pool).await.unwrap();
    for (key, kind, cluster) in keys {
        let row = sqlx::query(
            "SELECT k.kind, k.cluster_id FROM ledger_transaction_kinds k \
             JOIN ledger_transactions t ON t.id = k.transaction_id WHERE t.idempotency_key = $1",
        )
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("kind"), kind, "{key}");
        assert_eq!(
            row.get::<Option<String>, _>("cluster_id").as_deref(),
            cluster,
            "{key}"
        );
    }
}
