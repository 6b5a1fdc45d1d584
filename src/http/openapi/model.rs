//! The operation table's types: who authenticates, what an operation answers, and the error
//! responses every Platform operation shares.

/// Where an operation's caller authenticates.
#[derive(Clone, Copy)]
pub(super) enum Auth {
    None,
    ApiKey,
    /// `X-API-Key` or the number's access token as Bearer (Graph mounts).
    Graph,
}

pub(super) struct Operation {
    pub(super) method: &'static str,
    pub(super) path: String,
    pub(super) summary: &'static str,
    pub(super) auth: Auth,
    /// Query parameters (name, description).
    pub(super) query: &'static [(&'static str, &'static str)],
    /// The request body's schema reference, if any.
    pub(super) body: Option<&'static str>,
    /// (status, description, schema reference or "" for none).
    pub(super) responses: Vec<(u16, &'static str, &'static str)>,
}

pub(super) const PLATFORM_ERRORS: &[(u16, &str, &str)] = &[
    (400, "bad parameter", "PlatformError"),
    (401, "missing or invalid X-API-Key", "PlatformError"),
    (
        404,
        "not found (another project's ids look the same)",
        "PlatformError",
    ),
    (413, "body over server.json_body_limit", "PlatformError"),
    (
        422,
        "validation failed; details name the fields",
        "PlatformError",
    ),
    (
        429,
        "too many failed authentications from this client or for this key prefix; Retry-After says when to retry",
        "PlatformError",
    ),
    (503, "database unavailable", "PlatformError"),
];

macro_rules! responses {
    ($(($status:expr, $description:expr, $schema:expr)),* $(,)?) => {
        vec![$(($status, $description, $schema)),*]
    };
}
pub(super) use responses;

/// (method, path, summary, query, body schema, success status, answer schema).
pub(super) type WebhookOp = (
    &'static str,
    String,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    u16,
    &'static str,
);

pub(super) const HOOK_PAGE: &[(&str, &str)] = &[
    ("limit", "1 to 100, default 20"),
    ("after", "cursor"),
    ("before", "cursor"),
];

pub(super) const PAGE: &[(&str, &str)] = &[
    ("page", "page number, from 1"),
    ("per_page", "1 to 100, default 20"),
];
