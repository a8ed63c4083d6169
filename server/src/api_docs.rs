//! `/api/docs`: the OpenAPI document rendered as one HTML page (no script, nothing fetched from
//! elsewhere): each operation by tag with its parameters, body and answers, then each schema
//! with its fields. It reads the same document `/api/v1/openapi.json` serves.

use std::fmt::Write;

use serde_json::Value;

/// The page for `document`.
pub fn page(document: &Value) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = text(&document["info"]["title"]);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/pkg/gpu_commons.css\"></head>\
         <body><main class=\"page api-docs\"><h1>{title} <small>{}</small></h1><p>{}</p>\
         <p><a href=\"/api/v1/openapi.json\">The OpenAPI 3.1 document (JSON)</a>, for client generators and tools.</p>",
        text(&document["info"]["version"]),
        text(&document["info"]["description"]),
    );
    let mut by_tag: Vec<(String, String)> = Vec::new();
    for (path, operations) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
            by_tag.push((tag, operation_html(method, path, operation)));
        }
    }
    by_tag.sort_by(|a, b| a.0.cmp(&b.0));
    let mut current = None;
    for (tag, section) in by_tag {
        if current.as_deref() != Some(tag.as_str()) {
            let _ = write!(html, "<h2 id=\"tag-{0}\">{0}</h2>", escape(&tag));
            current = Some(tag);
        }
        html.push_str(&section);
    }
    html.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            html,
            "<section class=\"panel\" id=\"schema-{0}\"><h3>{0}</h3>{1}</section>",
            escape(name),
            schema_html(schema)
        );
    }
    html.push_str("</main></body></html>");
    html
}

fn operation_html(method: &str, path: &str, operation: &Value) -> String {
    let mut html = format!(
        "<section class=\"panel\" data-testid=\"api-operation\"><h3><code>{} {}</code></h3><p>{}</p>",
        method.to_uppercase(),
        escape(path),
        text(&operation["summary"])
    );
    if let Some(security) = operation["security"].as_array() {
        let schemes: Vec<&str> = security
            .iter()
            .filter_map(|s| s.as_object()?.keys().next().map(String::as_str))
            .collect();
        let _ = write!(
            html,
            "<p class=\"muted\">Needs: {}</p>",
            escape(&schemes.join(" or "))
        );
    }
    if let Some(parameters) = operation["parameters"].as_array() {
        html.push_str("<table class=\"data\"><thead><tr><th>Parameter</th><th>In</th><th>Type</th><th>Required</th><th>About</th></tr></thead><tbody>");
        for p in parameters {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&p["name"]),
                text(&p["in"]),
                type_html(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                text(&p["description"])
            );
        }
        html.push_str("</tbody></table>");
    }
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = write!(
                html,
                "<p>Body ({}): {}</p>",
                escape(media),
                type_html(&body["schema"])
            );
        }
    }
    html.push_str("<ul>");
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let body = response["content"]
            .as_object()
            .and_then(|c| c.values().next())
            .map(|c| format!(": {}", type_html(&c["schema"])))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<li><strong>{}</strong> {}{body}</li>",
            escape(status),
            text(&response["description"])
        );
    }
    html.push_str("</ul></section>");
    html
}

fn schema_html(schema: &Value) -> String {
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", text(v)))
            .collect();
        return format!("<p>One of {}</p>", names.join(", "));
    }
    let Some(properties) = schema["properties"].as_object() else {
        return format!("<p>{}</p>", type_html(schema));
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut html = String::from("<table class=\"data\"><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>About</th></tr></thead><tbody>");
    for (name, property) in properties {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            type_html(property),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            },
            text(&property["description"])
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// A schema in a few words: a link to a named one, `array of …`, or its type.
fn type_html(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let each: Vec<String> = choices.iter().map(type_html).collect();
        return each.join(" or ");
    }
    if schema["type"] == "array" {
        return format!("array of {}", type_html(&schema["items"]));
    }
    match &schema["type"] {
        Value::String(t) => escape(t),
        Value::Array(types) => escape(
            &types
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
        ),
        _ if schema["enum"].is_array() => "one of its names".into(),
        _ => "any".into(),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_operations_and_schemas_escaped() {
        let document = serde_json::json!({
            "info": { "title": "T", "version": "1", "description": "<b>d</b>" },
            "paths": { "/a/{id}": { "get": {
                "tags": ["x"], "summary": "Get an a",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "ok", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/A" } } } } }
            } } },
            "components": { "schemas": { "A": { "type": "object", "required": ["n"], "properties": { "n": { "type": "integer" } } } } }
        });
        let html = page(&document);
        assert!(html.contains("<code>GET /a/{id}</code>"));
        assert!(html.contains("&lt;b&gt;d&lt;/b&gt;"));
        assert!(html.contains("<a href=\"#schema-A\">A</a>"));
        assert!(html.contains("<tr><td><code>n</code></td><td>integer</td><td>yes</td>"));
    }
}
