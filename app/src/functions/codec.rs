//! How server functions answer: JSON, read in the browser as text.
//!
//! server_fn's own `Json` reads answers with `serde_json::from_slice`, while resources and
//! island props carried in the page are read with `serde_json::from_str`. Each type read both
//! ways is compiled twice into the hydrate bundle; reading answers as text too keeps one copy.
//! On the wire nothing changes: the same `application/json` body.

use leptos::server_fn::codec::Post;
use leptos::server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON bodies, decoded from text.
pub struct JsonText;

/// The `output` of every server function: JSON in the answer to a POST.
pub type JsonAnswer = Post<JsonText>;

impl ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for JsonText {
    const FORMAT_TYPE: Format = Format::Text;
}

impl<T: Serialize> Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(output: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(output).map(Bytes::from)
    }
}

impl<T: DeserializeOwned> Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            <serde_json::Error as serde::de::Error>::custom(format!("the answer is not UTF-8: {e}"))
        })?;
        serde_json::from_str(text)
    }
}
