//! The `/api` page's content, read from the OpenAPI document that `/v1/openapi.json` serves
//! ([`crate::web::api::openapi_document`]), so the page and the document cannot disagree.
//!
//! Pure: a JSON value in, plain data out. Descriptions keep their `code` spans (split into
//! [`Span`]s so the template can set them in `<code>` without trusting any markup).

use serde_json::Value;

/// Text with `code` spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub code: bool,
}

/// Split Markdown-ish text on backticks: odd pieces are code.
pub fn spans(s: &str) -> Vec<Span> {
    s.split('`')
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| Span {
            text: t.to_owned(),
            code: i % 2 == 1,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub kind: String,
    pub description: Vec<Span>,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: String,
    pub description: Vec<Span>,
    /// The schema's name, when the body has a named schema.
    pub schema: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    /// For the anchor: `op-getImage`.
    pub id: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: Vec<Span>,
    pub deprecated: bool,
    pub params: Vec<Param>,
    /// `application/json: DockerHubPayload`, when there is a body.
    pub body: Vec<(String, Option<String>)>,
    pub replies: Vec<Reply>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub kind: String,
    /// The referenced schema, for a link.
    pub link: Option<String>,
    pub description: Vec<Span>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub description: Vec<Span>,
    pub fields: Vec<Field>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ApiDoc {
    pub title: String,
    pub version: String,
    pub description: Vec<Span>,
    pub groups: Vec<Group>,
    pub schemas: Vec<Schema>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `#/components/schemas/Image` -> `Image`.
fn ref_name(v: &Value) -> Option<String> {
    let r = v.get("$ref").and_then(Value::as_str).or_else(|| {
        v.get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|x| x.get("$ref"))
            .and_then(Value::as_str)
    })?;
    r.rsplit('/').next().map(str::to_owned)
}

/// A schema's type in a few words: `string (date-time)`, `array of Layer`, `Image or null`.
pub fn kind(v: &Value) -> String {
    let nullable = v.get("nullable").and_then(Value::as_bool) == Some(true);
    let base = if let Some(name) = ref_name(v) {
        name
    } else if let Some(values) = v.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        format!("one of {}", names.join(", "))
    } else {
        match v.get("type").and_then(Value::as_str) {
            Some("array") => format!("array of {}", v.get("items").map(kind).unwrap_or_default()),
            Some("object") => match v.get("additionalProperties") {
                Some(extra) if extra.is_object() => format!("map of {}", kind(extra)),
                _ => "object".to_owned(),
            },
            Some(t) => match v.get("format").and_then(Value::as_str) {
                Some(f) => format!("{t} ({f})"),
                None => t.to_owned(),
            },
            None => "any".to_owned(),
        }
    };
    if nullable {
        format!("{base} or null")
    } else {
        base
    }
}

/// The API as the page shows it.
pub fn from_openapi(doc: &Value) -> ApiDoc {
    let info = &doc["info"];
    let mut groups: Vec<Group> = doc["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| Group {
                    name: text(&t["name"]),
                    description: text(&t["description"]),
                    operations: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, methods) in paths {
            let Some(methods) = methods.as_object() else {
                continue;
            };
            for (method, op) in methods {
                let params = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| Param {
                                name: text(&p["name"]),
                                location: text(&p["in"]),
                                required: p["required"].as_bool() == Some(true),
                                kind: kind(&p["schema"]),
                                description: spans(&text(&p["description"])),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let body = op["requestBody"]["content"]
                    .as_object()
                    .map(|c| {
                        c.iter()
                            .map(|(t, m)| (t.clone(), ref_name(&m["schema"])))
                            .collect()
                    })
                    .unwrap_or_default();
                let replies = op["responses"]
                    .as_object()
                    .map(|rs| {
                        rs.iter()
                            .map(|(status, r)| Reply {
                                status: status.clone(),
                                description: spans(&text(&r["description"])),
                                schema: r["content"]
                                    .as_object()
                                    .and_then(|c| c.values().next())
                                    .and_then(|m| ref_name(&m["schema"])),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let operation = Operation {
                    id: format!("op-{}", text(&op["operationId"])),
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    summary: text(&op["summary"]),
                    description: spans(&text(&op["description"])),
                    deprecated: op["deprecated"].as_bool() == Some(true),
                    params,
                    body,
                    replies,
                };
                let tag = op["tags"][0].as_str().unwrap_or("other");
                match groups.iter_mut().find(|g| g.name == tag) {
                    Some(g) => g.operations.push(operation),
                    None => groups.push(Group {
                        name: tag.to_owned(),
                        description: String::new(),
                        operations: vec![operation],
                    }),
                }
            }
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    let schemas = doc["components"]["schemas"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, schema)| Schema {
                    name: name.clone(),
                    description: spans(&text(&schema["description"])),
                    fields: schema["properties"]
                        .as_object()
                        .map(|props| {
                            props
                                .iter()
                                .map(|(field, v)| Field {
                                    name: field.clone(),
                                    kind: kind(v),
                                    link: ref_name(v).or_else(|| ref_name(&v["items"])),
                                    description: spans(&text(&v["description"])),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    ApiDoc {
        title: text(&info["title"]),
        version: text(&info["version"]),
        description: spans(&text(&info["description"])),
        groups,
        schemas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backticks_become_code_spans() {
        assert_eq!(
            spans("use `nginx` or `a/b`."),
            vec![
                Span {
                    text: "use ".into(),
                    code: false
                },
                Span {
                    text: "nginx".into(),
                    code: true
                },
                Span {
                    text: " or ".into(),
                    code: false
                },
                Span {
                    text: "a/b".into(),
                    code: true
                },
                Span {
                    text: ".".into(),
                    code: false
                },
            ]
        );
        assert!(spans("").is_empty());
    }

    #[test]
    fn kinds_read_naturally() {
        assert_eq!(
            kind(&json!({"type": "string", "format": "date-time"})),
            "string (date-time)"
        );
        assert_eq!(
            kind(&json!({"type": "array", "items": {"$ref": "#/components/schemas/Layer"}})),
            "array of Layer"
        );
        assert_eq!(
            kind(&json!({"nullable": true, "allOf": [{"$ref": "#/components/schemas/License"}]})),
            "License or null"
        );
        assert_eq!(
            kind(&json!({"type": "object", "additionalProperties": {"type": "string"}})),
            "map of string"
        );
        assert_eq!(
            kind(&json!({"type": "string", "enum": ["A", "B"]})),
            "one of A, B"
        );
    }

    #[test]
    fn the_served_document_reads_into_groups_and_schemas() {
        let doc = from_openapi(&crate::web::api::openapi_document());
        assert!(!doc.title.is_empty());
        let images = doc.groups.iter().find(|g| g.name == "images").unwrap();
        let get = images
            .operations
            .iter()
            .find(|o| o.path == "/v1/images/{image}")
            .unwrap();
        assert_eq!(get.method, "GET");
        assert!(get.replies.iter().any(|r| r.status == "202"));
        assert!(
            doc.schemas
                .iter()
                .any(|s| s.name == "Image" && !s.fields.is_empty())
        );
    }
}
