//! The Graph passthrough against a recording Graph mock: headers, tokens, bodies, errors,
//! resolution and isolation.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::graph::{Canned, STREAM_CHUNK};
use crate::common::TestApp;

const V: &str = "/meta/whatsapp/v24.0";

/// A Graph error body without its per-request `fbtrace_id` and with `id` masked, for comparing
/// "unknown" and "foreign" answers.
fn masked(body: &Value, id: &str) -> Value {
    let mut body = body.clone();
    body["error"].as_object_mut().unwrap().remove("fbtrace_id");
    let message = body["error"]["message"]
        .as_str()
        .unwrap()
        .replace(id, "<id>");
    body["error"]["message"] = json!(message);
    body
}

async fn graph_error(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["fbtrace_id"].is_string(), "{body}");
    (status, body)
}

async fn forwards_with_the_numbers_token_and_clean_headers(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "EAAG-number-token")
        .await;
    let response = app
        .client
        .post(app.url(&format!("{V}/1001/settings?fields=a,b&x=%20y")))
        .header("x-api-key", &app.api_key)
        .header("authorization", "Bearer caller-supplied")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-custom", "dropped")
        .header("cookie", "session=caller")
        .header("x-forwarded-for", "10.1.2.3")
        .header("content-type", "application/json")
        .body(r#"{"calling":{"status":"ENABLED"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-fb-trace-id"], "mock-trace");
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["echo"], "/v24.0/1001/settings?fields=a,b&x=%20y");

    let seen = app.graph.last();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(
        seen.path_and_query,
        "/v24.0/1001/settings?fields=a,b&x=%20y"
    );
    assert_eq!(seen.headers["authorization"], "Bearer EAAG-number-token");
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert!(seen.headers.get("x-api-key").is_none());
    assert!(seen.headers.get("x-hop").is_none());
    // Only allow-listed headers reach Meta: not the caller's cookies, address or own headers.
    for name in ["x-custom", "cookie", "x-forwarded-for"] {
        assert!(seen.headers.get(name).is_none(), "{name} reached Graph");
    }
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_ne!(
        seen.headers["host"],
        app.addr.to_string().as_str(),
        "Host is Graph's, not ours"
    );
    assert_eq!(&seen.body[..], br#"{"calling":{"status":"ENABLED"}}"#);

    // The older mount and another version go to the same place.
    let response = app
        .request(
            Method::GET,
            "/api/meta/v21.0/1001/whatsapp_business_profile",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.graph.last().path_and_query,
        "/v21.0/1001/whatsapp_business_profile"
    );

    // Sends are buffered (recorded later) but forwarded byte for byte.
    let send = br#"{"messaging_product":"whatsapp","to":"15551234567","type":"text","text":{"body":"hi"}}"#;
    let response = app
        .request(Method::POST, &format!("{V}/1001/messages"))
        .header("content-type", "application/json")
        .body(send.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = app.graph.last();
    assert_eq!(&seen.body[..], send);
    assert_eq!(
        seen.headers["content-length"],
        send.len().to_string().as_str()
    );
}

async fn meta_errors_pass_through_unchanged(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    let meta_error = br#"{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_data":{"messaging_product":"whatsapp","details":"More than 24 hours have passed"},"fbtrace_id":"AbC"}}"#;
    for status in [400u16, 401, 403, 404, 429, 500, 503] {
        app.graph.respond(Canned {
            status,
            content_type: "application/json",
            body: meta_error.to_vec(),
            delay: Duration::ZERO,
        });
        let response = app
            .request(Method::POST, &format!("{V}/1001/messages"))
            .json(&json!({"messaging_product": "whatsapp", "to": "1", "text": {"body": "x"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(&response.bytes().await.unwrap()[..], meta_error);
    }
}

async fn credentials_errors(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "token-one")
        .await;
    app.connect_number(&app.api_key, "1002", "2001", "token-two")
        .await;
    let path = format!("{V}/1001/whatsapp_business_profile");

    let (status, body) = graph_error(app.client.get(app.url(&path)).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(104)));
    assert_eq!(body["error"]["type"], "OAuthException");

    for key in [
        "wag_unknownunknownunknownunknownunknownunkno",
        "garbage",
        "",
    ] {
        let response = app
            .client
            .get(app.url(&path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let (status, body) = graph_error(response).await;
        assert_eq!(
            (status, body["error"]["code"].as_u64()),
            (401, Some(190)),
            "{key:?}"
        );
    }
    for auth in ["Bearer nope", "Basic dXNlcjpwYXNz", "Bearer "] {
        let response = app
            .client
            .get(app.url(&path))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        let (status, body) = graph_error(response).await;
        assert_eq!(
            (status, body["error"]["code"].as_u64()),
            (401, Some(190)),
            "{auth}"
        );
    }
    let before = app.graph.recorded().len();

    // A number's own token reaches that number...
    let ok = app
        .client
        .get(app.url(&path))
        .bearer_auth("token-one")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        app.graph.last().headers["authorization"],
        "Bearer token-one"
    );
    // ...but not a sibling number of the same project.
    let sibling = app
        .client
        .get(app.url(&format!("{V}/1002/whatsapp_business_profile")))
        .bearer_auth("token-one")
        .send()
        .await
        .unwrap();
    let (status, body) = graph_error(sibling).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_u64(),
            body["error"]["error_subcode"].as_u64()
        ),
        (404, Some(100), Some(33))
    );
    assert_eq!(
        app.graph.recorded().len(),
        before + 1,
        "refused requests never reach Graph"
    );

    // Both headers: X-API-Key decides.
    let both = app
        .client
        .get(app.url(&format!("{V}/1002/whatsapp_business_profile")))
        .header("x-api-key", &app.api_key)
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 200);
    assert_eq!(
        app.graph.last().headers["authorization"],
        "Bearer token-two"
    );
    let bad_key = app
        .client
        .get(app.url(&path))
        .header("x-api-key", "wag_unknownunknownunknownunknownunknownunkno")
        .bearer_auth("token-one")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 401);
}

async fn resolution_by_path_query_and_token(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok-1001")
        .await;
    app.connect_number(&app.api_key, "1002", "2002", "tok-1002")
        .await;

    // WABA in the path: that WABA's number's token.
    let response = app
        .request(Method::GET, &format!("{V}/2002/message_templates?limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.graph.last().headers["authorization"], "Bearer tok-1002");
    assert_eq!(
        app.graph.last().path_and_query,
        "/v24.0/2002/message_templates?limit=5"
    );

    // Media id with ?phone_number_id: that number's token, query kept.
    for method in [Method::GET, Method::DELETE] {
        let response = app
            .request(
                method.clone(),
                &format!("{V}/987654321?phone_number_id=1001"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let seen = app.graph.last();
        assert_eq!(seen.method, method);
        assert_eq!(seen.headers["authorization"], "Bearer tok-1001");
        assert_eq!(seen.path_and_query, "/v24.0/987654321?phone_number_id=1001");
    }
    // Media id without it, with a key: 400 naming the parameter.
    let (status, body) = graph_error(
        app.request(Method::GET, &format!("{V}/987654321"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
    assert!(body["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .contains("phone_number_id"));
    // ...with a Bearer token: the token's number.
    let response = app
        .client
        .get(app.url(&format!("{V}/987654321")))
        .bearer_auth("tok-1002")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.graph.last().headers["authorization"], "Bearer tok-1002");

    // Unknown ids with an edge: 404 code 100 subcode 33.
    for path in [
        "55555/messages",
        "not-a-number/messages",
        "2003/message_templates",
    ] {
        let (status, body) = graph_error(
            app.request(Method::POST, &format!("{V}/{path}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error"]["error_subcode"].as_u64()),
            (404, Some(33)),
            "{path}"
        );
        assert_eq!(body["error"]["type"], "GraphMethodException");
    }
    // A bad version is a bad parameter.
    let (status, body) = graph_error(
        app.request(Method::GET, "/meta/whatsapp/latest/1001/settings")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .contains("version"));
}

async fn other_projects_ids_answer_like_unknown_ones(app: TestApp) {
    let (_, other_key) = app.other_project().await;
    app.connect_number(&other_key, "9001", "9101", "their-token")
        .await;
    app.connect_number(&app.api_key, "1001", "2001", "my-token")
        .await;
    let before = app.graph.recorded().len();

    // (foreign id, unknown id, path template)
    let forms = [
        ("9001", "9999", "{id}/messages", Method::POST),
        (
            "9001",
            "9999",
            "{id}/whatsapp_business_profile",
            Method::GET,
        ),
        ("9001", "9999", "{id}/media", Method::POST),
        ("9101", "9199", "{id}/message_templates", Method::GET),
        ("9101", "9199", "{id}/message_templates", Method::DELETE),
        ("9001", "9999", "12345?phone_number_id={id}", Method::GET),
        ("9001", "9999", "12345?phone_number_id={id}", Method::DELETE),
    ];
    for mount in ["/meta/whatsapp/v24.0", "/api/meta/v23.0"] {
        for (foreign, unknown, template, method) in &forms {
            let mut answers = Vec::new();
            for id in [foreign, unknown] {
                let path = format!("{mount}/{}", template.replace("{id}", id));
                let (status, body) =
                    graph_error(app.request(method.clone(), &path).send().await.unwrap()).await;
                assert_eq!(status, 404, "{method} {path}: {body}");
                answers.push(masked(&body, id));
            }
            assert_eq!(
                answers[0], answers[1],
                "{method} {template}: foreign and unknown differ"
            );
        }
    }
    // The other project's token cannot reach my number either.
    let response = app
        .client
        .post(app.url(&format!("{V}/1001/messages")))
        .bearer_auth("their-token")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.graph.recorded().len(), before, "nothing reached Graph");
}

async fn large_uploads_and_downloads_stream(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    // Upload: the second half is sent only after Graph has seen the first. A buffering proxy
    // would deadlock here.
    let file_len = 100 * 1024 * 1024;
    let boundary = "wagate-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() + file_len + tail.len();
    let expected_sha256 = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(head.as_bytes());
        hasher.update(vec![7u8; file_len]);
        hasher.update(tail.as_bytes());
        hex::encode(hasher.finalize())
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let graph = app.graph.clone();
    let producer = tokio::spawn(async move {
        tx.send(Ok(head.into_bytes())).await.unwrap();
        tx.send(Ok(vec![7u8; 1024 * 1024])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), graph.upload_started())
            .await
            .expect("Graph saw the upload start before the client finished sending it");
        let mut sent = 1024 * 1024;
        while sent < file_len {
            let n = (4 * 1024 * 1024).min(file_len - sent);
            tx.send(Ok(vec![7u8; n])).await.unwrap();
            sent += n;
        }
        tx.send(Ok(tail.into_bytes())).await.unwrap();
    });
    let body = reqwest::Body::wrap_stream(futures::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }));
    let response = app
        .request(Method::POST, &format!("{V}/1001/media"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", total)
        .body(body)
        .send()
        .await
        .unwrap();
    producer.await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = app.graph.last();
    assert_eq!(seen.body_len, total);
    assert_eq!(
        seen.body_sha256, expected_sha256,
        "the upload arrived byte for byte"
    );
    assert_eq!(
        seen.headers["content-type"],
        format!("multipart/form-data; boundary={boundary}").as_str()
    );

    // Download: the client receives the first chunk before Graph sends the rest.
    let size = 20 * 1024 * 1024;
    let response = app
        .request(
            Method::GET,
            &format!("{V}/1001/stream-download?bytes={size}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let mut stream = response.bytes_stream();
    let mut received = 0usize;
    while received < STREAM_CHUNK {
        received += tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first chunk arrives before Graph finished")
            .unwrap()
            .unwrap()
            .len();
    }
    app.graph.open_download_gate();
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, size);
}

async fn oversized_bodies_are_refused(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    let before = app.graph.recorded().len();
    let big_send = vec![b' '; app.config.server.json_body_limit + 1];
    let (status, body) = graph_error(
        app.request(Method::POST, &format!("{V}/1001/messages"))
            .header("content-type", "application/json")
            .body(big_send)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (413, Some(100)));

    // A declared media body over the limit is refused before any of it is sent.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {V}/1001/media HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        app.config.server.media_body_limit + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("413 arrives without the body")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    assert_eq!(app.graph.recorded().len(), before);
}

async fn warm_requests_need_no_database(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    let path = format!("{V}/1001/whatsapp_business_profile");
    assert_eq!(
        app.request(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url(&path))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.store.close().await;
    // Within cache.ttl: key, number and token all come from memory.
    for _ in 0..20 {
        assert_eq!(
            app.request(Method::GET, &path)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        app.client
            .get(app.url(&path))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // An unseen number cannot be resolved without the database: 503, nothing forwarded.
    let (status, _) = graph_error(
        app.request(Method::GET, &format!("{V}/1002/settings"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
}

async fn config_changes_apply_at_once_on_this_instance(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "old-token")
        .await;
    let path = format!("{V}/1001/settings");
    app.request(Method::GET, &path).send().await.unwrap();
    assert_eq!(
        app.graph.last().headers["authorization"],
        "Bearer old-token"
    );
    // Meta issued a new token for the number (a rotation).
    app.graph.own("new-token", "1001", "2001");
    let response = app
        .request(Method::PATCH, "/platform/v1/whatsapp/phone_numbers/1001")
        .json(&json!({"whatsapp_phone_number": {"access_token": "new-token"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.request(Method::GET, &path).send().await.unwrap();
    assert_eq!(
        app.graph.last().headers["authorization"],
        "Bearer new-token"
    );
    // The old token no longer authenticates.
    let old = app
        .client
        .get(app.url(&path))
        .bearer_auth("old-token")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);

    app.request(Method::DELETE, "/platform/v1/whatsapp/phone_numbers/1001")
        .send()
        .await
        .unwrap();
    let (status, _) = graph_error(app.request(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

crate::both_backends!(app:
    forwards_with_the_numbers_token_and_clean_headers,
    meta_errors_pass_through_unchanged,
    credentials_errors,
    resolution_by_path_query_and_token,
    other_projects_ids_answer_like_unknown_ones,
    large_uploads_and_downloads_stream,
    oversized_bodies_are_refused,
    warm_requests_need_no_database,
    config_changes_apply_at_once_on_this_instance,
);

fn short_graph_timeout(config: &mut wagate::config::Config) {
    config.graph.timeout = Duration::from_millis(500);
}

async fn stalled_graph_gives_504(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    app.graph.respond(Canned {
        status: 200,
        content_type: "application/json",
        body: b"{}".to_vec(),
        delay: Duration::from_secs(3),
    });
    let (status, body) = graph_error(
        app.request(Method::GET, &format!("{V}/1001/settings"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 504, "{body}");
}

fn dead_graph(config: &mut wagate::config::Config) {
    let port = crate::common::ports::refusing_port();
    config.graph.base_url = format!("http://127.0.0.1:{port}");
    // Graph is down from the start, so numbers cannot be verified when connected.
    config.graph.verify_numbers = false;
}

async fn dead_graph_gives_502(app: TestApp) {
    app.connect_number(&app.api_key, "1001", "2001", "tok")
        .await;
    let (status, body) = graph_error(
        app.request(Method::POST, &format!("{V}/1001/messages"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], 2);
}

crate::both_backends!(app with short_graph_timeout: stalled_graph_gives_504);
crate::both_backends!(app with dead_graph: dead_graph_gives_502);
