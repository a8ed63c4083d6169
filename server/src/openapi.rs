//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`. Written by hand
//! next to the routes it describes (`api.rs`, keep the two in step); the HTTP tests call every
//! operation in it and check that a route answers.

use domain::cluster::{ClusterKind, DurationUnit, PaymentMethod, Purpose, SecurityCompliance};
use domain::fleet::ConnectivityTier;
use serde_json::{json, Value};

/// `(method, path, summary, needs sign-in)` of every `/api/v1` endpoint.
const ENDPOINTS: &[(&str, &str, &str, bool)] = &[
    (
        "post",
        "/auth/challenge",
        "The Sign-In With Solana message to sign",
        false,
    ),
    (
        "post",
        "/auth/sign-in",
        "Verify the signed message; sets the session cookie",
        false,
    ),
    ("get", "/auth/session", "Who is signed in", true),
    ("post", "/auth/sign-out", "End the session", false),
    (
        "get",
        "/network/summary",
        "Network totals, supply by GPU model and by country",
        false,
    ),
    (
        "get",
        "/worker/devices",
        "The provider's devices (filters: status, model, tier, sort)",
        true,
    ),
    (
        "post",
        "/worker/devices",
        "Add a device: its id and the one-line agent command",
        true,
    ),
    (
        "get",
        "/worker/devices/{id}",
        "One device with its history, uptime and utilisation",
        true,
    ),
    (
        "post",
        "/worker/devices/{id}/rename",
        "Rename a device",
        true,
    ),
    (
        "post",
        "/worker/devices/{id}/{action}",
        "pause, resume, remove or revoke-credential",
        true,
    ),
    (
        "get",
        "/cloud/balance",
        "The renter's available balances: dollars (micro-USD) and the network token (base units)",
        true,
    ),
    (
        "get",
        "/cloud/billing",
        "The renter's balances and every movement of them, newest first",
        true,
    ),
    (
        "get",
        "/cloud/billing.csv",
        "The same movements as CSV",
        true,
    ),
    (
        "get",
        "/worker/earnings",
        "The provider's claimable balances, hire earnings, block rewards and movements",
        true,
    ),
    (
        "get",
        "/cloud/deposits",
        "The renter's deposits with their status",
        true,
    ),
    (
        "post",
        "/cloud/deposits",
        "Build a deposit of \"usdc\" or \"token\" from the wallet: the transaction to sign (base64)",
        true,
    ),
    (
        "post",
        "/cloud/deposits/{id}/submit",
        "Send the wallet-signed deposit transaction; credited once confirmed on chain",
        true,
    ),
    (
        "get",
        "/worker/payouts",
        "The provider's payouts with their status and explorer links",
        true,
    ),
    (
        "post",
        "/worker/payouts",
        "Claim an amount of \"usdc\" or \"token\" to the wallet (Idempotency-Key header)",
        true,
    ),
    (
        "get",
        "/cloud/options",
        "Hardware with free units and prices; countries with free units of ?hardware=",
        false,
    ),
    (
        "post",
        "/cloud/quote",
        "Price and fillability of a deploy request",
        false,
    ),
    (
        "get",
        "/cloud/name-available",
        "Whether a cluster name (?name=) is still free for the renter",
        true,
    ),
    (
        "get",
        "/cloud/clusters",
        "The renter's clusters (?status=, ?search=)",
        true,
    ),
    (
        "post",
        "/cloud/clusters",
        "Pay from the balance and hire the devices (Idempotency-Key header)",
        true,
    ),
    (
        "get",
        "/cloud/clusters/{id}",
        "One cluster: devices, timeline, cost so far, remaining",
        true,
    ),
    (
        "get",
        "/cloud/clusters/{id}/logs",
        "What the cluster's workloads printed, oldest first, after a line cursor",
        true,
    ),
    (
        "post",
        "/cloud/clusters/{id}/extend",
        "More time on the same devices (Idempotency-Key header)",
        true,
    ),
    (
        "post",
        "/cloud/clusters/{id}/terminate",
        "End the cluster now; unused time is refunded",
        true,
    ),
    (
        "post",
        "/cloud/clusters/{id}/access-token",
        "A new access token for the cluster's tunnels, shown once; the one before stops working",
        true,
    ),
    (
        "get",
        "/keys",
        "The account's API keys, without their secrets (an API key or the session cookie)",
        true,
    ),
    (
        "post",
        "/keys",
        "Make an API key; its secret is in this answer only (session cookie only)",
        true,
    ),
    (
        "post",
        "/keys/{id}/revoke",
        "Revoke an API key (session cookie only)",
        true,
    ),
    ("get", "/openapi.json", "This document", false),
    (
        "get",
        "/explorer/summary",
        "Public: network totals, supply by GPU model and by country (max-age 5 s)",
        false,
    ),
    (
        "get",
        "/explorer/activity",
        "Public: recent clusters, trending devices, compute hours per day, network earnings (max-age 60 s)",
        false,
    ),
    (
        "get",
        "/explorer/devices",
        "Public: one page of the device list, in id order (max-age 5 s)",
        false,
    ),
    (
        "get",
        "/explorer/devices/{id}",
        "Public: a device's hardware, status history, uptime, verifications, clusters and rewards",
        false,
    ),
    (
        "get",
        "/explorer/clusters",
        "Public: clusters, newest first (no renter, name or workload)",
        false,
    ),
    (
        "get",
        "/explorer/clusters/{id}",
        "Public: a cluster's hardware, devices and compute hours",
        false,
    ),
    ("get", "/explorer/blocks", "Public: reward blocks, newest first", false),
    (
        "get",
        "/explorer/blocks/{number}",
        "Public: a closed block with one page of its per-device lines (immutable)",
        false,
    ),
    (
        "get",
        "/explorer/blocks/{number}/lines.csv",
        "Public: every line of a closed block as CSV",
        false,
    ),
    (
        "get",
        "/explorer/wallets/{address}",
        "Public: a provider's devices and what the network paid them",
        false,
    ),
    (
        "get",
        "/explorer/search",
        "Public: where a device id, cluster id, block number or wallet leads, or suggestions",
        false,
    ),
];

/// Query parameters, by path: `(name, schema type, description)`.
fn query_parameters(path: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match path {
        "/explorer/devices" => &[
            ("hardware", "string", "cpu or a catalog GPU model"),
            ("country", "string", "ISO 3166-1 alpha-2"),
            ("tier", "string", "ultra, high, medium or low"),
            ("status", "string", "a device status"),
            (
                "after",
                "string",
                "the page after this device id (a page's `next`)",
            ),
            (
                "before",
                "string",
                "the page before this device id (a page's `previous`)",
            ),
            ("last", "boolean", "the last page"),
        ],
        "/cloud/clusters/{id}/logs" => &[
            ("device", "string", "only this device's lines"),
            (
                "since",
                "integer",
                "lines after this line id (the last `line` read)",
            ),
            (
                "limit",
                "integer",
                "at most this many lines (500; up to 2000)",
            ),
        ],
        "/explorer/clusters" => &[
            ("status", "string", "a cluster status"),
            (
                "after",
                "string",
                "the page after this cluster id (a page's `next`)",
            ),
        ],
        "/explorer/blocks" | "/explorer/blocks/{number}" => &[(
            "after",
            "string",
            "the page after this key (a page's `next`)",
        )],
        "/explorer/search" => &[(
            "q",
            "string",
            "a device id, cluster id, block number or wallet",
        )],
        _ => &[],
    }
}

/// Request bodies, by `(method, path)`.
fn request_schema(method: &str, path: &str) -> Option<Value> {
    let reference = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    Some(match (method, path) {
        ("post", "/auth/challenge") => {
            json!({ "type": "object", "required": ["address"], "properties": { "address": { "type": "string" } } })
        }
        ("post", "/auth/sign-in") => {
            json!({ "type": "object", "required": ["message", "signature"], "properties": { "message": { "type": "string" }, "signature": { "type": "string", "description": "base58 ed25519 signature" } } })
        }
        ("post", "/worker/devices") => {
            json!({ "type": "object", "required": ["name", "os", "kind", "country"], "properties": { "name": { "type": "string" }, "os": { "enum": ["linux", "windows", "macos"] }, "kind": { "enum": ["gpu", "cpu"] }, "country": { "type": "string" } } })
        }
        ("post", "/worker/devices/{id}/rename") | ("post", "/keys") => {
            json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } })
        }
        ("post", "/cloud/quote") | ("post", "/cloud/clusters") => reference("DeployRequest"),
        ("post", "/cloud/clusters/{id}/extend") => {
            json!({ "type": "object", "required": ["duration_unit", "duration_count"], "properties": { "duration_unit": { "enum": names(DurationUnit::ALL, DurationUnit::as_str) }, "duration_count": { "type": "integer", "minimum": 1 } } })
        }
        _ => return None,
    })
}

/// The document, with `server` as its one server.
pub fn document(server: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for &(method, path, summary, signed_in) in ENDPOINTS {
        let mut operation = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "OK (201 Created where something is made)" },
                "default": { "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .chain(query_parameters(path).iter().map(|(name, kind, description)| {
                json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": kind } })
            }))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(schema) = request_schema(method, path) {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema } } });
        }
        if signed_in {
            operation["security"] = json!([{ "session": [] }, { "apiKey": [] }]);
        }
        let entry = paths
            .entry(format!("/api/v1{path}"))
            .or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    // Any tier, or null for none.
    let mut tiers = names(ConnectivityTier::ALL, ConnectivityTier::as_str);
    if let Value::Array(values) = &mut tiers {
        values.push(Value::Null);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "GPU Commons API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Everything the console does, for scripts and agents. Money is integer micro-USD. Errors are {\"error\": {\"code\", \"message\"}} (422s add \"fields\")."
        },
        "servers": [{ "url": server }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": platform::auth::SESSION_COOKIE },
                "apiKey": { "type": "http", "scheme": "bearer", "description": "An API key (gck_…) made in the Cloud console" }
            },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" },
                    "fields": { "type": "array", "items": { "type": "object", "properties": { "field": { "type": "string" }, "message": { "type": "string" } } } }
                } } } },
                "DeployRequest": {
                    "type": "object",
                    "required": ["name", "kind", "hardware", "quantity", "duration_unit", "duration_count", "payment"],
                    "properties": {
                        "name": { "type": "string", "maxLength": 48 },
                        "kind": { "enum": names(ClusterKind::ALL, ClusterKind::as_str) },
                        "purpose": { "enum": names(Purpose::ALL, Purpose::as_str) },
                        "hardware": { "type": "string", "description": "A GPU model of the catalog, or cpu" },
                        "quantity": { "type": "integer", "minimum": 1, "maximum": 1024 },
                        "countries": { "type": "array", "items": { "type": "string", "description": "ISO 3166-1 alpha-2" } },
                        "min_tier": { "enum": tiers },
                        "compliance": { "enum": names(SecurityCompliance::ALL, SecurityCompliance::as_str) },
                        "duration_unit": { "enum": names(DurationUnit::ALL, DurationUnit::as_str) },
                        "duration_count": { "type": "integer", "minimum": 1 },
                        "payment": { "enum": names(PaymentMethod::ALL, PaymentMethod::as_str) },
                        "workload": { "type": "object", "properties": {
                            "image": { "type": "string" }, "command": { "type": "string" },
                            "port": { "type": ["integer", "null"] },
                            "env": { "type": "object", "additionalProperties": { "type": "string" } }
                        } }
                    }
                }
            }
        }
    })
}

/// The names an enum's values are written with, from the type itself: the document cannot
/// drift from what the API accepts.
fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Value {
    Value::from(all.iter().map(|&v| name(v)).collect::<Vec<_>>())
}
