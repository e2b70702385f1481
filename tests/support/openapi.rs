//! A validator for the OpenAPI document's JSON schemas, for tests that check responses
//! against `/v1/openapi.json` (`tests/web_api.rs`, `tests/web_scaler.rs`).

use chrono::DateTime;
use serde_json::{Value, json};

use super::web::TestResponse;

/// A validator for the subset of JSON Schema the document uses: `$ref`, `allOf`, `type`,
/// `nullable`, `enum`, `properties`, `required`, `additionalProperties`, `items`, `minimum`,
/// `maximum`, `minLength`, `maxLength` and `format: date-time`.
pub struct Validator<'a> {
    pub doc: &'a Value,
}

impl Validator<'_> {
    pub fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            let target = &self.doc["components"]["schemas"][name];
            assert!(!target.is_null(), "dangling {r}");
            return self.check(target, value, at, errors);
        }
        if value.is_null() {
            if schema.get("nullable") != Some(&json!(true)) {
                errors.push(format!("{at}: null where {schema} is not nullable"));
            }
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, value, at, errors);
            }
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                other => panic!("unsupported type {other}"),
            };
            if !ok {
                errors.push(format!("{at}: {value} is not {t}"));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            errors.push(format!("{at}: {value} not in {options:?}"));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("{at}: {n} < {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("{at}: {n} > {max}"));
            }
        }
        if let Some(s) = value.as_str() {
            let len = s.chars().count() as u64;
            if schema
                .get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                errors.push(format!("{at}: shorter than minLength"));
            }
            if schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                errors.push(format!("{at}: longer than maxLength"));
            }
            if schema.get("format") == Some(&json!("date-time"))
                && DateTime::parse_from_rfc3339(s).is_err()
            {
                errors.push(format!("{at}: {s:?} is not a date-time"));
            }
        }
        if let Some(obj) = value.as_object() {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = req.as_str().unwrap();
                if !obj.contains_key(key) {
                    errors.push(format!("{at}: missing required {key}"));
                }
            }
            for (k, v) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.check(s, v, &format!("{at}.{k}"), errors),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errors.push(format!("{at}: undocumented property {k}"))
                        }
                        Some(s @ Value::Object(_)) => {
                            self.check(s, v, &format!("{at}.{k}"), errors)
                        }
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.check(items, v, &format!("{at}[{i}]"), errors);
            }
        }
    }

    /// Validate a response against the schema documented for `method path` and its status.
    pub fn response(&self, method: &str, template: &str, resp: &TestResponse) {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let status = resp.status.as_u16().to_string();
        let documented = &op["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which is not documented: {}",
            resp.text()
        );
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON schema"
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let mut errors = Vec::new();
        self.check(schema, &resp.json(), "$", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not match its schema:\n{}",
            errors.join("\n")
        );
    }
}
