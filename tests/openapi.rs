//! `GET /openapi.json` (API.md §7): an OpenAPI 3.1 document of every public
//! endpoint, generated from the handlers, and Schemathesis (PyPI; `.ci/run`
//! installs it) fuzzing a live broker with it: no 5xx, no status, content
//! type or body the document does not declare, `405` with `Allow` for
//! methods it does not list.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// Every public endpoint, as the document must name it.
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/cluster"),
    ("put", "/cluster/mode"),
    ("post", "/cluster/members"),
    ("delete", "/cluster/members/{id}"),
    ("get", "/metrics"),
    ("post", "/publishers"),
    ("post", "/subscribers"),
    ("get", "/subscriptions"),
    ("post", "/topics"),
    ("get", "/topics"),
    ("get", "/topics/{name}"),
    ("delete", "/topics/{name}"),
    ("put", "/topics/{name}/limits"),
    ("post", "/topics/{name}/messages"),
    ("get", "/topics/{name}/stream"),
    ("post", "/subscribers/{sid}/subscriptions"),
    ("delete", "/subscribers/{sid}/subscriptions/{topic}"),
    ("post", "/subscribers/{sid}/subscriptions/{topic}/seek"),
    ("get", "/subscribers/{sid}/messages"),
    ("get", "/subscribers/{sid}/stream"),
    ("post", "/subscribers/{sid}/ack"),
    ("post", "/subscribers/{sid}/nack"),
    ("post", "/subscribers/{sid}/extend"),
    ("get", "/ui"),
    ("get", "/openapi.json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_public_endpoint() {
    let broker = Broker::start().await;
    let answer = broker.http_get("/openapi.json").await;
    answer
        .assert_status(200)
        .assert_content_type("application/json");
    let doc: Value = answer.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = 0;
    for (path, operations) in paths {
        assert!(
            !path.starts_with("/peer"),
            "the peer protocol is not public: {path}"
        );
        listed += operations.as_object().unwrap().len();
    }
    assert_eq!(listed, OPERATIONS.len(), "{:?}", paths.keys());
    for (method, path) in OPERATIONS {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing");
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}"
        );
        if !["/health", "/ui", "/openapi.json"].contains(path) {
            let error = &responses["400"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(error, "#/components/schemas/ErrorBody", "{method} {path}");
        }
        if ["post", "put"].contains(method) {
            assert!(
                operation["requestBody"].is_object(),
                "{method} {path} has no body"
            );
        }
    }
    assert!(doc["components"]["schemas"]["Message"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_document_does_not_allow() {
    let broker = Broker::start().await;
    let url = format!("{}/openapi.json", broker.url());
    // Long polls and streams wait by design (up to a minute, or for ever):
    // the end-to-end tests cover them; the fuzzing covers everything else.
    let args = [
        "run",
        &url,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_schema_conformance,response_headers_conformance,unsupported_method",
        "--max-examples",
        "40",
        "--exclude-operation-id",
        "pull",
        "--exclude-operation-id",
        "stream_subscriber",
        "--exclude-operation-id",
        "stream_topic",
        "--request-timeout",
        "10",
        // One worker: CPython 3.11's `ast` is not safe across threads, and
        // Hypothesis parses sources while it runs.
        "--workers",
        "1",
        "--generation-deterministic",
    ];
    let output = run_bin("schemathesis", &args, "", Duration::from_secs(600));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis ({:?}) found problems:\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
