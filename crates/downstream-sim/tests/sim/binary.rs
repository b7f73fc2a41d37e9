//! The binary itself: profile errors exit 2; it serves and stops on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_downstream-sim");

#[test]
fn a_bad_profile_exits_2_naming_every_key() {
    let dir = std::env::temp_dir().join(format!("downstream-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "[faults.\"payment.charg\"]\nerror_500 = 0.1\n[shipping]\nfulfilment_exception = 3"
    )
    .unwrap();

    let output = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--profile"])
        .arg(&path)
        .env_remove("ORDERFLOW_SIM_LISTEN")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("faults.\"payment.charg\": unknown endpoint; expected one of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shipping.fulfilment_exception: probability 3 is outside 0 to 1"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("invalid profile").count(),
        1,
        "one error: {stderr}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn serves_until_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--seed", "5"])
        .env("ORDERFLOW_SIM_LISTEN", "127.0.0.1:0")
        .env_remove("ORDERFLOW_SIM_PROFILE")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some((_, addr)) = line.trim_end().split_once("listening on ") {
            break addr.to_owned();
        }
    };

    let faults: serde_json::Value = reqwest::get(format!("http://{addr}/_faults"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["seed"], 5, "--seed overrides the profile");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
