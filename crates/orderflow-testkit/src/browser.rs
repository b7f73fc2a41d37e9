//! Headless Chromium driven through WebDriver: a `chromedriver` of the
//! test's own on a free port, one session with a fresh profile, and the
//! few steps a console test takes (open, wait for, fill, click, read,
//! screenshot), each panicking with a readable message.
//!
//! Debian's `chromium` and `chromium-driver` are used as installed
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `ORDERFLOW_CHROMIUM` and
//! `ORDERFLOW_CHROMEDRIVER` point elsewhere): nothing is downloaded at run
//! time. `scripts/test.sh` installs them. `chromedriver` runs in a process
//! group of its own under a small shell watchdog: dropping the [`Browser`]
//! kills that group and every process below it, so a panicking test leaves
//! no Chromium behind, and the watchdog does the same when the test process
//! dies without unwinding (killed, Ctrl-C).

use crate::binaries;
use crate::process::create_file;
use crate::redis::{free_port, which};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::collections::BTreeSet;
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the steps wait for an element unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long `chromedriver` may take to answer, and Chromium to start.
const START: Duration = Duration::from_secs(30);

/// Where a working pair comes from.
const INSTALL: &str = "Chromium and its chromedriver come from Debian's packages: `apt-get install chromium chromium-driver`, or run scripts/test.sh, which installs them";

/// `ORDERFLOW_CHROMEDRIVER`, else `/usr/bin/chromedriver`.
pub fn chromedriver_path() -> PathBuf {
    program("ORDERFLOW_CHROMEDRIVER", "/usr/bin/chromedriver")
}

/// `ORDERFLOW_CHROMIUM`, else `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    program("ORDERFLOW_CHROMIUM", "/usr/bin/chromium")
}

/// The variable's value (a path, or a name looked up on `PATH`), else the
/// default path.
fn program(variable: &str, default: &str) -> PathBuf {
    match std::env::var(variable) {
        Ok(value) if !value.contains('/') => which(&value).unwrap_or_else(|| value.into()),
        Ok(value) => value.into(),
        Err(_) => default.into(),
    }
}

/// `<target>/console-screenshots`: `target/console-screenshots` of the
/// workspace, or of wherever `CARGO_TARGET_DIR` put the test executable.
pub fn screenshot_dir() -> PathBuf {
    let profile = binaries::target_profile_dir();
    profile
        .parent()
        .unwrap_or(&profile)
        .join("console-screenshots")
}

/// A headless Chromium session on a `chromedriver` of its own. Derefs to
/// the [`fantoccini::Client`] for anything the helpers do not cover.
/// Dropping it kills `chromedriver` and Chromium; [`Browser::close`] ends
/// the session first.
pub struct Browser {
    client: Client,
    driver: Driver,
    webdriver_url: String,
}

impl Browser {
    /// Starts `chromedriver` on a free port, waits until it is ready and
    /// opens a headless Chromium session with a fresh profile. Panics with
    /// how to install them when either binary is missing, and with the
    /// driver's log when it or Chromium does not start.
    pub async fn start() -> Browser {
        let chromedriver = chromedriver_path();
        let chromium = chromium_path();
        for (name, path, variable) in [
            ("chromedriver", &chromedriver, "ORDERFLOW_CHROMEDRIVER"),
            ("chromium", &chromium, "ORDERFLOW_CHROMIUM"),
        ] {
            assert!(
                path.is_file(),
                "{name} is not installed at {} ({variable} overrides the path): the browser tests need it; {INSTALL}",
                path.display()
            );
        }

        let dir = std::env::temp_dir()
            .join("orderflow-e2e")
            .join(format!("browser-{}", uuid::Uuid::new_v4().simple()));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
        let port = free_port();
        // From here on, a panic drops the driver, which kills it.
        let mut driver = Driver::spawn(&chromedriver, port, dir);
        let webdriver_url = format!("http://127.0.0.1:{port}");
        driver.wait_ready(&webdriver_url).await;

        let mut chrome_options = serde_json::Map::new();
        chrome_options.insert("binary".into(), chromium.display().to_string().into());
        chrome_options.insert(
            "args".into(),
            serde_json::json!([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]),
        );
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), chrome_options.into());
        // Plain HTTP to the local driver: no TLS connector (no OpenSSL).
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let connected = tokio::time::timeout(START, builder.connect(&webdriver_url)).await;
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "chromedriver could not start Chromium ({}): {e}\n{}",
                chromium.display(),
                driver.tail()
            ),
            Err(_) => panic!(
                "Chromium ({}) did not start within {START:?}\n{}",
                chromium.display(),
                driver.tail()
            ),
        };
        Browser {
            client,
            driver,
            webdriver_url,
        }
    }

    /// The WebDriver client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `http://127.0.0.1:<port>` of this browser's `chromedriver`.
    pub fn webdriver_url(&self) -> &str {
        &self.webdriver_url
    }

    /// `chromedriver`'s log, with Chromium's own output.
    pub fn log_path(&self) -> &Path {
        &self.driver.log
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("the browser could not open {url}: {e}"));
    }

    /// The first element matching the CSS selector, waiting up to [`WAIT`]
    /// for one to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_within(css, WAIT).await
    }

    /// The first element matching the CSS selector, waiting up to `within`.
    /// Panics with the page's address and text when none appears.
    pub async fn wait_for_within(&self, css: &str, within: Duration) -> Element {
        match self
            .client
            .wait()
            .at_most(within)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(fantoccini::error::CmdError::WaitTimeout) => panic!(
                "no element `{css}` within {within:?}\n{}",
                self.describe_page().await
            ),
            Err(e) => panic!("waiting for `{css}`: {e}\n{}", self.describe_page().await),
        }
    }

    /// The rendered text of the element `css` (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.wait_for(css).await.text().await {
                Ok(text) => return text,
                // The page was replaced between finding the element and
                // reading it (a navigation, a refresh): look again.
                Err(e) if e.is_stale_element_reference() && Instant::now() <= deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot read the text of `{css}`: {e}"),
            }
        }
    }

    /// Waits up to [`WAIT`] until the text of the element `css` contains
    /// `needle` (a page that updates itself); returns the whole text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "`{css}` did not come to contain {needle:?} within {WAIT:?}; it says {text:?}\n{}",
                    self.describe_page().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clears the form field `css` (waiting for it) and types `value`.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.wait_for(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear `{css}`: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
    }

    /// Clicks the element `css` (waiting for it).
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
    }

    /// Saves a PNG of the viewport as `<target>/console-screenshots/<name>.png`
    /// (see [`screenshot_dir`]) and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty() && !name.contains(['/', '\\']),
            "a screenshot name is a file name without `.png`: {name:?}"
        );
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take screenshot {name}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Ends the session (Chromium quits), then stops `chromedriver`.
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("orderflow-e2e: closing the browser session: {e}");
        }
    }

    /// The current address and the start of the page's text, for a panic.
    async fn describe_page(&self) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = match self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
        {
            Ok(serde_json::Value::String(text)) => text.chars().take(2000).collect(),
            Ok(other) => other.to_string(),
            Err(e) => format!("(cannot read the page: {e})"),
        };
        format!("----- page {url} -----\n{text}")
    }
}

impl Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== orderflow-e2e: browser failed; chromedriver's log and the profile are kept in {} =====",
                self.driver.dir.display()
            );
        }
        // The driver's own drop kills it and Chromium.
    }
}

/// Runs chromedriver (`$0 "$@"`) in the shell's process group and waits for
/// it; a watcher kills the whole group when the shell's standard input, a
/// pipe from the test process, closes: a test process that is killed
/// (SIGKILL, Ctrl-C: the group is not the terminal's) leaves no browser.
const WATCHDOG: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
driver=$!
{ read -r _ <&3; kill -KILL 0; } &
wait "$driver""#;

/// `chromedriver` in a process group of its own, under [`WATCHDOG`], with
/// its output and Chromium's in `dir/chromedriver.log`. Dropping it kills
/// the group and every process below it, and removes `dir` unless the test
/// failed.
struct Driver {
    child: Child,
    /// Closing it makes the watchdog kill the group.
    _lifeline: ChildStdin,
    dir: PathBuf,
    log: PathBuf,
}

impl Driver {
    fn spawn(chromedriver: &Path, port: u16, dir: PathBuf) -> Driver {
        let log = dir.join("chromedriver.log");
        let stdout = create_file(&log);
        let stderr = stdout.try_clone().expect("a log file handle clones");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(chromedriver)
            .arg(format!("--port={port}"))
            // Chromium's own output in the log: why it would not start.
            .arg("--enable-chrome-logs")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({}) under /bin/sh: {e}",
                    chromedriver.display()
                )
            });
        let lifeline = child.stdin.take().expect("stdin is piped");
        Driver {
            child,
            _lifeline: lifeline,
            dir,
            log,
        }
    }

    /// Polls `GET /status` until the driver says it is ready.
    async fn wait_ready(&mut self, webdriver_url: &str) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let url = format!("{webdriver_url}/status");
        let deadline = Instant::now() + START;
        loop {
            if let Ok(response) = http.get(&url).send().await
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["value"]["ready"] == serde_json::Value::Bool(true)
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); {INSTALL}\n{}",
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer {url} within {START:?}; {INSTALL}\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn tail(&self) -> String {
        format!(
            "----- {} (last 40 lines) -----\n{}",
            self.log.display(),
            crate::process::tail(&self.log, 40)
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_tree(&mut self.child);
        remove_dir(&self.dir, std::thread::panicking());
    }
}

/// `kill -9` the watchdog's process group and every process below it
/// (chromedriver, Chromium and its helpers, whatever group they moved to),
/// then reaps the watchdog.
fn kill_tree(driver: &mut Child) {
    let pid = driver.id();
    let mut pids: Vec<String> = descendants(pid).iter().map(u32::to_string).collect();
    pids.push(format!("-{pid}"));
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

/// Every process below `root`, read from `/proc/<pid>/stat`.
fn descendants(root: u32) -> BTreeSet<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parens.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

/// Removes the profile and log, unless the test failed or
/// `ORDERFLOW_E2E_KEEP_LOGS` is set.
fn remove_dir(dir: &Path, failing: bool) {
    if !failing && std::env::var_os("ORDERFLOW_E2E_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
