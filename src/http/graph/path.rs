//! What a Graph mount path says: `/{mount}/{version}/{rest}?{query}`, checked once.

use axum::http::Uri;

use crate::http::graph_error::GraphError;
use crate::types::GraphVersion;

/// Prefixes under which wagate speaks Graph (and answers errors in Graph's envelope).
pub const GRAPH_PREFIXES: [&str; 2] = ["/meta/whatsapp/", "/api/meta/"];

pub fn is_graph_path(path: &str) -> bool {
    GRAPH_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// `(version, rest)` from the raw path, so the upstream path is byte-identical to the caller's.
pub fn split_graph_path(path: &str) -> Option<(&str, &str)> {
    let after_mount = GRAPH_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    after_mount.split_once('/')
}

/// The value of one query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A Graph request's address: the raw path (kept byte for byte for the upstream), its version and
/// the object path after it, and the raw query.
#[derive(Debug, Clone)]
pub struct GraphAddress {
    path: String,
    query: Option<String>,
    /// `path[version.0..version.1]` is the version; the rest starts one byte after it.
    version: (usize, usize),
}

impl GraphAddress {
    /// Splits and checks the path: a Graph version, and no segment Graph would normalise into
    /// another object than the one authorization is decided on.
    pub fn parse(uri: &Uri) -> Result<Self, GraphError> {
        let path = uri.path();
        let (version, rest) = split_graph_path(path)
            .ok_or_else(|| GraphError::invalid_parameter("path: expected /{version}/{object}"))?;
        if !GraphVersion::is_valid(version) {
            return Err(GraphError::invalid_parameter(format!(
                "version: '{version}' is not a Graph API version such as v23.0"
            )));
        }
        check_segments(rest)?;
        let start = path.len() - rest.len() - 1 - version.len();
        Ok(Self {
            path: path.to_owned(),
            query: uri.query().map(str::to_owned),
            version: (start, start + version.len()),
        })
    }

    /// The whole raw path, mount included.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn version(&self) -> &str {
        &self.path[self.version.0..self.version.1]
    }

    /// The object path after the version, e.g. `123/messages`.
    pub fn rest(&self) -> &str {
        &self.path[self.version.1 + 1..]
    }

    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first path segment: the object the request is about.
    pub fn object_id(&self) -> &str {
        self.rest().split('/').next().unwrap_or("")
    }

    /// Whether a non-empty segment follows the object (`{id}/messages`, not `{id}` or `{id}/`).
    pub fn has_edge(&self) -> bool {
        self.rest().split('/').skip(1).any(|s| !s.is_empty())
    }
}

/// Refuses paths Graph would normalise into another object than the one checked (`a/../b`,
/// `%2e%2e`, encoded slashes, empty segments): authorization is decided on the first segment, so
/// the path must mean exactly what it says.
fn check_segments(rest: &str) -> Result<(), GraphError> {
    // One trailing slash is harmless (`{id}/`); any other empty segment is not.
    let path = rest.strip_suffix('/').unwrap_or(rest);
    let bad = path.split('/').any(|raw| {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        raw.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains('/')
            || decoded.contains('\\')
    });
    if bad {
        return Err(GraphError::invalid_parameter(
            "path: empty, '.' or '..' segments and encoded slashes are not allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_after_the_mount() {
        assert_eq!(
            split_graph_path("/meta/whatsapp/v24.0/123/messages"),
            Some(("v24.0", "123/messages"))
        );
        assert_eq!(
            split_graph_path("/api/meta/v21.0/123"),
            Some(("v21.0", "123"))
        );
        assert_eq!(split_graph_path("/platform/v1/x"), None);
    }

    #[test]
    fn addresses_keep_the_raw_path() {
        let uri: Uri = "/meta/whatsapp/v24.0/123/messages?a=%31".parse().unwrap();
        let address = GraphAddress::parse(&uri).unwrap();
        assert_eq!(address.version(), "v24.0");
        assert_eq!(address.rest(), "123/messages");
        assert_eq!(address.object_id(), "123");
        assert!(address.has_edge());
        assert_eq!(address.query(), Some("a=%31"));
        let bare: Uri = "/api/meta/v21.0/123/".parse().unwrap();
        let bare = GraphAddress::parse(&bare).unwrap();
        assert_eq!((bare.object_id(), bare.has_edge()), ("123", false));
        for bad in [
            "/meta/whatsapp/23.0/1",
            "/meta/whatsapp/v23.0/1/../2",
            "/meta/whatsapp/v23.0/1%2F2",
            "/meta/whatsapp/v23.0/1//messages",
        ] {
            assert!(GraphAddress::parse(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&phone_number_id=%31%32"), "phone_number_id").as_deref(),
            Some("12")
        );
        assert_eq!(query_param(None, "x"), None);
    }
}
