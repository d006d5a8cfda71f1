//! The dashboard (`GET /ui`, API.md §7) in a real browser: Debian's
//! Chromium, headless, driven through ChromeDriver (`.ci/run` installs
//! both). It loads the dashboard of a live three-broker cluster and checks
//! what a person would look at: the members and the leader, a topic's
//! counts, a message published through the form appearing in the live
//! tail, a killed broker marked down within 2 s. A screenshot is kept in
//! the test's temporary directory.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::wire::StartFrom;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use support::*;

const WAIT: Duration = Duration::from_secs(15);

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    process: ChildGuard,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; .ci/run installs it)");
        let driver = Driver {
            process: ChildGuard(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        eventually(WAIT, "chromedriver answers", || async {
            reqwest::get(&status).await.is_ok()
        })
        .await;
        driver
    }

    /// A headless Chromium, with the flags that keep it off the network.
    async fn browser(&self) -> Browser {
        let options = serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1200,1000",
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_string(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.0.kill();
    }
}

/// The text of the first element `css` finds, or "" when there is none.
async fn text_of(browser: &Browser, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the text of `css` satisfies `accept`; returns it.
async fn until_text(browser: &Browser, css: &str, accept: impl Fn(&str) -> bool) -> String {
    eventually_ok(WAIT, &format!("{css} shows what is expected"), || async {
        let text = text_of(browser, css).await;
        if accept(&text) {
            Ok(text)
        } else {
            Err(format!("{css}: {text:?}"))
        }
    })
    .await
}

async fn fill_in(browser: &Browser, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Browser, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_cluster_in_a_browser() {
    let mut cluster = Cluster::start(3, &[]).await;
    let (leader, _) = cluster.agreed_leader(WAIT).await;
    let client = cluster.client(0);
    topic_of(&client, "P1", "news").await;
    subscribed(&client, "S1", "news", StartFrom::Earliest).await;
    client
        .publish_batch("news", "P1", vec!["one".into(), "two".into()])
        .await
        .unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/ui", cluster.broker(0).url()))
        .await
        .unwrap();

    // Health first: every broker up, the leader named.
    let health = until_text(&browser, "#health", |t| t.starts_with("Healthy")).await;
    assert!(health.contains("3 of 3 brokers alive"), "{health}");
    assert!(health.contains(&leader), "{health}");
    for id in cluster.ids() {
        let state = format!("tr[data-member=\"{id}\"] td.state");
        until_text(&browser, &state, |t| t == "up").await;
    }
    let leader_row = format!("tr[data-member=\"{leader}\"]");
    until_text(&browser, &leader_row, |t| t.contains("leader")).await;
    // The topic's counts, and its subscriber's backlog.
    until_text(&browser, "tr[data-topic=\"news\"] td.messages", |t| {
        t == "2"
    })
    .await;
    until_text(&browser, "tr[data-subscription=\"S1/news\"]", |t| {
        t.contains(" 2 ")
    })
    .await;

    // Follow the topic, publish through the form, see it in the tail.
    fill_in(&browser, "#tail-topic", "news").await;
    click(&browser, "#tail-form button").await;
    until_text(&browser, "#tail-status", |t| t.starts_with("Following")).await;
    fill_in(&browser, "#publish-topic", "news").await;
    fill_in(&browser, "#publish-publisher", "P1").await;
    fill_in(&browser, "#publish-payload", "hello from the browser").await;
    click(&browser, "#publish-form button").await;
    until_text(&browser, "#publish-result", |t| t.starts_with("Published")).await;
    until_text(&browser, "#tail", |t| {
        t.contains("P1: hello from the browser")
    })
    .await;
    // A publish the broker refuses is shown in words.
    fill_in(&browser, "#publish-topic", "nope").await;
    click(&browser, "#publish-form button").await;
    until_text(&browser, "#publish-result", |t| {
        t.contains("topic_not_found")
    })
    .await;

    // A broker killed is marked down within 2 s.
    let victim = cluster.id(2);
    cluster.kill(2);
    let killed = Instant::now();
    let state = format!("tr[data-member=\"{victim}\"] td.state");
    let mut marked = None;
    while killed.elapsed() < WAIT {
        if text_of(&browser, &state).await == "down" {
            marked = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let marked = marked.expect("the killed broker is marked down");
    assert!(
        marked <= Duration::from_secs(2),
        "marked down after {marked:?}"
    );
    let health = text_of(&browser, "#health").await;
    assert!(health.contains(&format!("Down: {victim}")), "{health}");

    let screenshot = browser.screenshot().await.unwrap();
    let kept = std::env::temp_dir().join(format!("rumor-dashboard-{}.png", std::process::id()));
    std::fs::write(&kept, &screenshot).unwrap();
    println!("screenshot: {}", kept.display());
    assert!(screenshot.starts_with(b"\x89PNG"));
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_and_says_when_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (token, hash) = client::connect::new_token();
    let auth = dir.path().join("auth.toml");
    let principal =
        format!("[[principal]]\nname = \"ops\"\nadmin = true\ntoken_sha256 = \"{hash}\"\n");
    std::fs::write(&auth, principal).unwrap();
    let broker = Broker::start_with(&["--auth-file", auth.to_str().unwrap()]).await;
    // Every endpoint but /health needs a token (API.md §5.2): the page
    // comes with its 401, the document does not.
    let page = broker.http_get("/ui").await;
    page.assert_status(401).assert_content_type("text/html");
    assert!(page.text.contains("<title>rumor</title>"));
    broker
        .http_get("/openapi.json")
        .await
        .assert_error(401, "unauthenticated");

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/ui", broker.url())).await.unwrap();
    // Without a token: the page loads, asks for one, and says why.
    until_text(&browser, "#login-why", |t| {
        t.contains("needs a client token")
    })
    .await;
    until_text(&browser, "#health", |t| t.contains("refused")).await;
    // A wrong one is refused in words; the right one shows the cluster.
    fill_in(&browser, "#token", "not-the-token").await;
    click(&browser, "#login-form button").await;
    until_text(&browser, "#login-why", |t| {
        t.contains("The token was refused")
    })
    .await;
    fill_in(&browser, "#token", &token).await;
    click(&browser, "#login-form button").await;
    until_text(&browser, "#health", |t| t.starts_with("Healthy")).await;
    browser.close().await.unwrap();
}
