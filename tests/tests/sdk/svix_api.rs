//! The Svix-compatible API (`send::svix`) over real HTTP on loopback, with hostile input: every
//! refusal in Svix's error shapes, nothing half-written, and two namespaces that never meet.
//! (Svix's own Python client drives it end to end in `outworx-cli`'s `svix_api` test.)

use outworx_hooks::send::svix::SvixApi;
use outworx_hooks::send::{DeliveryFilter, Emitter, Outbox, Scope, TargetPolicy};
use serde_json::{Value, json};

const A: &str = "sk_tenant_a_0123456789";
const B: &str = "sk_tenant_b_0123456789";

struct Api {
    base: String,
    http: reqwest::Client,
    emitter: Emitter,
}

impl Api {
    async fn start() -> Api {
        let emitter = Emitter::builder(Outbox::memory().await.unwrap())
            .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
            .worker(None)
            .build();
        let app: axum::Router = SvixApi::new(emitter.clone())
            .token(A, "tenant-a")
            .token(B, "tenant-b")
            .router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api {
            base,
            http: reqwest::Client::new(),
            emitter,
        }
    }

    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, json)
    }

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.call(token, reqwest::Method::GET, path, None).await
    }

    async fn post(&self, token: &str, path: &str, body: &str) -> (u16, Value) {
        self.call(token, reqwest::Method::POST, path, Some(body))
            .await
    }
}

fn validation_type(v: &Value) -> &str {
    v["detail"][0]["type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn hostile_input_gets_svix_shaped_errors_and_writes_nothing() {
    let api = Api::start().await;
    // No token, or an unknown one: 401 in Svix's shape.
    let r = api
        .http
        .get(format!("{}/app", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "authentication_failed");
    assert_eq!(api.get("nope", "/app").await.0, 401);

    // Malformed JSON, a wrong type, a missing field: 422 with `detail[].loc/msg/type`.
    for bad in ["{", "[]", r#"{"name": 7}"#, r#"{"uid": "x"}"#, "\u{0}"] {
        let (status, body) = api.post(A, "/app", bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(validation_type(&body), "value_error.jsondecode", "{body}");
        assert_eq!(body["detail"][0]["loc"][0], "body");
    }
    // Svix's own checks.
    let (status, body) = api
        .post(A, "/app", r#"{"name": "x", "uid": "app_taken"}"#)
        .await;
    assert_eq!(
        (status, validation_type(&body)),
        (422, "invalid_uid_prefix")
    );
    let (status, _) = api.post(A, "/app", r#"{"name": ""}"#).await;
    assert_eq!(status, 422);
    let (status, _) = api.post(A, "/app", r#"{"name": "bell\u0007"}"#).await;
    assert_eq!(status, 422, "control characters");
    let big: String = format!(
        r#"{{"name": "x", "metadata": {{"k": "{}"}}}}"#,
        "v".repeat(5000)
    );
    assert_eq!(
        api.post(A, "/app", &big).await.0,
        422,
        "metadata over 4 KiB"
    );

    // Unknown fields are ignored, as Svix does (newer clients send more).
    let (status, app) = api
        .post(
            A,
            "/app",
            r#"{"name": "Acme", "uid": "acme", "futureField": {"x": 1}}"#,
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_owned();

    // Endpoints: bad schemes, control characters, forbidden and broken headers, empty types.
    let ep = |url: &str, extra: &str| format!(r#"{{"url": {}{extra}}}"#, json!(url));
    for (body, why) in [
        (ep("ftp://example.com/", ""), "scheme"),
        (
            ep("http://127.0.0.1:9/\r\nx", ""),
            "control characters in the URL",
        ),
        (ep("http://169.254.169.254/", ""), "a link-local target"),
        (
            ep("http://127.0.0.1:9/", r#", "eventTypes": []"#),
            "empty event types",
        ),
        (
            ep("http://127.0.0.1:9/", r#", "eventTypes": ["nope"]"#),
            "an unknown event type",
        ),
        (
            ep(
                "http://127.0.0.1:9/",
                r#", "headers": {"webhook-signature": "x"}"#,
            ),
            "a signature header",
        ),
        (
            ep(
                "http://127.0.0.1:9/",
                r#", "headers": {"x-a": "a\r\nb: c"}"#,
            ),
            "a header value with CRLF",
        ),
        (
            ep("http://127.0.0.1:9/", r#", "channels": []"#),
            "empty channels",
        ),
        (
            ep("http://127.0.0.1:9/", r#", "secret": "not-a-secret""#),
            "a secret without whsec_",
        ),
        (
            ep("http://127.0.0.1:9/", r#", "uid": "ep_x""#),
            "an id-prefixed uid",
        ),
    ] {
        let (status, out) = api.post(A, "/app/acme/endpoint", &body).await;
        assert_eq!(status, 422, "{why}: {out}");
        // Refused by the check, not by the JSON parser.
        assert_ne!(
            validation_type(&out),
            "value_error.jsondecode",
            "{why}: {out}"
        );
    }
    let (_, list) = api.get(A, "/app/acme/endpoint").await;
    assert_eq!(list["data"], json!([]), "nothing half-written");
    assert_eq!(list["iterator"], Value::Null);
    assert_eq!(list["done"], true);

    // Messages: a payload that is not an object; over 1 MiB (413, Svix's limit).
    let (status, _) = api
        .post(
            A,
            "/app/acme/msg",
            r#"{"eventType": "a.b", "payload": [1]}"#,
        )
        .await;
    assert_eq!(status, 422);
    let huge = format!(
        r#"{{"eventType": "a.b", "payload": {{"x": "{}"}}}}"#,
        "x".repeat(1_200_000)
    );
    let (status, body) = api.post(A, "/app/acme/msg", &huge).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, body) = api
        .post(A, "/app/nope/msg", r#"{"eventType": "a.b", "payload": {}}"#)
        .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("Application not found"))
    );
    // No message was stored by any of them.
    let deliveries = api
        .emitter
        .deliveries(Scope::All, &DeliveryFilter::default())
        .await
        .unwrap();
    assert!(deliveries.is_empty());
    let (_, msgs) = api.get(A, "/app/acme/msg").await;
    assert_eq!(msgs["data"], json!([]));

    // Query strings: limits, iterators, times.
    assert_eq!(api.get(A, "/app?limit=251").await.0, 422);
    let (status, body) = api.get(A, "/app?limit=abc").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("generic_error"))
    );
    assert_eq!(api.get(A, "/app/acme/msg?before=yesterday").await.0, 400);
    assert_eq!(
        api.get(A, "/app/acme/attempt/endpoint/nope?iterator=x")
            .await
            .0,
        404
    );
    // Huge and negative times are clamped into range, never a panic.
    for t in [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1969-01-01T00:00:00-23:59",
    ] {
        let (status, _) = api
            .get(A, &format!("/app/acme/msg?before={t}&after={t}"))
            .await;
        assert_eq!(status, 200, "{t}");
    }

    // Every route answers JSON, even one that does not exist, and with a trailing slash.
    let (status, body) = api.get(A, "/no/such/route").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert_eq!(api.get(A, "/app/").await.0, 200);
    let (status, _) = api.get(A, &format!("/app/{app_id}/")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn two_namespaces_never_meet() {
    let api = Api::start().await;
    let mut ids = Vec::new();
    for token in [A, B] {
        let (s, _) = api
            .post(
                token,
                "/event-type",
                r#"{"name": "order.created", "description": "d"}"#,
            )
            .await;
        assert_eq!(s, 201);
        let (s, app) = api
            .post(token, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
            .await;
        assert_eq!(s, 201);
        let (s, ep) = api
            .post(
                token,
                "/app/acme/endpoint",
                r#"{"url": "http://127.0.0.1:9/h", "uid": "main", "headers": {"authorization": "Bearer x"}}"#,
            )
            .await;
        assert_eq!(s, 201, "{ep}");
        let (s, msg) = api
            .post(
                token,
                "/app/acme/msg",
                r#"{"eventType": "order.created", "payload": {"id": 1}, "eventId": "evt-1"}"#,
            )
            .await;
        assert_eq!(s, 202, "{msg}");
        ids.push((
            app["id"].as_str().unwrap().to_owned(),
            ep["id"].as_str().unwrap().to_owned(),
            msg["id"].as_str().unwrap().to_owned(),
        ));
    }
    assert_ne!(ids[0], ids[1]);
    let (app, ep, msg) = &ids[0];
    // B, with A's ids (and with A's uids in A's app): exactly what a missing one gets.
    let (_, missing) = api.get(B, "/app/app_00000000000000000000000000").await;
    let paths = [
        format!("/app/{app}"),
        format!("/app/{app}/endpoint"),
        format!("/app/{app}/endpoint/{ep}"),
        format!("/app/{app}/endpoint/{ep}/secret"),
        format!("/app/{app}/endpoint/{ep}/headers"),
        format!("/app/{app}/endpoint/{ep}/stats"),
        format!("/app/{app}/endpoint/{ep}/msg"),
        format!("/app/{app}/msg"),
        format!("/app/{app}/msg/{msg}"),
        format!("/app/{app}/msg/{msg}/endpoint"),
        format!("/app/{app}/msg/{msg}/attempt"),
        format!("/app/{app}/attempt/msg/{msg}"),
        format!("/app/{app}/attempt/endpoint/{ep}"),
        // B's own app, with A's endpoint and message ids.
        format!("/app/acme/endpoint/{ep}"),
        format!("/app/acme/msg/{msg}"),
        format!("/app/acme/attempt/endpoint/{ep}"),
    ];
    for p in &paths {
        let (status, body) = api.get(B, p).await;
        assert_eq!(status, 404, "{p}: {body}");
        assert_eq!(body, missing, "{p}: another's answers as a missing one's");
    }
    for (method, p) in [
        (reqwest::Method::DELETE, format!("/app/{app}")),
        (reqwest::Method::DELETE, format!("/app/acme/endpoint/{ep}")),
        (
            reqwest::Method::DELETE,
            format!("/app/acme/msg/{msg}/content"),
        ),
        (
            reqwest::Method::POST,
            format!("/app/acme/msg/{msg}/endpoint/{ep}/resend"),
        ),
        (
            reqwest::Method::POST,
            format!("/app/{app}/endpoint/{ep}/secret/rotate"),
        ),
    ] {
        let (status, _) = api.call(B, method, &p, Some("{}")).await;
        assert_eq!(status, 404, "{p}");
    }
    // A's rows are all there, untouched.
    let (s, got) = api.get(A, &format!("/app/acme/msg/{msg}")).await;
    assert_eq!((s, &got["payload"]), (200, &json!({"id": 1})));
    let (s, _) = api.get(A, &format!("/app/acme/endpoint/{ep}")).await;
    assert_eq!(s, 200);
    // Each lists only its own.
    let (_, apps) = api.get(B, "/app").await;
    assert_eq!(apps["data"].as_array().unwrap().len(), 1);
    assert_eq!(apps["data"][0]["id"], json!(ids[1].0));
    // A sensitive header's value is never answered.
    let (_, headers) = api
        .get(A, &format!("/app/acme/endpoint/{ep}/headers"))
        .await;
    assert_eq!(
        headers,
        json!({"headers": {}, "sensitive": ["authorization"]})
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_for_its_token_only() {
    let api = Api::start().await;
    api.post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    api.post(B, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let send = |token: &'static str, key: &'static str| {
        let api = &api;
        async move {
            let r = api
                .http
                .post(format!("{}/app/acme/msg", api.base))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .body(r#"{"eventType": "a.b", "payload": {"n": 1}}"#)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s1, first) = send(A, "k1").await;
    let (s2, again) = send(A, "k1").await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first, again, "the same answer");
    let (_, other) = send(A, "k2").await;
    assert_ne!(other["id"], first["id"]);
    let (_, b) = send(B, "k1").await;
    assert_ne!(b["id"], first["id"], "another token's key is its own");
    let (_, list) = api.get(A, "/app/acme/msg").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn channels_and_event_types_choose_the_endpoints() {
    let api = Api::start().await;
    api.post(
        A,
        "/event-type",
        r#"{"name": "order.created", "description": "d"}"#,
    )
    .await;
    api.post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let mk = |body: &'static str| api.post(A, "/app/acme/endpoint", body);
    let (_, all) = mk(r#"{"url": "http://127.0.0.1:9/all"}"#).await;
    let (_, eu) = mk(r#"{"url": "http://127.0.0.1:9/eu", "channels": ["eu"]}"#).await;
    let (_, typed) =
        mk(r#"{"url": "http://127.0.0.1:9/t", "eventTypes": ["order.created"]}"#).await;
    let (_, off) = mk(r#"{"url": "http://127.0.0.1:9/off", "disabled": true}"#).await;
    assert_eq!(off["disabled"], true);
    let cases = [
        (
            r#"{"eventType": "order.created", "payload": {}}"#,
            vec![&all, &typed],
        ),
        (
            r#"{"eventType": "order.created", "payload": {}, "channels": ["eu"]}"#,
            vec![&all, &eu, &typed],
        ),
        (
            r#"{"eventType": "order.paid", "payload": {}, "channels": ["us"]}"#,
            vec![&all],
        ),
    ];
    for (body, want) in cases {
        let (s, msg) = api.post(A, "/app/acme/msg", body).await;
        assert_eq!(s, 202);
        let (_, dest) = api
            .get(
                A,
                &format!("/app/acme/msg/{}/endpoint", msg["id"].as_str().unwrap()),
            )
            .await;
        let mut got: Vec<&str> = dest["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        got.sort_unstable();
        let mut want: Vec<&str> = want.iter().map(|e| e["id"].as_str().unwrap()).collect();
        want.sort_unstable();
        assert_eq!(got, want, "{body}");
    }
    // A manual resend reaches an endpoint the filters skipped.
    let (_, msgs) = api.get(A, "/app/acme/msg").await;
    let last = msgs["data"][0]["id"].as_str().unwrap();
    let eu_id = eu["id"].as_str().unwrap();
    let (s, body) = api
        .post(
            A,
            &format!("/app/acme/msg/{last}/endpoint/{eu_id}/resend"),
            "",
        )
        .await;
    assert_eq!((s, body), (202, json!({})));
    let (_, dest) = api.get(A, &format!("/app/acme/msg/{last}/endpoint")).await;
    assert_eq!(dest["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn browsers_get_cors_as_svix_answers_it() {
    let api = Api::start().await;
    let r = api
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/app/acme/endpoint", api.base),
        )
        .header("origin", "https://portal.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, idempotency-key, svix-req-id",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "authorization, idempotency-key, svix-req-id"
    );
    let r = api
        .http
        .get(format!("{}/health", api.base))
        .header("origin", "https://portal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn filtered_pages_walk_every_match_once_both_ways() {
    let api = Api::start().await;
    let (_, app) = api
        .post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let owner = app["id"].as_str().unwrap().to_owned();
    // 6,000 messages (more than one filtered page's scan of 5,000), 1 in 250 of the type
    // looked for, sent through the outbox directly (the API's own path, without HTTP).
    let mut want = Vec::new();
    for i in 0..6_000u32 {
        let t = if i % 250 == 7 {
            "rare.one"
        } else {
            "common.one"
        };
        let m = outworx_hooks::send::NewMessage::new(t, &json!({"i": i}))
            .unwrap()
            .owner(owner.clone());
        let sent = api.emitter.send_message(m).await.unwrap();
        if t == "rare.one" {
            want.push(sent.message_id);
        }
    }
    want.reverse(); // newest first
    let walk = |iterator: Option<String>| {
        let api = &api;
        async move {
            let mut path =
                "/app/acme/msg?event_types=rare.one&limit=5&with_content=false".to_owned();
            if let Some(it) = iterator {
                path.push_str(&format!("&iterator={it}"));
            }
            let (s, page) = api.get(A, &path).await;
            assert_eq!(s, 200, "{page}");
            page
        }
    };
    let (mut seen, mut pages, mut it, mut last_page) = (Vec::new(), 0, None, Value::Null);
    loop {
        let page = walk(it.clone()).await;
        pages += 1;
        assert!(pages < 100, "the walk does not end");
        for m in page["data"].as_array().unwrap() {
            assert_eq!(m["eventType"], "rare.one");
            seen.push(m["id"].as_str().unwrap().to_owned());
        }
        if page["done"] == true {
            break;
        }
        it = page["iterator"].as_str().map(str::to_owned);
        last_page = page;
    }
    assert_eq!(seen, want, "forward: every match once, newest first");
    // Backward from the last full page: the pages before it, in order, to the start.
    let mut back = Vec::new();
    let mut prev = last_page["prevIterator"].as_str().map(str::to_owned);
    let mut pages = 0;
    while let Some(p) = prev {
        let page = walk(Some(p)).await;
        pages += 1;
        assert!(pages < 100, "the walk back does not end");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        back.splice(0..0, ids);
        if page["done"] == true {
            break;
        }
        prev = page["prevIterator"].as_str().map(str::to_owned);
    }
    let first_of_last = last_page["data"][0]["id"].as_str().unwrap();
    let before: Vec<&String> = want
        .iter()
        .take_while(|id| id.as_str() != first_of_last)
        .collect();
    assert_eq!(
        back.iter().collect::<Vec<_>>(),
        before,
        "backward: the same matches"
    );
}

#[tokio::test]
async fn payloads_come_back_byte_for_byte_and_an_operators_disable_holds() {
    let api = Api::start().await;
    api.post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let body = r#"{"eventType": "a.b", "payload": {  "big" : 123456789012345678901234567890, "f": 1.50, "s": "\u00e9" }}"#;
    let (s, msg) = api.post(A, "/app/acme/msg", body).await;
    assert_eq!(s, 202, "{msg}");
    let id = msg["id"].as_str().unwrap();
    let text = api
        .http
        .get(format!("{}/app/acme/msg/{id}", api.base))
        .bearer_auth(A)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#""payload":{  "big" : 123456789012345678901234567890, "f": 1.50, "s": "\u00e9" }"#
        ),
        "{text}"
    );

    // An endpoint an operator disabled stays disabled through its owner's PUT and PATCH.
    let (_, ep) = api
        .post(
            A,
            "/app/acme/endpoint",
            r#"{"url": "http://127.0.0.1:9/h"}"#,
        )
        .await;
    let ep_id = ep["id"].as_str().unwrap();
    api.emitter
        .set_enabled(Scope::All, ep_id, false)
        .await
        .unwrap();
    let path = format!("/app/acme/endpoint/{ep_id}");
    let (s, out) = api
        .call(
            A,
            reqwest::Method::PUT,
            &path,
            Some(r#"{"url": "http://127.0.0.1:9/new"}"#),
        )
        .await;
    assert_eq!(
        (s, &out["disabled"], &out["url"]),
        (200, &json!(true), &json!("http://127.0.0.1:9/new"))
    );
    let (s, out) = api
        .call(
            A,
            reqwest::Method::PATCH,
            &path,
            Some(r#"{"disabled": false}"#),
        )
        .await;
    assert_eq!(
        (s, out["code"].as_str()),
        (403, Some("insufficient access"))
    );
    let (_, out) = api.get(A, &path).await;
    assert_eq!(out["disabled"], true);
    // Its owner's own disable is its own to lift.
    api.emitter
        .set_enabled(Scope::All, ep_id, true)
        .await
        .unwrap();
    let (s, out) = api
        .call(
            A,
            reqwest::Method::PATCH,
            &path,
            Some(r#"{"disabled": true}"#),
        )
        .await;
    assert_eq!((s, &out["disabled"]), (200, &json!(true)));
    let (s, out) = api
        .call(
            A,
            reqwest::Method::PATCH,
            &path,
            Some(r#"{"disabled": false}"#),
        )
        .await;
    assert_eq!((s, &out["disabled"]), (200, &json!(false)));
}

#[tokio::test]
async fn an_app_token_opens_its_application_and_nothing_else() {
    let clock = outworx_hooks::queue::ManualClock::new(1_800_000_000_000);
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .clock(clock.clone())
        .worker(None)
        .build();
    let app: axum::Router = SvixApi::new(emitter.clone())
        .token(A, "tenant-a")
        .token(B, "tenant-b")
        .portal_tokens(|ns| (ns != "tenant-c").then_some([9u8; 32]))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = Api {
        base: format!("http://{addr}/api/v1"),
        http: reqwest::Client::new(),
        emitter,
    };
    api.post(
        A,
        "/event-type",
        r#"{"name": "order.created", "description": "d"}"#,
    )
    .await;
    let (_, acme) = api
        .post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let (_, other) = api
        .post(A, "/app", r#"{"name": "Other", "uid": "other"}"#)
        .await;
    let (_, theirs) = api
        .post(B, "/app", r#"{"name": "B's", "uid": "acme"}"#)
        .await;
    let (_, ep_other) = api
        .post(
            A,
            "/app/other/endpoint",
            r#"{"url": "http://127.0.0.1:9/o"}"#,
        )
        .await;
    let (s, access) = api.post(A, "/auth/app-portal-access/acme", "{}").await;
    assert_eq!(s, 200, "{access}");
    let token = access["token"].as_str().unwrap().to_owned();
    assert!(
        access["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/portal/#token={token}"))
    );
    let acme_id = acme["id"].as_str().unwrap();

    // Its own application, by uid and by id: read, and manage endpoints.
    assert_eq!(api.get(&token, "/app/acme").await.0, 200);
    assert_eq!(
        api.get(&token, &format!("/app/{acme_id}/endpoint")).await.0,
        200
    );
    let (s, ep) = api
        .post(
            &token,
            "/app/acme/endpoint",
            r#"{"url": "http://127.0.0.1:9/h", "eventTypes": ["order.created"]}"#,
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    assert_eq!(
        api.get(&token, "/event-type").await.0,
        200,
        "the picker reads event types"
    );
    // An event type behind a feature flag: only tokens with the flag see it.
    api.post(
        A,
        "/event-type",
        r#"{"name": "beta.thing", "description": "d", "featureFlag": "beta"}"#,
    )
    .await;
    let names = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&api.get(&token, "/event-type").await.1),
        ["order.created"]
    );
    assert_eq!(api.get(&token, "/event-type/beta.thing").await.0, 404);
    let (_, flagged) = api
        .post(
            A,
            "/auth/app-portal-access/acme",
            r#"{"featureFlags": ["beta"]}"#,
        )
        .await;
    let flagged = flagged["token"].as_str().unwrap();
    assert_eq!(
        names(&api.get(flagged, "/event-type").await.1),
        ["beta.thing", "order.created"]
    );
    assert_eq!(
        names(&api.get(A, "/event-type").await.1),
        ["beta.thing", "order.created"]
    );
    // Anything namespace-wide: 403.
    for (method, path, body) in [
        (reqwest::Method::GET, "/app".to_owned(), None),
        (
            reqwest::Method::POST,
            "/app".to_owned(),
            Some(r#"{"name": "x"}"#),
        ),
        (reqwest::Method::DELETE, "/app/acme".to_owned(), None),
        (reqwest::Method::PATCH, "/app/acme".to_owned(), Some("{}")),
        (
            reqwest::Method::POST,
            "/app/acme/msg".to_owned(),
            Some(r#"{"eventType": "a.b", "payload": {}}"#),
        ),
        (
            reqwest::Method::POST,
            "/event-type".to_owned(),
            Some(r#"{"name": "x.y", "description": "d"}"#),
        ),
        (
            reqwest::Method::POST,
            "/auth/app-portal-access/acme".to_owned(),
            Some("{}"),
        ),
    ] {
        let (s, out) = api.call(&token, method.clone(), &path, body).await;
        assert_eq!(
            (s, out["code"].as_str()),
            (403, Some("insufficient access")),
            "{method} {path}"
        );
    }
    // Another application (its own namespace's, or another's): exactly as a missing one.
    let (_, missing) = api
        .get(&token, "/app/app_00000000000000000000000000/endpoint")
        .await;
    for path in [
        format!("/app/{}/endpoint", other["id"].as_str().unwrap()),
        "/app/other/endpoint".to_owned(),
        format!("/app/other/endpoint/{}", ep_other["id"].as_str().unwrap()),
        format!("/app/{}/endpoint", theirs["id"].as_str().unwrap()),
    ] {
        let (s, out) = api.get(&token, &path).await;
        assert_eq!((s, &out), (404, &missing), "{path}");
    }

    // Read-only: reads only.
    let (_, ro) = api
        .post(A, "/auth/app-portal-access/acme", r#"{"readOnly": true}"#)
        .await;
    let ro = ro["token"].as_str().unwrap();
    assert_eq!(api.get(ro, "/app/acme/endpoint").await.0, 200);
    let (s, _) = api
        .post(
            ro,
            "/app/acme/endpoint",
            r#"{"url": "http://127.0.0.1:9/x"}"#,
        )
        .await;
    assert_eq!(s, 403);

    // Forged, altered, expired: 401.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(api.get(&forged, "/app/acme/endpoint").await.0, 401);
    clock.advance(std::time::Duration::from_secs(3600));
    let (s, out) = api.get(&token, "/app/acme/endpoint").await;
    assert_eq!(
        (s, out["code"].as_str()),
        (401, Some("authentication_failed")),
        "expired after an hour"
    );
    // Lifetimes out of range and tokens too long to verify are refused when asked for.
    for body in [
        r#"{"expiry": 30}"#.to_owned(),
        r#"{"expiry": 604801}"#.to_owned(),
        format!(r#"{{"featureFlags": {}}}"#, json!(vec!["f".repeat(64); 17])),
    ] {
        let (s, out) = api.post(A, "/auth/app-portal-access/acme", &body).await;
        assert_eq!(s, 422, "{body}: {out}");
    }
    // The most flags a token may carry still make a token that verifies.
    let most = format!(r#"{{"featureFlags": {}}}"#, json!(vec!["f".repeat(64); 16]));
    let (_, big) = api.post(A, "/auth/app-portal-access/acme", &most).await;
    assert_eq!(
        api.get(big["token"].as_str().unwrap(), "/app/acme").await.0,
        200
    );
    // expire-all: every token issued until now is refused; a new one works.
    let (_, fresh) = api
        .post(A, "/auth/app-portal-access/acme", r#"{"expiry": 600}"#)
        .await;
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&fresh, "/app/acme/endpoint").await.0, 200);
    clock.advance(std::time::Duration::from_millis(5));
    let (s, _) = api.post(A, "/auth/app/acme/expire-all", "{}").await;
    assert_eq!(s, 204);
    assert_eq!(
        api.get(&fresh, "/app/acme/endpoint").await.0,
        401,
        "expired by expire-all"
    );
    // A namespace-wide route refuses an app token before anything else.
    assert_eq!(
        api.post(&fresh, "/auth/app/acme/expire-all", "{}").await.0,
        403
    );
    clock.advance(std::time::Duration::from_millis(5));
    let (_, fresh) = api.post(A, "/auth/app-portal-access/acme", "{}").await;
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&fresh, "/app/acme/endpoint").await.0, 200);
    assert_eq!(
        api.post(&fresh, "/auth/app/acme/expire-all", "{}").await.0,
        403
    );
    // HEAD is a read.
    let head = api
        .http
        .head(format!("{}/app/acme", api.base))
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // Deleting the application revokes its tokens.
    let (s, _) = api
        .call(A, reqwest::Method::DELETE, "/app/acme", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(api.get(&fresh, "/app/acme/endpoint").await.0, 401);
    assert_eq!(
        api.get(&fresh, &format!("/app/{acme_id}/endpoint")).await.0,
        401
    );
}

#[tokio::test]
async fn an_app_token_is_held_to_its_routes_under_any_mount_prefix() {
    let emitter = Emitter::builder(Outbox::memory().await.unwrap())
        .policy(TargetPolicy::default().allow("127.0.0.0/8".parse().unwrap()))
        .worker(None)
        .build();
    let svix: axum::Router = SvixApi::new(emitter.clone())
        .token(A, "tenant-a")
        .portal_tokens(|_| Some([3u8; 32]))
        .router();
    // An application mounting the API (and its portal) under a prefix of its own.
    let app = axum::Router::new().nest("/hooks", svix);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = Api {
        base: format!("http://{addr}/hooks/api/v1"),
        http: reqwest::Client::new(),
        emitter,
    };
    api.post(A, "/app", r#"{"name": "Acme", "uid": "acme"}"#)
        .await;
    let (s, access) = api.post(A, "/auth/app-portal-access/acme", "{}").await;
    assert_eq!(s, 200, "{access}");
    let token = access["token"].as_str().unwrap();
    assert_eq!(api.get(token, "/app/acme/endpoint").await.0, 200);
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/app/acme/msg",
            Some(r#"{"eventType": "a.b", "payload": {}}"#),
        ),
        (
            reqwest::Method::PATCH,
            "/app/acme",
            Some(r#"{"name": "mine now"}"#),
        ),
        (
            reqwest::Method::POST,
            "/auth/app-portal-access/acme",
            Some("{}"),
        ),
        (reqwest::Method::GET, "/app", None),
    ] {
        let (s, out) = api.call(token, method.clone(), path, body).await;
        assert_eq!(s, 403, "{method} {path}: {out}");
    }
    // The portal page is there too, with its policy.
    let page = api
        .http
        .get(format!("http://{addr}/hooks/portal/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn an_application_chooses_svix_or_webhook_header_names() {
    use outworx_hooks::send::Format;
    let api = Api::start().await;
    let (s, app) = api
        .post(
            A,
            "/app",
            r#"{"name": "Acme", "uid": "acme", "signatureHeaders": "svix"}"#,
        )
        .await;
    assert_eq!((s, &app["signatureHeaders"]), (201, &json!("svix")));
    let (_, ep) = api
        .post(
            A,
            "/app/acme/endpoint",
            r#"{"url": "http://127.0.0.1:9/h"}"#,
        )
        .await;
    let format = |id: String| {
        let emitter = api.emitter.clone();
        async move {
            emitter
                .endpoint(Scope::All, &id)
                .await
                .unwrap()
                .unwrap()
                .format
        }
    };
    let id = ep["id"].as_str().unwrap().to_owned();
    assert_eq!(format(id.clone()).await, Format::SvixHeaders);
    let (s, _) = api
        .call(
            A,
            reqwest::Method::PATCH,
            "/app/acme",
            Some(r#"{"signatureHeaders": "webhook"}"#),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        format(id.clone()).await,
        Format::Svix,
        "its endpoints follow"
    );
    let (s, _) = api
        .call(
            A,
            reqwest::Method::PATCH,
            "/app/acme",
            Some(r#"{"signatureHeaders": "x-hooks"}"#),
        )
        .await;
    assert_eq!(s, 422);
    // Without the setting: the API's default (Standard Webhooks' names).
    api.post(A, "/app", r#"{"name": "Plain", "uid": "plain"}"#)
        .await;
    let (_, ep) = api
        .post(
            A,
            "/app/plain/endpoint",
            r#"{"url": "http://127.0.0.1:9/p"}"#,
        )
        .await;
    assert_eq!(
        format(ep["id"].as_str().unwrap().to_owned()).await,
        Format::Svix
    );
}

/// An outbox whose applications table came from an earlier build (without the columns added
/// since) is upgraded when opened, and the API works on it.
#[tokio::test]
async fn an_earlier_applications_table_is_upgraded() {
    use outworx_hooks::send::sqlx;
    let dir = outworx_test_support::net::temp_dir("svix-upgrade");
    let path = dir.join("outbox.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE outworx_apps (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, uid TEXT, \
         name TEXT NOT NULL, metadata TEXT NOT NULL, rate_limit INTEGER, \
         created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let emitter = Emitter::builder(Outbox::open(path.to_str().unwrap()).await.unwrap())
        .worker(None)
        .build();
    let app: axum::Router = SvixApi::new(emitter.clone())
        .token(A, "tenant-a")
        .portal_tokens(|_| Some([1u8; 32]))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = Api {
        base: format!("http://{addr}/api/v1"),
        http: reqwest::Client::new(),
        emitter,
    };
    let (s, out) = api
        .post(
            A,
            "/app",
            r#"{"name": "Acme", "uid": "acme", "signatureHeaders": "svix"}"#,
        )
        .await;
    assert_eq!(s, 201, "{out}");
    // expire-all, then a token issued in the same millisecond still works.
    assert_eq!(api.post(A, "/auth/app/acme/expire-all", "{}").await.0, 204);
    let (_, access) = api.post(A, "/auth/app-portal-access/acme", "{}").await;
    assert_eq!(
        api.get(access["token"].as_str().unwrap(), "/app/acme")
            .await
            .0,
        200
    );
}
