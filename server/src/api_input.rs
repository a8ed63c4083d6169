//! Input checks at the API's edge (issue 19): the text rule of `domain::text` applied to every
//! path, query and JSON body under `/api` before any handler or database sees it. An id that
//! holds a refused character names nothing (404); a query or body that holds one is refused
//! with the character named (422). Each field's own validation (lengths, grammars) still runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::Json;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// `Err` if the request's path or query holds a refused character.
pub(crate) fn check_target(request: &Request) -> Result<(), Error> {
    let uri = request.uri();
    let path = percent_decode_str(uri.path()).decode_utf8_lossy();
    if let Some(c) = domain::text::refused_name_char(&path) {
        return Err(platform::Error::NotFound(format!(
            "nothing is named with {}: ids and names hold no such characters",
            domain::text::describe(c)
        ))
        .into());
    }
    let query = uri.query().unwrap_or("");
    refused_as_invalid("the query", refused_in_form(query.as_bytes()))
}

/// `Err` if a server function's body (a `form`, else JSON) holds a refused character.
pub(crate) fn check_form_or_json(body: &[u8], form: bool) -> Result<(), Error> {
    let refused = if form {
        refused_in_form(body)
    } else {
        domain::text::refused_in_json(body)
    };
    refused_as_invalid("the form", refused)
}

/// The first refused character in the names or values of URL-encoded pairs.
fn refused_in_form(pairs: &[u8]) -> Option<char> {
    url::form_urlencoded::parse(pairs)
        .find_map(|(name, value)| domain::text::refused_char(&format!("{name}{value}")))
}

/// A 422 saying that `what` holds the `refused` character, if there is one.
fn refused_as_invalid(what: &str, refused: Option<char>) -> Result<(), Error> {
    match refused {
        None => Ok(()),
        Some(c) => Err(platform::Error::Invalid(format!(
            "{what} must not contain {}",
            domain::text::describe(c)
        ))
        .into()),
    }
}

/// A 422 naming the field that holds `refused` (a dotted path such as `workload.command`),
/// found by parsing the body: only refusals pay for that.
fn refused_field(body: &[u8], refused: char) -> Error {
    fn holding(value: &serde_json::Value, at: &str, refused: char) -> Option<String> {
        let join = |key: &str| match at {
            "" => key.to_owned(),
            _ => format!("{at}.{key}"),
        };
        match value {
            serde_json::Value::String(text) => text.contains(refused).then(|| at.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| holding(item, &join(&i.to_string()), refused)),
            serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
                if key.contains(refused) {
                    return Some(join(key));
                }
                holding(item, &join(key), refused)
            }),
            _ => None,
        }
    }
    let field = serde_json::from_slice(body)
        .ok()
        .and_then(|value| holding(&value, "", refused))
        .filter(|field| !field.is_empty())
        .unwrap_or_else(|| "body".to_owned());
    platform::Error::InvalidFields(vec![domain::cluster::FieldError {
        message: format!(
            "{field} must not contain {}",
            domain::text::describe(refused)
        ),
        field,
    }])
    .into()
}

/// A JSON body that passed the text rule, then parsed into `T`. Unlike axum's `Json`, a body
/// holding NUL, control or bidirectional-override characters is refused as a whole (422),
/// whichever field holds them, so none reaches a query.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(Error::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "send the body as JSON, with 'Content-Type: application/json'".into(),
            });
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Error::BadRequest {
                status: rejection.status(),
                message: rejection.body_text(),
            })?;
        if let Some(c) = domain::text::refused_in_json(&bytes) {
            return Err(refused_field(&bytes, c));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}
