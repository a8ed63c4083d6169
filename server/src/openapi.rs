//! The OpenAPI 3.1 document of the JSON API, served at `/api/v1/openapi.json`. It is generated:
//! each handler carries its operation (`#[utoipa::path]` in `api.rs` and `explorer_api.rs`:
//! parameters, headers, body, answers), and the bodies' schemas are derived from the very types
//! the handlers read and write (the domain's and the platform's, with their `openapi` feature),
//! so the document cannot drift from them. The HTTP tests call every operation in it; CI runs
//! schemathesis against a running server with it.

use std::collections::BTreeMap;

use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Server};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use serde_json::Value;

use crate::{api, explorer_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GPU Commons API",
        description = "Everything the console does, for scripts. Money is integer micro-units (micro-USD, or token base units). Errors are {\"error\": {\"code\", \"message\"}}; a 422 for a form adds \"fields\". Sign in with a wallet (the session cookie) or send an API key as `Authorization: Bearer gck_…`. Writes that move money take an `Idempotency-Key` header."
    ),
    paths(
        api::challenge,
        api::sign_in,
        api::session,
        api::sign_out,
        api::network_summary,
        api::my_devices,
        api::add_device,
        api::device_detail,
        api::rename_device,
        api::device_action,
        api::balance,
        api::billing,
        api::billing_csv,
        api::my_deposits,
        api::prepare_deposit,
        api::submit_deposit,
        api::earnings,
        api::my_payouts,
        api::claim,
        api::deploy_options,
        api::quote,
        api::name_available,
        api::my_clusters,
        api::deploy,
        api::cluster_detail,
        api::cluster_logs,
        api::extend_cluster,
        api::terminate_cluster,
        api::rotate_access_token,
        api::my_keys,
        api::create_key,
        api::revoke_key,
        api::openapi,
        explorer_api::summary,
        explorer_api::activity,
        explorer_api::devices,
        explorer_api::device,
        explorer_api::clusters,
        explorer_api::cluster,
        explorer_api::blocks,
        explorer_api::block,
        explorer_api::block_csv,
        explorer_api::wallet,
        explorer_api::search,
    ),
    // What query and path parameters name by reference (bodies bring their own schemas).
    components(schemas(
        ErrorBody,
        domain::fleet::DeviceStatus,
        domain::fleet::ConnectivityTier,
        domain::fleet::OwnerAction,
        domain::worker::DeviceSort
    )),
    modifiers(&Security)
)]
struct ApiDoc;

/// The document, with `server` as its one server.
pub fn document(server: &str) -> Value {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document.servers = Some(vec![Server::new(server)]);
    let mut document = serde_json::to_value(&document).unwrap_or_default();
    state_the_text_rule(&mut document);
    document
}

/// Gives every free-text parameter the characters the server refuses in it (`domain::text`,
/// checked at the API's edge before any handler): a path segment holds a name, a query value
/// any text. Parameters that already say what they hold (an enum, a pattern, a format) keep
/// that. Bodies are checked the same way, but their schemas are shared with answers, which
/// quote what was refused.
fn state_the_text_rule(document: &mut Value) {
    let pattern = |class: &str| Value::from(format!("^[^{class}]*$"));
    let text = pattern(domain::text::REFUSED_IN_TEXT_CLASS);
    let name = pattern(domain::text::REFUSED_IN_NAME_CLASS);
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
    {
        let Some(parameters) = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for parameter in parameters {
            let rule = if parameter["in"] == "path" {
                &name
            } else {
                &text
            };
            if let Some(Value::Object(schema)) = parameter.get_mut("schema") {
                let free_text = schema.get("type").is_some_and(|t| {
                    t == "string"
                        || t.as_array()
                            .is_some_and(|ts| ts.iter().any(|t| t == "string"))
                });
                let says_more = ["enum", "pattern", "format", "const", "$ref"]
                    .iter()
                    .any(|k| schema.contains_key(*k));
                if free_text && !says_more {
                    schema.insert("pattern".into(), rule.clone());
                }
            }
        }
    }
}

/// A string that is one of `names`.
fn one_of(names: impl IntoIterator<Item = String>) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .build()
}

/// A cluster status, or empty for any.
pub(crate) fn cluster_status_or_any() -> utoipa::openapi::schema::Object {
    one_of(
        std::iter::once(String::new()).chain(
            domain::cluster::ClusterStatus::ALL
                .iter()
                .map(|s| s.as_str().to_owned()),
        ),
    )
}

/// A GPU model of the catalog, `cpu`, or empty for none chosen yet.
pub(crate) fn hardware_or_none() -> utoipa::openapi::schema::Object {
    let catalog = domain::catalog::GpuCatalog::builtin();
    one_of(
        ["".to_owned(), "cpu".to_owned()]
            .into_iter()
            .chain(catalog.models().iter().map(|m| m.name.clone())),
    )
}

/// The shape of every error answer (`crate::error` writes it).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes JSON written elsewhere; never built.
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// A stable code: `invalid`, `not_signed_in`, `not_found`, `conflict`, `rate_limited`, …
    code: String,
    /// What went wrong, in words for a person.
    message: String,
    /// For a 422 of a form: each field that is wrong and why.
    #[schema(required = false)]
    fields: Option<Vec<FieldError>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct FieldError {
    field: String,
    message: String,
}

/// The refusals every operation may answer, each with an [`ErrorBody`].
pub(crate) struct Refusals;

impl IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        };
        BTreeMap::from([
            (
                "4XX".to_owned(),
                error("Refused; the code and message say why (401 not signed in, 403 another site's write, 404 unknown, 409 conflict, 413 too large, 415 not JSON, 422 invalid, 429 too many: see Retry-After)"),
            ),
            (
                "5XX".to_owned(),
                error("The server could not answer (its database unreachable, say); retry later"),
            ),
        ])
    }
}

/// How a caller proves who it is.
struct Security;

impl Modify for Security {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                platform::auth::SESSION_COOKIE,
                "The session a wallet's sign-in starts (POST /api/v1/auth/sign-in)",
            ))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (gck_…) made in the Cloud console"))
                    .build(),
            ),
        );
    }
}
