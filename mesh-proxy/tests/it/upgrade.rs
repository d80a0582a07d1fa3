//! HTTP/1.1 upgrades (WebSocket) through outbound proxy -> mTLS (ALPN http/1.1) -> inbound
//! proxy -> app: the 101 reaches the client, then bytes flow both ways until either side closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::apps;
use crate::support::*;

const WITHIN: Duration = Duration::from_secs(30);

/// Reads a response head; returns it and whatever followed it in the same reads.
async fn read_head(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let n = tcp.read(&mut chunk).await.expect("read the head");
        assert!(
            n > 0,
            "closed before the end of the head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_through_the_chain() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let chain = Chain::start(app.addr, &[], &[]).await;
        let out = chain.out();

        let mut tcp = TcpStream::connect(out).await.expect("connect");
        tcp.write_all(
            b"GET /chat HTTP/1.1\r\n\
              Host: backend.test:8080\r\n\
              Connection: Upgrade\r\n\
              Upgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("send the upgrade request");
        let (head, mut rest) = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
        assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");

        // The app speaks first after the 101 ...
        while rest.len() < apps::UPGRADE_GREETING.len() {
            let mut chunk = [0u8; 256];
            let n = tcp.read(&mut chunk).await.expect("read the greeting");
            assert!(n > 0, "closed before the greeting");
            rest.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(rest, apps::UPGRADE_GREETING);

        // ... then echoes whatever the client sends, small and large, byte for byte.
        for (i, len) in [1usize, 5, 1000, 70_000, 1 << 20].into_iter().enumerate() {
            let msg: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
            let (mut r, mut w) = tcp.split();
            let write = async {
                w.write_all(&msg).await.expect("write");
            };
            let mut back = vec![0u8; len];
            let read = async {
                r.read_exact(&mut back).await.expect("read the echo");
            };
            tokio::join!(write, read);
            assert!(back == msg, "echo {i} ({len} bytes) differs");
        }

        // The client's half-close reaches the app, whose close reaches the client.
        tcp.shutdown().await.expect("shutdown");
        let mut tail = Vec::new();
        tcp.read_to_end(&mut tail).await.expect("read to the end");
        assert!(tail.is_empty(), "{} unexpected bytes", tail.len());

        // Plain requests still work beside it.
        let (status, body) = get(out, "/", &[("host", BACKEND)]).await.expect("request");
        assert_eq!((status, body.as_str()), (200, "ok"));
    })
    .await
    .expect("the test took too long");
}

/// A WebSocket server and client no one here wrote (Python's `websockets`), through the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_through_the_chain() {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import websockets.sync.client, websockets.sync.server",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n*** SKIPPED: Python's websockets is not installed (pip install websockets) ***\n"
        );
        return;
    }
    // The script serves an echo endpoint on a free port, prints the port, reads the outbound
    // proxy's address from stdin, then connects through it with Host: backend.test:8080.
    const SCRIPT: &str = r#"
import socket, sys, threading
from websockets.sync.client import connect
from websockets.sync.server import serve

def echo(ws):
    for message in ws:
        ws.send(message)

server = serve(echo, "127.0.0.1", 0)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.socket.getsockname()[1], flush=True)
host, port = sys.stdin.readline().strip().rsplit(":", 1)
sock = socket.create_connection((host, int(port)), timeout=10)
with connect("ws://backend.test:8080/chat", sock=sock, open_timeout=10) as ws:
    for message in ["hello", "x" * 200000, b"\x00\x01\x02binary"]:
        ws.send(message)
        assert ws.recv(timeout=10) == message, "echo differs"
print("ok", flush=True)
server.shutdown()
"#;
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new("timeout")
        .args(["30", "python3", "-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the port");
        (line, stdout)
    });
    let (line, mut stdout) = tokio::time::timeout(WITHIN, port)
        .await
        .expect("python never printed its port")
        .expect("join");
    let Ok(port) = line.trim().parse::<u16>() else {
        let out = child.wait_with_output().expect("python output");
        panic!(
            "python printed {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let chain = Chain::start(SocketAddr::from(([127, 0, 0, 1], port)), &[], &[]).await;
    let out = chain.out();
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{out}").expect("write to python");
    let result = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        let status = child.wait().expect("wait");
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status, rest, err)
    });
    let (status, out, err) = tokio::time::timeout(WITHIN, result)
        .await
        .expect("python took too long")
        .expect("join");
    assert!(status.success() && out.trim() == "ok", "{out}\n{err}");
}
