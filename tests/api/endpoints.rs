//! Every endpoint answers with its documented shape, the replica header, and JSON errors.

use reqwest::StatusCode;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn probes_answer_healthy_and_ready() {
    let app = spawn_app(&[]).await;
    assert_eq!(json(app.get("/health").await, StatusCode::OK).await["status"], "healthy");
    assert_eq!(json(app.get("/ready").await, StatusCode::OK).await["status"], "ready");
}

#[tokio::test]
async fn identity_endpoints_report_the_pod() {
    let app = spawn_app(&[]).await;
    let info = json(app.get("/info").await, StatusCode::OK).await;
    for key in ["pod_name", "pod_namespace", "pod_ip", "node_name", "replica_id", "version", "started_at"] {
        assert!(info[key].as_str().is_some_and(|v| !v.is_empty()), "{key} missing in {info}");
    }
    assert!(info["uptime_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let welcome = json(app.get("/").await, StatusCode::OK).await;
    assert_eq!(welcome["pod"]["pod_name"], info["pod_name"]);

    let load = json(app.get("/load").await, StatusCode::OK).await;
    assert_eq!(load["slept_seconds"], 1.0);
    assert_eq!(load["pod"]["pod_name"], info["pod_name"]);
}

#[tokio::test]
async fn every_response_names_the_replica_that_served_it() {
    let app = spawn_app(&[]).await;
    let pod = json(app.get("/info").await, StatusCode::OK).await["pod_name"].as_str().expect("pod_name").to_owned();
    for path in ["/", "/health", "/ready", "/info", "/process/status", "/openapi.json", "/no/such/path"] {
        let response = app.get(path).await;
        let served_by = response.headers().get("x-served-by").map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(served_by.as_deref(), Some(pod.as_str()), "X-Served-By on {path}");
    }
    let rejected = app.post("/process?duration=0").await;
    assert_eq!(rejected.headers().get("x-served-by").map(|v| v.to_str().expect("ascii")), Some(pod.as_str()));
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let app = spawn_app(&[]).await;
    let body = json(app.get("/no/such/path").await, StatusCode::NOT_FOUND).await;
    assert!(body["error"].as_str().is_some_and(|e| e.contains("/no/such/path")), "{body}");
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let app = spawn_app(&[]).await;
    let cases = [
        (reqwest::Method::GET, "/process", "POST"),
        (reqwest::Method::POST, "/health", "GET"),
        (reqwest::Method::PUT, "/ready", "GET"),
        (reqwest::Method::POST, "/process/status", "GET"),
        (reqwest::Method::GET, "/process/cleanup", "DELETE"),
        (reqwest::Method::DELETE, "/info", "GET"),
    ];
    for (method, path, allow) in cases {
        let response =
            app.client.request(method.clone(), format!("{}{path}", app.address)).send().await.expect("request");
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().expect("ascii").to_owned()).as_deref(),
            Some(allow)
        );
        let body = json(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(body["allowed"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = spawn_app(&[]).await;
    let doc = json(app.get("/openapi.json").await, StatusCode::OK).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let expected = [
        ("/", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/info", "get"),
        ("/load", "get"),
        ("/process", "post"),
        ("/process/status", "get"),
        ("/process/cleanup", "delete"),
    ];
    for (path, method) in expected {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn docs_ui_is_served_from_the_binary() {
    let app = spawn_app(&[]).await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("swagger"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.expect("js").len() > 100_000, "the UI bundle is vendored, not a CDN link");
    let redirected = app.get("/docs").await;
    assert_eq!(redirected.status(), StatusCode::OK, "/docs redirects to /docs/");
}
