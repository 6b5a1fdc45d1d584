//! The OpenAPI document against the routes: every route the routers declare is documented,
//! every documented path is served (stored-data paths are recognised by wagate, not forwarded),
//! and every documented status of a probe is one the document lists.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::common::TestApp;

/// Routes wagate serves that the document does not describe yet (none today). Each listed one is
/// checked to be declared and still undocumented, so the list can only shrink.
const KNOWN_UNDOCUMENTED: &[(&str, &str)] = &[];

/// Every `.rs` file under `dir`, as (module path, file, source); `src/a/mod.rs` and `src/a.rs`
/// are module `a`, `src/lib.rs` and `src/main.rs` the crate root.
fn sources(dir: &Path, module: &[String], out: &mut Vec<(Vec<String>, String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            let mut child = module.to_vec();
            child.push(name);
            sources(&path, &child, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut m = module.to_vec();
            if !["mod", "lib", "main"].contains(&stem) {
                m.push(stem.to_owned());
            }
            let source = std::fs::read_to_string(&path).unwrap();
            out.push((m, path.display().to_string(), source));
        }
    }
}

/// The text of a call's arguments: from just after its opening parenthesis to its closing one.
fn call_arguments(rest: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &rest[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    rest
}

/// `(method, path)` of every `.route("…", method(…)…)` call in `compact` (whitespace folded).
fn routes_in(compact: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for piece in compact.split(".route(").skip(1) {
        let Some(path) = piece
            .trim_start()
            .strip_prefix('"')
            .and_then(|p| p.split('"').next())
        else {
            continue;
        };
        // The handler expression up to the route call's closing parenthesis.
        let handlers = call_arguments(&piece[piece.find(',').unwrap() + 1..]);
        for method in ["get", "post", "patch", "delete", "put"] {
            if handlers.contains(&format!(" {method}("))
                || handlers.trim_start().starts_with(&format!("{method}("))
                || handlers.contains(&format!(".{method}("))
            {
                routes.push((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

/// Routers `module`'s source mounts: `.nest("/prefix", x::router())` and `.merge(x::router())`,
/// as (mounted module, prefix), `x` resolved like a Rust path from `module`.
fn mounts_in(module: &[String], compact: &str) -> Vec<(Vec<String>, String)> {
    let mut mounts = Vec::new();
    for (call, nested) in [(".nest(", true), (".merge(", false)] {
        for piece in compact.split(call).skip(1) {
            let args = call_arguments(piece);
            let (prefix, target) = if nested {
                let Some((prefix, target)) = args.split_once(',') else {
                    continue;
                };
                (prefix.trim().trim_matches('"').to_owned(), target.trim())
            } else {
                (String::new(), args.trim())
            };
            let Some(path) = target.strip_suffix("::router()") else {
                continue;
            };
            let mut resolved = module.to_vec();
            for segment in path.split("::") {
                match segment {
                    "crate" => resolved.clear(),
                    "self" => {}
                    "super" => {
                        resolved.pop();
                    }
                    name => resolved.push(name.to_owned()),
                }
            }
            mounts.push((resolved, prefix));
        }
    }
    mounts
}

/// `(method, path)` of every route wagate's HTTP server declares, as served. Every file under
/// `src/` is read: a module's routes are served under the prefixes of the `.nest` calls on the
/// way to it from the app's router (`http::router`), following `.nest` and `.merge`. A file that
/// declares routes in a module that router does not mount fails the test, unless it belongs to
/// the Graph emulator (`sandbox`), a separate server this document does not describe.
fn declared_routes() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &[], &mut files);
    let compact = |source: &str| source.split_whitespace().collect::<Vec<_>>().join(" ");
    // Mounted module -> the prefix it is served under, walked from the app's router.
    let app = vec!["http".to_owned()];
    let mut mounted: HashMap<Vec<String>, String> = HashMap::from([(app.clone(), String::new())]);
    let mut queue = vec![app];
    while let Some(module) = queue.pop() {
        let prefix = mounted[&module].clone();
        for (_, _, source) in files.iter().filter(|(m, _, _)| *m == module) {
            for (child, nest) in mounts_in(&module, &compact(source)) {
                if !mounted.contains_key(&child) {
                    mounted.insert(child.clone(), format!("{prefix}{nest}"));
                    queue.push(child);
                }
            }
        }
    }
    let mut routes = BTreeSet::new();
    let mut unmounted = Vec::new();
    for (module, file, source) in &files {
        let declared = routes_in(&compact(source));
        if declared.is_empty() || module.first().map(String::as_str) == Some("sandbox") {
            continue;
        }
        match mounted.get(module) {
            Some(prefix) => {
                for (method, path) in declared {
                    routes.insert((method, format!("{prefix}{path}")));
                }
            }
            None => unmounted.push(file.clone()),
        }
    }
    assert!(
        unmounted.is_empty(),
        "routes declared in files the app's router does not mount: {unmounted:?}"
    );
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
    // Every router file is read, the Graph mounts' too.
    for (method, path) in KNOWN_UNDOCUMENTED {
        let route = (method.to_string(), path.to_string());
        assert!(
            routes.contains(&route),
            "{method} {path} is no longer served"
        );
        assert!(
            !docs.contains(&route),
            "{method} {path} is documented now: drop it from KNOWN_UNDOCUMENTED"
        );
    }
    let undocumented: Vec<_> = routes
        .difference(&docs)
        .filter(|(m, p)| !KNOWN_UNDOCUMENTED.contains(&(m.as_str(), p.as_str())))
        .collect();
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
