//! What routes and the middleware that labels requests share: the route templates `routes::configure` binds and how a
//! request is named by the one it matched. A leaf: it depends on nothing in the crate, so metrics and telemetry can
//! label requests without reaching up into `routes`.

use std::borrow::Cow;

use actix_web::HttpRequest;

/// Every (method, route template) `configure` binds: the series the metrics initialise at zero.
pub const NAMED_ROUTES: [(&str, &str); 11] = [
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/info"),
    ("GET", "/load"),
    ("POST", "/process"),
    ("GET", "/process/status"),
    ("DELETE", "/process/cleanup"),
    ("GET", "/process/results"),
    ("GET", "/process/{task_id}"),
    ("GET", "/metrics"),
];

/// The route label of requests that matched no route, so label cardinality stays bounded.
pub const UNMATCHED: &str = "none";

/// The route template a request matched (`/process`, not `/process?x=1`), or `none`: the metrics `handler` label and
/// the span's `http.route`. Routes are named by their template (see `resource`), so the common case borrows.
pub fn route_template(req: &HttpRequest) -> Cow<'_, str> {
    let resources = req.resource_map();
    match resources.match_name(req.path()) {
        Some(name) => Cow::Borrowed(name),
        None => resources.match_pattern(req.path()).map_or(Cow::Borrowed(UNMATCHED), Cow::Owned),
    }
}
