//! Out-of-range and malformed parameters: 422 naming the field and its range, and nothing started.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn each_invalid_parameter_gets_a_422_naming_it() {
    let app = spawn_app(&[]).await;
    let cases = [
        ("cpu_intensity=0", "cpu_intensity", "integer from 1 to 10"),
        ("cpu_intensity=11", "cpu_intensity", "integer from 1 to 10"),
        ("cpu_intensity=high", "cpu_intensity", "integer from 1 to 10"),
        ("memory_size=501", "memory_size", "integer from 0 to 500"),
        ("memory_size=-5", "memory_size", "integer from 0 to 500"),
        ("duration=0", "duration", "integer from 1 to 60"),
        ("duration=61", "duration", "integer from 1 to 60"),
        ("duration=", "duration", "integer from 1 to 60"),
        ("async_mode=perhaps", "async_mode", "true or false"),
        ("retain=2", "retain", "true or false"),
    ];
    for (query, field, allowed) in cases {
        let body = json(app.post(&format!("/process?{query}")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(body["field"], field, "{query}: {body}");
        assert_eq!(body["allowed"], allowed, "{query}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(field)), "{query}: {body}");
    }
    let totals = &app.status().await["totals"];
    assert_eq!(totals["started"], 0, "a rejected request must start nothing: {totals}");
}

/// The bounds in the OpenAPI document are the ones the server enforces: just outside refused, the minimum accepted.
#[tokio::test]
async fn documented_bounds_are_enforced() {
    let app = spawn_app(&[]).await;
    let doc = json(app.get("/openapi.json").await, StatusCode::OK).await;
    let params = doc["paths"]["/process"]["post"]["parameters"].as_array().expect("parameters").clone();
    let bounded: Vec<&Value> = params.iter().filter(|p| p["schema"]["maximum"].is_number()).collect();
    assert_eq!(bounded.len(), 3, "cpu_intensity, memory_size and duration carry bounds: {params:?}");
    for param in bounded {
        let name = param["name"].as_str().expect("name");
        let (min, max) =
            (param["schema"]["minimum"].as_u64().expect("min"), param["schema"]["maximum"].as_u64().expect("max"));
        let refused =
            json(app.post(&format!("/process?{name}={}", max + 1)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(refused["field"], name);
        if let Some(below) = min.checked_sub(1) {
            let refused =
                json(app.post(&format!("/process?{name}={below}")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(refused["field"], name);
        }
        // The edge itself is accepted (kept light: async, a second, 1/10 of a core, no memory unless tested).
        let base = [("cpu_intensity", 1), ("memory_size", 0), ("duration", 1)];
        let query: Vec<String> =
            base.iter().map(|(key, value)| format!("{key}={}", if *key == name { min } else { *value })).collect();
        let accepted = app.post(&format!("/process?async_mode=true&{}", query.join("&"))).await;
        assert_eq!(accepted.status(), StatusCode::OK, "{name}={min}");
    }
}

/// The OpenAPI document describes both 200 bodies (the sync report, the async acceptance) and the 422 and 503 cases.
#[tokio::test]
async fn the_document_describes_the_async_body_and_the_refusals() {
    let app = spawn_app(&[]).await;
    let doc = json(app.get("/openapi.json").await, StatusCode::OK).await;
    let responses = &doc["paths"]["/process"]["post"]["responses"];
    assert_eq!(responses["200"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ProcessAnswer");
    let shapes = doc["components"]["schemas"]["ProcessAnswer"].to_string();
    assert!(shapes.contains("TaskReport") && shapes.contains("TaskAccepted"), "200 is one of both bodies: {shapes}");
    for status in ["422", "503"] {
        assert!(responses[status]["description"].as_str().is_some_and(|d| !d.is_empty()), "{status}: {responses}");
    }
    assert!(responses.get("202").is_none(), "async answers 200: {responses}");
    let accepted = &doc["components"]["schemas"]["TaskAccepted"]["properties"];
    for field in ["task_id", "status", "queue_position", "estimated_start", "estimated_completion"] {
        assert!(accepted.get(field).is_some(), "TaskAccepted.{field}: {accepted}");
    }
    let status = &doc["components"]["schemas"]["StatusSnapshot"]["properties"];
    for field in ["queue", "cpu", "current_status", "statistics"] {
        assert!(status.get(field).is_some(), "StatusSnapshot.{field}: {status}");
    }
}

/// The Idempotency-Key's documented pattern is the rule the server keeps: what it refuses is a 422 naming the header,
/// what it allows is accepted (schemathesis sent an empty key as schema-valid before the pattern was documented).
#[tokio::test]
async fn the_idempotency_keys_documented_pattern_is_the_servers_rule() {
    let app = spawn_app(&[]).await;
    let doc = json(app.get("/openapi.json").await, StatusCode::OK).await;
    let params = doc["paths"]["/process"]["post"]["parameters"].as_array().expect("parameters").clone();
    let header = params.iter().find(|p| p["name"] == "Idempotency-Key").expect("the header is documented");
    assert_eq!((header["in"].as_str(), header["schema"]["pattern"].as_str()), (Some("header"), Some("^[!-~]{1,255}$")));
    let post = |key: String| {
        let request = app.client.post(format!("{}/process?async_mode=true&duration=1&memory_size=0", app.address));
        async move { request.header("Idempotency-Key", key).send().await.expect("answered") }
    };
    for refused in [String::new(), "k".repeat(256), "a b".into()] {
        let body = json(post(refused.clone()).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(body["field"], "Idempotency-Key", "{refused:?}: {body}");
    }
    for accepted in ["k".to_owned(), "~".repeat(255), "!#$%&'*+-.^_`|~0Az".into()] {
        assert_eq!(post(accepted.clone()).await.status(), StatusCode::OK, "{accepted:?}");
    }
}
