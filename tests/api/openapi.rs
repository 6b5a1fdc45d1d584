//! The OpenAPI document against the routes: every route the routers declare is documented,
//! every documented path is served (stored-data paths are recognised by wagate, not forwarded),
//! and every documented status of a probe is one the document lists.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::common::TestApp;

/// `(method, path)` of every `.route("…", method(…)…)` in the HTTP routers, as served.
fn declared_routes() -> BTreeSet<(String, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let files = [
        ("src/http/health.rs", ""),
        ("src/http/webhooks.rs", ""),
        ("src/http/setup.rs", ""),
        ("src/http/openapi.rs", ""),
        ("src/http/platform/phone_numbers.rs", "/platform/v1"),
        ("src/http/platform/customers.rs", "/platform/v1"),
        ("src/http/platform/deliveries.rs", "/platform/v1"),
    ];
    let mut routes = BTreeSet::new();
    for (file, prefix) in files {
        let source = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let compact: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
        for piece in compact.split(".route(").skip(1) {
            let Some(path) = piece
                .trim_start()
                .strip_prefix('"')
                .and_then(|p| p.split('"').next())
            else {
                continue;
            };
            // The handler expression up to the route call's closing parenthesis.
            let rest = &piece[piece.find(',').unwrap() + 1..];
            let mut depth = 0usize;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let handlers = &rest[..end];
            for method in ["get", "post", "patch", "delete", "put"] {
                if handlers.contains(&format!(" {method}("))
                    || handlers.trim_start().starts_with(&format!("{method}("))
                    || handlers.contains(&format!(".{method}("))
                {
                    routes.insert((method.to_owned(), format!("{prefix}{path}")));
                }
            }
        }
    }
    routes
}

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

async fn document_and_routes_agree(app: TestApp) {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let docs = documented(&spec);
    let routes = declared_routes();
    assert!(
        routes.len() > 20,
        "the route scan found the routers: {routes:?}"
    );
    assert!(routes.contains(&(
        "patch".to_owned(),
        "/platform/v1/customers/{customer_id}/setup_links/{link_id}".to_owned()
    )));
    let undocumented: Vec<_> = routes.difference(&docs).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    let graph_prefix = "/meta/whatsapp/{version}/";
    let mut stored = 0;
    for (method, path) in &docs {
        if let Some(rest) = path.strip_prefix(graph_prefix) {
            // Documented stored-data routes are recognised by wagate, never forwarded to Graph.
            let sample = rest
                .replace("{phone_number_id}", "123456")
                .replace("{wamid}", "wamid.X")
                .replace("{wa_id}", "15550001111")
                .replace("{id}", "0190a5b0-0000-7000-8000-000000000000")
                .replace("{call_id}", "wacid.X");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            assert!(
                wagate::http::graph::stored::route(&method, &sample).is_some(),
                "{method} {path} is documented as stored data but not served as such"
            );
            stored += 1;
        } else {
            assert!(
                routes.contains(&(method.clone(), path.clone())),
                "{method} {path} is documented but no router declares it"
            );
        }
    }
    assert!(stored >= 10);
    // The page lists every path.
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for (_, path) in &docs {
        assert!(
            html.contains(&path.replace('&', "&amp;")),
            "{path} missing from /docs"
        );
    }
}

crate::both_backends!(app: document_and_routes_agree);
