//! What routes and the middlewares that label requests share: the route templates `routes::configure` binds and how a
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

/// The template of `NAMED_ROUTES` that `path` fits, first match winning (as `configure` binds them), or `none`: for a
/// request actix dropped before routing could be asked (its client reset the connection), from the path alone.
pub fn template_of(path: &str) -> &'static str {
    let fits = |template: &str| {
        let (mut have, mut want) = (path.split('/'), template.split('/'));
        loop {
            match (have.next(), want.next()) {
                (None, None) => return true,
                (Some(segment), Some(pattern)) if pattern.starts_with('{') || segment == pattern => {}
                _ => return false,
            }
        }
    };
    NAMED_ROUTES.iter().map(|(_, template)| *template).find(|template| fits(template)).unwrap_or(UNMATCHED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_named_by_the_first_template_it_fits() {
        for (path, template) in [
            ("/", "/"),
            ("/process", "/process"),
            ("/process/results", "/process/results"),
            ("/process/0b8c-anything", "/process/{task_id}"),
            ("/process/a/b", "none"),
            ("/nowhere", "none"),
            ("", "none"),
        ] {
            assert_eq!(template_of(path), template, "{path}");
        }
    }
}
