//! The OpenAPI document, derived from the handlers' annotations, and the Swagger UI served from the binary.

use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{health, info, process};

#[derive(OpenApi)]
#[openapi(
    info(title = "Surge consumer", description = "Configurable CPU and memory work that exposes the signals KEDA scales on."),
    paths(info::welcome, info::info, info::load, health::health, health::ready, process::process, process::status, process::cleanup, process::task, process::results),
    tags(
        (name = "probes", description = "Kubernetes liveness and readiness"),
        (name = "identity", description = "Which replica answered"),
        (name = "work", description = "CPU and memory work with admission control"),
    )
)]
pub struct ApiDoc;

/// `/docs/` (the UI, assets vendored into the binary) and `/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi())
}
