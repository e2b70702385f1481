//! The OpenAPI 3.0 description of the JSON API and the webhook endpoints, served at
//! `/v1/openapi.json` and rendered as the `/api` page.
//!
//! Written by hand next to the documents it describes ([`super::api`], [`super::hooks`]);
//! `tests/web_api.rs` keeps the two honest: it calls every documented `GET` path in process and
//! validates each response body against the schema documented for its status, and checks that
//! every `/v1/` and webhook route in [`super::router`] is documented here.

use serde_json::{Value, json};

use super::api::{DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY_CHARS};

fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// A reference that may be `null` (OpenAPI 3.0 ignores keywords beside a `$ref`).
fn nullable_ref(name: &str) -> Value {
    json!({"nullable": true, "allOf": [schema_ref(name)]})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn date_time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// A JSON response with the schema `name`.
fn json_response(description: &str, name: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref(name)}}
    })
}

fn error_response(description: &str) -> Value {
    json_response(description, "Error")
}

/// An object whose every property is required (present, possibly `null`) and which has no
/// other properties.
fn closed_object(description: &str, properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

fn image_path_parameter() -> Value {
    json!({
        "name": "image",
        "in": "path",
        "required": true,
        "description": "An image name as people write it, which may contain slashes: `nginx`, \
            `library/nginx`, `user/app`, `ghcr.io/org/app`, `127.0.0.1:5000/team/app`; \
            optionally with `:tag`. `library/` may be left out for Docker Hub's official images.",
        "schema": {"type": "string"},
        "example": "user/app:1.2"
    })
}

fn token_parameter() -> Value {
    json!({
        "name": "token",
        "in": "path",
        "required": true,
        "description": "The secret token from `microbadger webhook create`: 43 characters of \
            base64url. Only its SHA-256 is stored; it is compared in constant time.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256}
    })
}

fn limit_parameter() -> Value {
    json!({
        "name": "limit",
        "in": "query",
        "required": false,
        "description": "How many items to return.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
    })
}

fn hook_errors() -> Value {
    json!({
        "403": error_response("Unknown image, malformed path or wrong token (all the same), \
            or a registry that is not on the allow-list."),
        "413": error_response("The body is larger than 64 KiB."),
        "429": error_response("Too many requests from this client; slow down."),
    })
}

/// The OpenAPI 3.0 document (the same value every time).
pub fn openapi_document() -> Value {
    let image_get = json!({
        "summary": "An image, or one of its tags",
        "operationId": "getImage",
        "description": "MicroBadger's image document: the top-level version fields describe \
            the tag asked for, else `latest`, else the most recently changed tag. An image not \
            known yet is queued for inspection (202); poll again after `Retry-After` seconds.",
        "tags": ["images"],
        "parameters": [image_path_parameter()],
        "responses": {
            "200": json_response("The image.", "Image"),
            "202": json_response("Being inspected; ask again shortly.", "Inspecting"),
            "400": error_response("Not a valid image name or tag."),
            "403": error_response("The registry is not on the allow-list."),
            "404": error_response("The registry has no such image or tag."),
            "429": error_response("Too many new images asked for by this client."),
        }
    });
    let version_get = json!({
        "summary": "One version of an image, with its layers",
        "operationId": "getImageVersion",
        "description": "MicroBadger's ImageVersion document for a digest that one of the \
            image's tags points at. `{image}@{digest}` is accepted too.",
        "tags": ["images"],
        "parameters": [
            {
                "name": "image", "in": "path", "required": true,
                "description": "The image name, without a tag (slashes allowed).",
                "schema": {"type": "string"}, "example": "nginx"
            },
            {
                "name": "digest", "in": "path", "required": true,
                "description": "The version's digest, `sha256:` and 64 hex digits.",
                "schema": {"type": "string", "pattern": "^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"}
            }
        ],
        "responses": {
            "200": json_response("The version.", "ImageVersion"),
            "202": json_response("Being inspected; ask again shortly.", "Inspecting"),
            "400": error_response("Not a valid image name or digest."),
            "403": error_response("The registry is not on the allow-list."),
            "404": error_response("No tag of the image points at this digest."),
            "429": error_response("Too many new images asked for by this client."),
        }
    });
    let search_get = json!({
        "summary": "Search known images by name",
        "operationId": "search",
        "tags": ["lists"],
        "parameters": [
            {
                "name": "q", "in": "query", "required": true,
                "description": "Text the name contains (case-insensitive, taken literally).",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS}
            },
            limit_parameter()
        ],
        "responses": {
            "200": json_response("Matching images, by name.", "SearchResults"),
            "400": error_response("No search text, or a bad limit."),
        }
    });
    let list_get = |summary: &str, id: &str| {
        json!({
            "summary": summary,
            "operationId": id,
            "tags": ["lists"],
            "parameters": [limit_parameter()],
            "responses": {
                "200": json_response("The tags.", "ImageList"),
                "400": error_response("A bad limit."),
            }
        })
    };
    let dockerhub_post = |summary: &str, id: &str, deprecated: bool, image_desc: &str| {
        json!({
            "summary": summary,
            "operationId": id,
            "deprecated": deprecated,
            "tags": ["webhooks"],
            "description": "Queues a refresh of the image at NORMAL priority. The body is \
                Docker Hub's push payload, read leniently: `push_data.tag` names the tag to \
                refresh; an empty or unreadable body refreshes every tag; a payload whose \
                `repository.repo_name` names another repository is refused. The token is \
                checked before the body is read.",
            "parameters": [
                {
                    "name": "image", "in": "path", "required": true,
                    "description": image_desc,
                    "schema": {"type": "string"}
                },
                token_parameter()
            ],
            "requestBody": {
                "required": false,
                "content": {"application/json": {"schema": schema_ref("DockerHubPayload")}}
            },
            "responses": {
                "202": json_response("A refresh was queued.", "HookQueued"),
                "400": error_response("The payload names a different repository."),
                "403": hook_errors()["403"].clone(),
                "413": hook_errors()["413"].clone(),
                "429": hook_errors()["429"].clone(),
            }
        })
    };
    let registry_post = json!({
        "summary": "A registry's notifications",
        "operationId": "registryNotification",
        "tags": ["webhooks"],
        "description": "For a CNCF distribution registry's `notifications.endpoints[].url`. \
            Each `push` event of a manifest queues a NORMAL refresh of that repository on the \
            registry host the token was created for (`target.tag` when given, else every tag). \
            Pulls, blob pushes and repositories off the allow-list are ignored, and the answer \
            is still 2xx, so that the registry's queue moves on.",
        "parameters": [token_parameter()],
        "requestBody": {
            "required": true,
            "content": {
                "application/vnd.docker.distribution.events.v1+json":
                    {"schema": schema_ref("RegistryEnvelope")},
                "application/json": {"schema": schema_ref("RegistryEnvelope")}
            }
        },
        "responses": {
            "200": json_response("Nothing to do in these events.", "RegistryHookResult"),
            "202": json_response("Refreshes were queued.", "RegistryHookResult"),
            "400": error_response("Not a notification envelope."),
            "403": hook_errors()["403"].clone(),
            "413": hook_errors()["413"].clone(),
            "429": hook_errors()["429"].clone(),
        }
    });

    let license = closed_object(
        "The licence label, judged as an SPDX expression.",
        json!({
            "Code": string(),
            "URL": nullable(string()),
            "Valid": {"type": "boolean"},
        }),
    );
    let version_control = closed_object(
        "Where the source is.",
        json!({
            "Type": nullable(string()),
            "URL": nullable(string()),
            "Commit": nullable(string()),
            "Source": nullable(string()),
        }),
    );
    let labels = json!({
        "type": "object",
        "description": "Labels by key.",
        "additionalProperties": {"type": "string"}
    });
    let key_check = closed_object(
        "One key checked.",
        json!({
            "Key": string(),
            "Status": {"type": "string", "enum": ["Present", "Missing", "Invalid"]},
            "Value": nullable(string()),
            "Reason": nullable(string()),
            "Recommended": {"type": "boolean"},
            "Origin": {"type": "string", "enum": ["Label", "Annotation", "Config"], "nullable": true},
        }),
    );
    let fix = closed_object(
        "Lines that add the missing recommended keys.",
        json!({
            "Dockerfile": strings(),
            "BuildArgs": strings(),
            "Buildx": strings(),
        }),
    );
    let schema_report = closed_object(
        "One specification's checks.",
        json!({
            "Keys": {"type": "array", "items": schema_ref("KeyCheck")},
            "Present": integer(),
            "Missing": integer(),
            "Invalid": integer(),
            "Score": {"type": "integer", "minimum": 0, "maximum": 100},
            "Fix": schema_ref("Fix"),
        }),
    );
    let inherited = closed_object(
        "A label that probably describes the base image.",
        json!({"Key": string(), "Value": string(), "Reason": string()}),
    );
    let compliance = closed_object(
        "Label-schema and OCI annotation compliance.",
        json!({
            "LabelSchema": schema_ref("SchemaReport"),
            "Oci": schema_ref("SchemaReport"),
            "Inherited": {"type": "array", "items": schema_ref("InheritedFlag")},
            "Score": {"type": "integer", "minimum": 0, "maximum": 100},
        }),
    );
    let tag = closed_object("A tag, as MicroBadger wrote it.", json!({"tag": string()}));
    let version_summary = closed_object(
        "One version (digest) of an image and its tags.",
        json!({
            "SHA": string(),
            "Tags": {"type": "array", "items": schema_ref("Tag")},
            "ImageName": string(),
            "Author": nullable(string()),
            "Labels": labels.clone(),
            "LayerCount": integer(),
            "DownloadSize": integer(),
            "Created": nullable(string()),
            "License": nullable_ref("License"),
            "VersionControl": nullable_ref("VersionControl"),
            "Version": nullable(string()),
            "Platforms": strings(),
            "ComplianceScore": {"type": "integer", "minimum": 0, "maximum": 100},
        }),
    );
    let image = closed_object(
        "An image (MicroBadger's field names, plus Registry, Repository, Tag, Version, \
         Platforms and Compliance).",
        json!({
            "ImageName": string(),
            "Registry": string(),
            "Repository": string(),
            "Tag": string(),
            "Id": string(),
            "LatestSHA": string(),
            "LatestVersion": string(),
            "UpdatedAt": nullable(date_time()),
            "LastUpdated": nullable(string()),
            "Description": nullable(string()),
            "PullCount": nullable(integer()),
            "StarCount": nullable(integer()),
            "ImageURL": nullable(string()),
            "MicrobadgerURL": string(),
            "Author": nullable(string()),
            "Created": nullable(string()),
            "Labels": labels.clone(),
            "LayerCount": integer(),
            "DownloadSize": integer(),
            "License": nullable_ref("License"),
            "VersionControl": nullable_ref("VersionControl"),
            "Version": nullable(string()),
            "Platforms": strings(),
            "Compliance": schema_ref("Compliance"),
            "Versions": {"type": "array", "items": schema_ref("VersionSummary")},
        }),
    );
    let layer = closed_object(
        "A filesystem layer, base first.",
        json!({
            "BlobSum": string(),
            "Command": nullable(string()),
            "DownloadSize": integer(),
            "Created": nullable(string()),
            "MediaType": string(),
        }),
    );
    let manifest = closed_object(
        "One platform's manifest of a multi-platform version.",
        json!({
            "Platform": string(),
            "Digest": string(),
            "MediaType": string(),
            "Size": integer(),
        }),
    );
    let image_version = closed_object(
        "One version of an image (MicroBadger's ImageVersion, plus ours).",
        json!({
            "SHA": string(),
            "Tags": {"type": "array", "items": schema_ref("Tag")},
            "ImageName": string(),
            "Registry": string(),
            "Repository": string(),
            "MediaType": string(),
            "Author": nullable(string()),
            "Labels": labels.clone(),
            "Annotations": labels,
            "LayerCount": integer(),
            "DownloadSize": integer(),
            "Created": nullable(string()),
            "Layers": {"type": "array", "items": schema_ref("Layer")},
            "License": nullable_ref("License"),
            "VersionControl": nullable_ref("VersionControl"),
            "Version": nullable(string()),
            "MicrobadgerURL": string(),
            "Platform": nullable(string()),
            "Platforms": strings(),
            "Manifests": {"type": "array", "items": schema_ref("Manifest")},
            "ExposedPorts": strings(),
            "Entrypoint": strings(),
            "Cmd": strings(),
            "User": nullable(string()),
            "WorkingDir": nullable(string()),
            "Volumes": strings(),
            "EnvCount": integer(),
            "Compliance": schema_ref("Compliance"),
            "Warnings": strings(),
            "InspectedAt": date_time(),
        }),
    );
    let inspecting = closed_object(
        "The image is queued for inspection, or being inspected.",
        json!({
            "status": {"type": "string", "enum": ["inspecting"]},
            "ImageName": string(),
            "Registry": string(),
        }),
    );
    let list_item = closed_object(
        "A tag with its version's headline numbers.",
        json!({
            "ImageName": string(),
            "Registry": string(),
            "Tag": string(),
            "SHA": string(),
            "LastChanged": date_time(),
            "DownloadSize": integer(),
            "LayerCount": integer(),
            "ComplianceScore": {"type": "integer", "minimum": 0, "maximum": 100},
            "License": nullable(string()),
            "Version": nullable(string()),
            "URL": string(),
            "MicrobadgerURL": string(),
        }),
    );
    let image_list = closed_object(
        "A list of tags.",
        json!({"Images": {"type": "array", "items": schema_ref("ListItem")}}),
    );
    let search_item = closed_object(
        "A known image.",
        json!({
            "ImageName": string(),
            "Registry": string(),
            "Description": nullable(string()),
            "PullCount": nullable(integer()),
            "StarCount": nullable(integer()),
            "LastChanged": nullable(date_time()),
            "URL": string(),
            "MicrobadgerURL": string(),
        }),
    );
    let search_results = closed_object(
        "Search results.",
        json!({
            "Query": string(),
            "Images": {"type": "array", "items": schema_ref("SearchItem")},
        }),
    );
    let error = closed_object(
        "Every error under /v1/ and /hooks/.",
        json!({
            "error": closed_object("What went wrong.", json!({
                "code": {"type": "string", "enum": [
                    "bad_name", "bad_request", "not_allowed", "not_found", "bad_token",
                    "too_many_requests", "payload_too_large", "unavailable", "internal"
                ]},
                "message": string(),
            })),
        }),
    );
    let hook_queued = closed_object(
        "A refresh was queued.",
        json!({
            "status": {"type": "string", "enum": ["queued"]},
            "image": string(),
            "tag": nullable(string()),
        }),
    );
    let registry_hook_result = closed_object(
        "What a notification envelope queued.",
        json!({
            "queued": {"type": "array", "items": closed_object("A refresh queued.", json!({
                "image": string(),
                "tag": nullable(string()),
            }))},
            "ignored": {
                "description": "Events that asked for nothing (pulls, blob pushes, ...).",
                "type": "integer", "minimum": 0
            },
        }),
    );
    let dockerhub_payload = json!({
        "type": "object",
        "description": "Docker Hub's push payload; only `push_data.tag` and \
            `repository.repo_name` are read, and numbers may be integers or floats.",
        "properties": {
            "callback_url": string(),
            "push_data": {
                "type": "object",
                "properties": {
                    "pushed_at": {"type": "number"},
                    "pusher": string(),
                    "tag": string(),
                }
            },
            "repository": {
                "type": "object",
                "properties": {
                    "repo_name": string(),
                    "namespace": string(),
                    "name": string(),
                }
            }
        }
    });
    let registry_envelope = json!({
        "type": "object",
        "description": "The distribution registry's notification envelope.",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": string(),
                        "timestamp": string(),
                        "action": {"type": "string", "example": "push"},
                        "target": {
                            "type": "object",
                            "properties": {
                                "mediaType": string(),
                                "digest": string(),
                                "size": {"type": "integer"},
                                "length": {"type": "integer"},
                                "repository": string(),
                                "url": string(),
                                "tag": string(),
                            }
                        },
                        "request": {
                            "type": "object",
                            "description": "Ignored: the token decides the registry.",
                            "properties": {"host": string()}
                        }
                    }
                }
            }
        }
    });

    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "microbadger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Container-image metadata: labels, layers, label-schema and OCI \
                compliance. The `/v1/` documents keep MicroBadger's field names. Every GET is \
                open to any origin (CORS). Webhook URLs and tokens never appear in any \
                response.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "images", "description": "One image and its versions."},
            {"name": "lists", "description": "Search, recently changed, best labelled."},
            {"name": "webhooks", "description": "Refresh an image when it is pushed."}
        ],
        "paths": {
            "/v1/images/{image}": {"get": image_get},
            "/v1/images/{image}/version/{digest}": {"get": version_get},
            "/v1/search": {"get": search_get},
            "/v1/recent": {"get": list_get("Recently changed tags, newest first", "recent")},
            "/v1/best": {"get": list_get("Best labelled tags, by compliance score", "best")},
            "/v1/openapi.json": {"get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["lists"],
                "responses": {"200": {
                    "description": "The OpenAPI 3.0 document.",
                    "content": {"application/json": {"schema": {"type": "object",
                        "required": ["openapi", "info", "paths"]}}}
                }}
            }},
            "/hooks/dockerhub/{image}/{token}": {"post": dockerhub_post(
                "Docker Hub's push webhook", "dockerHubHook", false,
                "The repository the token was created for (slashes allowed, no tag).")},
            "/images/{image}/{token}": {"post": dockerhub_post(
                "MicroBadger's old webhook URL", "legacyHook", true,
                "`org/name` or `name` (an official image).")},
            "/hooks/registry/{token}": {"post": registry_post},
        },
        "components": {
            "schemas": {
                "Image": image,
                "VersionSummary": version_summary,
                "ImageVersion": image_version,
                "Layer": layer,
                "Manifest": manifest,
                "Tag": tag,
                "License": license,
                "VersionControl": version_control,
                "Compliance": compliance,
                "SchemaReport": schema_report,
                "KeyCheck": key_check,
                "Fix": fix,
                "InheritedFlag": inherited,
                "Inspecting": inspecting,
                "ListItem": list_item,
                "ImageList": image_list,
                "SearchItem": search_item,
                "SearchResults": search_results,
                "Error": error,
                "HookQueued": hook_queued,
                "RegistryHookResult": registry_hook_result,
                "DockerHubPayload": dockerhub_payload,
                "RegistryEnvelope": registry_envelope,
            }
        }
    });
    add_scaler(&mut doc);
    doc
}

/// `GET /v1/scaler` and its schemas (see [`super::scaler`]).
fn add_scaler(doc: &mut Value) {
    let number = || json!({"type": "number"});
    let rate = || nullable(json!({"type": "number", "minimum": 0}));
    let get = json!({
        "summary": "The microscaler's latest decision and the last hour",
        "operationId": "scaler",
        "description": "What the microscaler decided most recently (per service: its inputs, \
            the control law's output, the desired and granted instance counts, and every \
            clamp applied with its reason), and the last hour summarised in 15-second \
            intervals. `latest` is `null` and `points` empty when no decision was made in the \
            last hour: the microscaler runs in `microbadger up` and `microbadger scaler`. \
            Live: never cached.",
        "tags": ["scaler"],
        "responses": {
            "200": json_response("The decisions.", "ScalerStatus"),
        }
    });
    let schemas = [
        (
            "ScalerStatus",
            closed_object(
                "The microscaler's state.",
                json!({
                    "now": date_time(),
                    "latest": nullable_ref("ScalerDecision"),
                    "history": schema_ref("ScalerHistory"),
                }),
            ),
        ),
        (
            "ScalerDecision",
            closed_object(
                "One decision.",
                json!({
                    "at": date_time(),
                    "capacity": integer(),
                    "capacity_cpu_millis": nullable(json!({"type": "integer", "minimum": 0, "description":
                        "CPU shared by the services, in millicores; null when CPU is not counted."})),
                    "capacity_memory_mib": nullable(json!({"type": "integer", "minimum": 0, "description":
                        "Memory shared by the services, in MiB; null when memory is not counted."})),
                    "services": {"type": "array", "items": schema_ref("ScalerService")},
                }),
            ),
        ),
        (
            "ScalerService",
            closed_object(
                "One service's part of a decision.",
                json!({
                    "service": string(),
                    "inputs": schema_ref("ScalerInputs"),
                    "raw": nullable(json!({"type": "number", "description":
                        "The control law's output before damping, in fractional instances."})),
                    "desired": integer(),
                    "needed": nullable(json!({"type": "integer", "minimum": 0, "description":
                        "The part of desired needed now; the rest is held against churn and yields to other services' needs. Null in decisions recorded before it existed."})),
                    "essential": nullable(json!({"type": "integer", "minimum": 0, "description":
                        "The part of needed the service cannot do without (a queue keeping up with its arrivals, web's mean in flight with a little headroom), served for every service before any need beyond it. Null in decisions recorded before it existed."})),
                    "granted": integer(),
                    "clamps": {"type": "array", "items": schema_ref("ScalerClamp")},
                }),
            ),
        ),
        (
            "ScalerInputs",
            closed_object(
                "What the service was observed doing.",
                json!({
                    "backlog": number(),
                    "in_service": number(),
                    "arrival_rate": rate(),
                    "completion_rate": rate(),
                    "ready": integer(),
                    "starting": integer(),
                    "stopping": integer(),
                    "fresh": {"type": "boolean"},
                }),
            ),
        ),
        (
            "ScalerClamp",
            closed_object(
                "A limit applied between the control law and the \
            granted count.",
                json!({
                    "kind": {"type": "string", "description": "tolerance, stabilization, step, rate, \
                        min, max, lifetime, capacity, preempted, waiting_for_stop, stale_hold or \
                        fallback"},
                    "from": integer(),
                    "to": integer(),
                    "why": string(),
                }),
            ),
        ),
        (
            "ScalerHistory",
            closed_object(
                "The last hour, oldest first.",
                json!({
                    "window_seconds": integer(),
                    "resolution_seconds": integer(),
                    "points": {"type": "array", "items": schema_ref("ScalerPoint")},
                }),
            ),
        ),
        (
            "ScalerPoint",
            closed_object(
                "One interval with decisions.",
                json!({
                    "at": date_time(),
                    "decisions": integer(),
                    "capacity": integer(),
                    "services": {"type": "array", "items": schema_ref("ScalerPointService")},
                }),
            ),
        ),
        (
            "ScalerPointService",
            closed_object(
                "One service over one interval: the highest \
            demand in it, and the counts of its last decision.",
                json!({
                    "service": string(),
                    "backlog_max": number(),
                    "in_service_max": number(),
                    "ready": integer(),
                    "starting": integer(),
                    "stopping": integer(),
                    "desired": integer(),
                    "granted": integer(),
                    "held": {"type": "boolean"},
                }),
            ),
        ),
    ];
    doc["paths"]["/v1/scaler"] = json!({"get": get});
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.push(json!({"name": "scaler", "description": "The microscaler's decisions."}));
    }
    for (name, schema) in schemas {
        doc["components"]["schemas"][name] = schema;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at a schema that exists.
    #[test]
    fn references_resolve() {
        let doc = openapi_document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| walk(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "dangling {r}");
        }
    }
}
