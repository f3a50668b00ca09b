//! Where requests go: the consumer's base URL (and Loki's), parsed once, shared by the flags, the plan and the client.

use serde::Serialize;

/// Where requests go: an `http://host:port` base, parsed once.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// The `Host` header value.
    pub authority: String,
}

impl Target {
    /// An `http://host[:port]` base URL; the error names the URL, and the caller the flag it came from.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(format!("{url:?}: only http is supported, not {other}")),
            None => return Err(format!("{url:?} needs a scheme, for example http://localhost:8000")),
        }
        let host = uri.host().ok_or_else(|| format!("{url:?} has no host"))?.to_owned();
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("{url:?}: give the base URL only, without a path"));
        }
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            authority,
        })
    }
}
