//! Clients of the Python service keep working: a client that behaves like its load generator (success only on 200,
//! the old field names read from status and cleanup, `immediate_cleanup` sent) gets everything it expects.

use crate::helpers::spawn_app;

/// What the Python generator's monitor line prints, read with its key names.
fn monitor_line(status: &serde_json::Value) -> Option<String> {
    let current = &status["current_status"];
    Some(format!(
        "objects {} ({:.1} MB), processed {}",
        current["memory_store_objects"].as_u64()?,
        current["memory_store_size_estimate_mb"].as_f64()?,
        status["statistics"]["total_processed"].as_u64()?
    ))
}

#[tokio::test]
async fn a_python_style_client_sees_full_success_and_its_fields() {
    let app = spawn_app(&["--max-tasks", "2"]).await;
    let cleanup = app.delete("/process/cleanup").await;
    assert_eq!(cleanup.status().as_u16(), 200);
    let body: serde_json::Value = cleanup.json().await.expect("cleanup JSON");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "its --cleanup prints message: {body}");
    assert_eq!(body["status"], "cleaned");
    assert_eq!((body["objects_removed"].as_u64(), body["estimated_mb_freed"].as_f64()), (Some(0), Some(0.0)));

    // More tasks than slots: the old service refused the excess; Surge queues it and still answers 200.
    let total = 6;
    let mut succeeded = 0;
    for _ in 0..total {
        let response = app
            .post(
                "/process?cpu_intensity=1&memory_size=2&duration=1&async_mode=true&immediate_cleanup=false&retain=true",
            )
            .await;
        succeeded += usize::from(response.status().as_u16() == 200);
    }
    assert_eq!(succeeded, total, "success rate {:.1}%", 100.0 * succeeded as f64 / total as f64);

    let during = app.status().await;
    let line = monitor_line(&during).unwrap_or_else(|| panic!("the monitor line has every field: {during}"));
    assert!(during["current_status"]["memory_store_objects"].as_u64().is_some_and(|n| n >= 2), "{line}");
    let done = app.wait_for_status("every task to be processed", |s| s["statistics"]["total_processed"] == 6).await;
    assert_eq!(done["current_status"]["memory_store_objects"], 6, "retained blocks are held: {done}");
    assert_eq!(done["current_status"]["memory_store_size_estimate_mb"], 12.0);

    let freed: serde_json::Value = app.delete("/process/cleanup").await.json().await.expect("cleanup JSON");
    assert_eq!(freed["objects_removed"], 6, "{freed}");
    assert_eq!(freed["estimated_mb_freed"], 12.0);
    assert!(freed["message"].as_str().is_some_and(|m| m.contains('6')), "{freed}");
}
