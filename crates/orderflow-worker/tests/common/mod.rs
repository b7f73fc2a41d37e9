//! What both process test files need: the services' URLs and a stand-in
//! API that passes a worker's start-up check.

use std::io::{Read, Write};
use std::net::TcpListener;

pub use orderflow_testkit::services::{amqp_url, redis_url};

/// An API of the contract with no records: every status query answers the
/// contract's `404 {"code": "not_found"}`, so a worker pointed at it passes
/// its start-up check. Its base URL.
pub fn empty_api() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0; 8192];
            let _ = stream.read(&mut request);
            let body = r#"{"code": "not_found", "message": "no such record"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}
