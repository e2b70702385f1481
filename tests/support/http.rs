//! A minimal HTTP/1.1 server on plain threads, for the token issuer and the misbehaving
//! registry. Threads rather than an async runtime so that it works the same from sync and
//! async tests, and so that a handler can take the raw socket to misbehave at byte level.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Request target as sent: path plus query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server's own address (for absolute `Location` headers).
    pub local: SocketAddr,
}

impl Request {
    /// Path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Query parameters, percent-decoded, in order (repeated keys kept).
    pub fn query(&self) -> Vec<(String, String)> {
        match self.target.split_once('?') {
            Some((_, q)) => parse_form(q),
            None => Vec::new(),
        }
    }

    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` / query-string decoding.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Tells a raw handler that the server is shutting down.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d` in small steps; returns `false` if the server stopped meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.is_stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
        !self.is_stopped()
    }

    /// Writes all of `buf`, retrying while the peer is slow to read, and giving up (Ok) when
    /// the server stops, so a client that neither reads nor hangs up cannot block shutdown.
    pub fn write_all(&self, stream: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        while !buf.is_empty() {
            if self.is_stopped() {
                return Err(io::Error::other("server stopped"));
            }
            match stream.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        stream.flush()
    }

    /// Holds the connection open, sending nothing, until the server stops or the peer closes.
    pub fn hang(&self, stream: &mut TcpStream) {
        let _ = stream.set_nonblocking(true);
        let mut buf = [0u8; 1024];
        while self.sleep(Duration::from_millis(50)) {
            match stream.read(&mut buf) {
                Ok(0) => return, // peer closed
                Ok(_) => {}      // ignore anything sent meanwhile
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

type RawHandler = Box<dyn FnOnce(&mut TcpStream, &StopSignal) + Send>;

/// What a handler answers.
pub enum Response {
    /// A complete response. `Content-Length` is added from the body unless the handler set
    /// `Content-Length` or `Transfer-Encoding` itself. For HEAD no body is sent.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The handler takes the socket and writes whatever bytes it likes (status line
    /// included); the connection is closed afterwards.
    Raw(RawHandler),
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response::Full {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn raw(f: impl FnOnce(&mut TcpStream, &StopSignal) + Send + 'static) -> Self {
        Response::Raw(Box::new(f))
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(value).expect("serialise JSON"))
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Response::Full { headers, .. } = &mut self {
            headers.push((name.to_string(), value.into()));
        }
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        if let Response::Full { body, .. } = &mut self {
            *body = bytes.into();
        }
        self
    }
}

/// Standard reason phrase.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running server; stops (and joins all its threads) on drop.
pub struct HttpServer {
    addr: SocketAddr,
    stop: StopSignal,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl HttpServer {
    /// Binds a free port on 127.0.0.1 and serves `handler` on it, one thread per connection,
    /// with keep-alive.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = StopSignal::default();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::Builder::new()
                .name(format!("test-http-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.is_stopped() {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let (stop, handler) = (stop.clone(), handler.clone());
                        let h = std::thread::spawn(move || serve(stream, addr, &*handler, &stop));
                        let mut conns = connections.lock().unwrap();
                        conns.retain(|h| !h.is_finished());
                        conns.push(h);
                    }
                })
                .expect("spawn acceptor")
        };
        HttpServer {
            addr,
            stop,
            acceptor: Some(acceptor),
            connections,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let conns = std::mem::take(&mut *self.connections.lock().unwrap());
        for c in conns {
            let _ = c.join();
        }
    }
}

fn serve(mut stream: TcpStream, local: SocketAddr, handler: &Handler, stop: &StopSignal) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf, local, stop) {
        let close = req
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let is_head = req.method == "HEAD";
        match handler(&req) {
            Response::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                let has_len = headers.iter().any(|(k, _)| {
                    k.eq_ignore_ascii_case("content-length")
                        || k.eq_ignore_ascii_case("transfer-encoding")
                });
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_len {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                if close {
                    head.push_str("Connection: close\r\n");
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                if !is_head {
                    out.extend_from_slice(&body);
                }
                if stop.write_all(&mut stream, &out).is_err() || close {
                    break;
                }
            }
            Response::Raw(f) => {
                let _ = stream.set_read_timeout(None);
                f(&mut stream, stop);
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads one request; `None` on EOF, error, or shutdown.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    local: SocketAddr,
    stop: &StopSignal,
) -> Option<Request> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 || !fill(stream, buf, stop) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        if !fill(stream, buf, stop) {
            return None;
        }
    }
    let body = buf.drain(..len).collect();
    Some(Request {
        method,
        target,
        headers,
        body,
        local,
    })
}

/// Reads more bytes into `buf`; `false` on EOF, error, or shutdown.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &StopSignal) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        if stop.is_stopped() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
}
