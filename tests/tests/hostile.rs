//! Hostile HTTP input at the gateway: bodies over the size limit, deeply nested JSON, clients
//! that stall while sending headers or the body, and clients that flood the public routes or
//! guess credentials. Each gets a clear 4xx (or a closed connection) quickly, and the gateway
//! keeps serving everyone else.

use beckon_e2e::{Options, TestApp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The JSON error shape every error shares.
fn assert_error_shape(status: u16, body: &Value, code: &str) {
    assert_eq!(body["statusCode"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn raw_post(app: &TestApp, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .http
        .post(app.url(path))
        .header("x-api-key", &app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_deeply_nested_bodies_get_clear_4xx_errors() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let paths = [
        "/api/v1/events/send".to_owned(),
        "/api/v1/lifecycle/dispatch".to_owned(),
        "/api/v1/users/upsert".to_owned(),
        "/api/v1/projects".to_owned(),
        format!("/api/v1/projects/{project}/surveys"),
        format!("/api/v1/projects/{project}/webhooks"),
    ];
    // Just over the 256 KiB limit, valid JSON all the same.
    let big =
        serde_json::to_vec(&json!({"project_id": project, "pad": "x".repeat(256 * 1024)})).unwrap();
    // Far deeper than any parser should follow, well under the size limit.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let deep_object = format!(
        "{{\"project_id\": \"{project}\", \"event\": {}1{}}}",
        "{\"a\":".repeat(20_000),
        "}".repeat(20_000)
    )
    .into_bytes();
    for path in &paths {
        let (status, body) = raw_post(&app, path, big.clone()).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_error_shape(413, &body, "payload_too_large");

        for nested in [&deep, &deep_object] {
            let started = Instant::now();
            let (status, body) = raw_post(&app, path, nested.clone()).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_error_shape(400, &body, "invalid_json");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} took {:?}",
                started.elapsed()
            );
        }
    }
    // A body far over the limit is refused without being read to the end.
    let huge = vec![b' '; 8 * 1024 * 1024];
    let (status, body) = raw_post(&app, "/api/v1/events/send", huge).await;
    assert_eq!(status, 413, "{body}");
    // And the gateway is fine.
    let r = app.http.get(app.ops_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Reads until the server closes the connection or `limit` passes; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_are_cut_off_and_do_not_block_others() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_HTTP_BODY_TIMEOUT_MS", "2000".to_owned()),
            // Room for every stalled connection below: the limit is tested on its own.
            ("BECKON_HTTP_MAX_CONNECTIONS", "1000".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();

    // Many connections that send half a request head and stop.
    let mut heads = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /api/v1/events/send HTTP/1.1\r\nHost: beckon\r\nX-API-Key: ")
            .await
            .unwrap();
        heads.push(s);
    }
    // Connections that send the head and a little of a promised body, then stop.
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /api/v1/events/send HTTP/1.1\r\nHost: beckon\r\nX-API-Key: {}\r\n\
             X-Team-ID: {project}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"event_name\":",
            app.token
        );
        s.write_all(head.as_bytes()).await.unwrap();
        bodies.push(s);
    }

    // Everyone else is served meanwhile.
    let started = Instant::now();
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The stalled heads are answered 408 (or closed) within the request timeout.
    for s in heads.iter_mut().take(5) {
        let answer = read_until_closed(s, Duration::from_secs(15))
            .await
            .expect("a stalled request head is cut off");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    // The stalled bodies are cut off too, with a 408 in the error shape.
    for s in bodies.iter_mut().take(5) {
        let answer = read_until_closed(s, Duration::from_secs(20))
            .await
            .expect("a stalled request body is cut off");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        let body: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        assert_error_shape(408, &body, "request_timeout");
    }
    // (A new client: the pooled connections idled past the server's keep-alive.)
    let r = reqwest::get(app.url("/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_connection_limit_the_gateway_makes_new_clients_wait() {
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_HTTP_MAX_CONNECTIONS", "16".to_owned())],
        ..Options::default()
    })
    .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Every slot is held (the listen backlog took the connection): the new client waits.
    let waited = tokio::time::timeout(
        Duration::from_millis(1500),
        fresh.get(app.url("/openapi.json")).send(),
    )
    .await;
    assert!(
        waited.is_err(),
        "served past the connection limit: {waited:?}"
    );
    // Once the held connections go, it is served.
    drop(held);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        fresh.get(app.url("/openapi.json")).send(),
    )
    .await
    .expect("served once connections are free")
    .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_settings_out_of_range_are_400_with_their_codes_on_create_and_update() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app.create_survey(project, json!({})).await;
    let base = json!({
        "name": "Bounds",
        "status": "draft",
        "questions": [{"id": "nps", "type": "nps", "title": "How likely?"}],
    });
    for (field, value, code) in [
        (
            "trial_reminder_lead_seconds",
            json!(-12_908_008_261_001i64),
            "invalid_trial_reminder_lead",
        ),
        (
            "trial_reminder_lead_seconds",
            json!(91 * 24 * 3600),
            "invalid_trial_reminder_lead",
        ),
        ("cooldown_seconds", json!(-1), "invalid_cooldown"),
        ("sample_rate", json!(1.5), "invalid_sample_rate"),
        (
            "invitation_lifetime_seconds",
            json!(1),
            "invalid_invitation_lifetime",
        ),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        let (status, answer) = raw_post(
            &app,
            &format!("/api/v1/projects/{project}/surveys"),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 400, "create with {field} = {value}: {answer}");
        assert_error_shape(400, &answer, code);

        let r = app
            .authed(
                reqwest::Method::PATCH,
                &format!(
                    "/api/v1/projects/{project}/surveys/{}",
                    survey["id"].as_str().unwrap()
                ),
            )
            .json(&json!({ field: value }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "update with {field} = {value}: {answer}");
        assert_error_shape(400, &answer, code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_past_what_can_be_held_are_refused_and_never_take_the_intake_down() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let survey = app
        .create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // Parses as RFC 3339, but its UTC value lies past year 9999. More requests than the
    // gateway has intake workers.
    let extreme = "9999-12-31T23:59:59-23:59";
    for i in 0..6 {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("x{i}")}, "trigger_at": extreme}),
            )
            .await;
        assert_error_shape(status, &body, "invalid_trigger_at");
        assert_eq!(status, 400);
    }
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "x", "trial_ends_at": extreme}))
        .await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_trial_ends_at")),
        "{body}"
    );
    let r = app
        .authed(
            reqwest::Method::GET,
            &format!(
                "/api/v1/projects/{project}/surveys/{}/responses?since={}",
                survey["id"].as_str().expect("an id"),
                extreme.replace('+', "%2B")
            ),
        )
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(r.status(), 400);

    // Everyone else is still served.
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "after"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.wait_trigger(
        body["trigger_id"].as_str().expect("a trigger id"),
        "completed",
        Duration::from_secs(30),
    )
    .await;
}

/// Asserts a 429 `rate_limited` with a usable `Retry-After`.
async fn assert_rate_limited(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 429, "{what}");
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    assert!(r.headers().contains_key("ratelimit-limit"), "{what}");
    let body: Value = r.json().await.unwrap();
    assert_error_shape(429, &body, "rate_limited");
}

async fn magic_links(app: &TestApp, n: usize) -> Vec<String> {
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let mut links = Vec::new();
    for i in 0..n {
        let (status, body) = app
            .dispatch(json!({"project_id": project, "user_ref": format!("u{i}"), "event": "trial_expired"}))
            .await;
        assert_eq!(status, 200, "{body}");
        links.push(
            body["created_invitations"][0]["magic_link_url"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    links
}

/// A new project's publishable key, and the hash of user `u1` under its widget secret.
async fn publishable_key(app: &TestApp) -> (String, String) {
    let (key, secret) = app.widget_keys(app.create_project().await).await;
    (key, beckon_domain::secret::user_hash(&secret, "u1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magic_link_and_a_client_address_past_their_rate_limits_get_429() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_LINK_RATE_LIMIT_PER_SECOND", "0.05".into()),
            ("BECKON_LINK_RATE_LIMIT_BURST", "3".into()),
            ("BECKON_PUBLIC_RATE_LIMIT_PER_SECOND", "0.05".into()),
            ("BECKON_PUBLIC_RATE_LIMIT_BURST", "6".into()),
        ],
        ..Options::default()
    })
    .await;
    let links = magic_links(&app, 2).await;
    for _ in 0..3 {
        let r = app.http.get(&links[0]).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // The fourth use of one link in a burst is refused, whatever the route.
    let r = app
        .http
        .post(format!("{}/display", links[0]))
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "a link past its burst").await;
    // Another link has a bucket of its own...
    for _ in 0..2 {
        let r = app.http.get(&links[1]).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // ...but this address has now made six requests to the public routes: its seventh is
    // refused, though the link would allow it.
    let r = app.http.get(&links[1]).send().await.unwrap();
    assert_rate_limited(r, "an address past its burst").await;
    // The API is limited per organization, not by the public routes' limits.
    let r = app
        .authed(reqwest::Method::GET, "/api/v1/projects")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_past_its_publishable_keys_rate_limit_gets_429() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_WIDGET_RATE_LIMIT_PER_SECOND", "0.05".into()),
            ("BECKON_WIDGET_RATE_LIMIT_BURST", "2".into()),
        ],
        ..Options::default()
    })
    .await;
    let ((key, hash), other) = (publishable_key(&app).await, publishable_key(&app).await);
    let widget = |(key, hash): &(String, String)| {
        app.http
            .get(app.url(&format!(
                "/api/v1/widget/invitations?user_ref=u1&user_hash={hash}"
            )))
            .header("x-publishable-key", key)
    };
    let ours = (key.clone(), hash.clone());
    for _ in 0..2 {
        assert_eq!(widget(&ours).send().await.unwrap().status(), 200);
    }
    assert_rate_limited(widget(&ours).send().await.unwrap(), "the key in a header").await;
    // The key counts the same in the query string.
    let r = app
        .http
        .get(app.url(&format!(
            "/api/v1/widget/invitations?user_ref=u1&user_hash={hash}&key={key}"
        )))
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "the key in the query").await;
    // Another project's widget is not held back by this one's traffic.
    assert_eq!(widget(&other).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_presenting_bad_credentials_gets_429_even_with_a_good_one() {
    // Behind a trusted proxy (the test itself, on 127.0.0.1), X-Forwarded-For tells the
    // clients apart.
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_REFUSED_CREDENTIALS_PER_SECOND", "0.05".into()),
            ("BECKON_REFUSED_CREDENTIALS_BURST", "3".into()),
            ("BECKON_TRUSTED_PROXIES", "127.0.0.1".into()),
        ],
        ..Options::default()
    })
    .await;
    let from = |client: &str, method: reqwest::Method, url: String| {
        app.http
            .request(method, url)
            .header("x-forwarded-for", format!("{client}, 127.0.0.1"))
    };
    let projects = app.url("/api/v1/projects");
    let bogus_token = format!("oat_{}", "A".repeat(43));

    // Unknown organization tokens.
    for _ in 0..3 {
        let r = from("203.0.113.1", reqwest::Method::GET, projects.clone())
            .bearer_auth(&bogus_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = from("203.0.113.1", reqwest::Method::GET, projects.clone())
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "a good token from a guessing address").await;

    // Another client is served, and unknown magic links count against it.
    let r = from("203.0.113.2", reqwest::Method::GET, projects.clone())
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for i in 0..3 {
        let guess = app.url(&format!("/surveys/{}{i}", "B".repeat(42)));
        let r = from("203.0.113.2", reqwest::Method::GET, guess)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let guess = app.url(&format!("/surveys/{}", "C".repeat(43)));
    let r = from("203.0.113.2", reqwest::Method::GET, guess)
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "magic-link guesses").await;

    // And so do unknown publishable keys.
    let widget = app.url("/api/v1/widget/invitations?user_ref=u1");
    for _ in 0..3 {
        let r = from("203.0.113.3", reqwest::Method::GET, widget.clone())
            .header("x-publishable-key", "pk_nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = from("203.0.113.3", reqwest::Method::GET, widget.clone())
        .header("x-publishable-key", "pk_nope")
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "publishable-key guesses").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_REFUSED_CREDENTIALS_PER_SECOND", "0.05".into()),
            ("BECKON_REFUSED_CREDENTIALS_BURST", "2".into()),
        ],
        ..Options::default()
    })
    .await;
    let bogus_token = format!("oat_{}", "A".repeat(43));
    for client in ["203.0.113.1", "203.0.113.2"] {
        let r = app
            .http
            .get(app.url("/api/v1/projects"))
            .header("x-forwarded-for", client)
            .bearer_auth(&bogus_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // A header naming yet another client does not make a guesser someone new.
    let r = app
        .http
        .get(app.url("/api/v1/projects"))
        .header("x-forwarded-for", "203.0.113.3")
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_rate_limited(r, "a forged X-Forwarded-For").await;
}
