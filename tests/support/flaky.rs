//! A flaky HTTP/1.1 proxy on loopback in front of an S3 server. Each
//! request, chosen by a seeded generator with configurable shares, is
//! forwarded, forwarded late, answered with an S3 error (`503 SlowDown`,
//! `500 InternalError`) without reaching the server, or met with a closed
//! connection and no answer. It keeps connections alive (several requests
//! each, one upstream connection per client connection), and relays
//! `Content-Length` and chunked bodies both ways; a client's
//! `Expect: 100-continue` is answered by the proxy itself.
//!
//! With [`Proxy::start_tls`] it terminates TLS (rustls) with a certificate
//! for 127.0.0.1 signed by a CA of its own ([`Ca`]), and forwards the
//! requests in plain HTTP; it counts the handshakes that completed and
//! those that failed (a client that does not trust the certificate).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The share of requests (0 to 1) that meet each fault; the rest are
/// forwarded at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shares {
    /// Forwarded after 0.2 to 1.5 s.
    pub delay: f64,
    /// `503 Slow Down`.
    pub slow_down: f64,
    /// `500 Internal Server Error`.
    pub internal: f64,
    /// The connection closed without an answer.
    pub drop: f64,
}

/// What became of the requests so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: usize,
    pub delayed: usize,
    pub slow_down: usize,
    pub internal: usize,
    pub dropped: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.forwarded + self.delayed + self.slow_down + self.internal + self.dropped
    }

    pub fn failed(&self) -> usize {
        self.slow_down + self.internal + self.dropped
    }
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Forward,
    Delay(Duration),
    SlowDown,
    Internal,
    Drop,
}

struct State {
    upstream: SocketAddr,
    rng: Mutex<rand::rngs::StdRng>,
    shares: Mutex<Shares>,
    counts: [AtomicUsize; 5],
    stop: AtomicBool,
    /// TLS handshakes completed, and failed.
    handshakes: [AtomicUsize; 2],
}

impl State {
    fn decide(&self) -> Fate {
        let shares = *self.shares.lock().unwrap();
        let mut rng = self.rng.lock().unwrap();
        let roll: f64 = rng.gen();
        let fate = if roll < shares.slow_down {
            Fate::SlowDown
        } else if roll < shares.slow_down + shares.internal {
            Fate::Internal
        } else if roll < shares.slow_down + shares.internal + shares.drop {
            Fate::Drop
        } else if roll < shares.slow_down + shares.internal + shares.drop + shares.delay {
            Fate::Delay(Duration::from_millis(rng.gen_range(200..=1500)))
        } else {
            Fate::Forward
        };
        let slot = match fate {
            Fate::Forward => 0,
            Fate::Delay(_) => 1,
            Fate::SlowDown => 2,
            Fate::Internal => 3,
            Fate::Drop => 4,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        fate
    }
}

/// A certificate authority made for a test (ECDSA P-256, by rcgen).
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server's TLS setup: a certificate for 127.0.0.1 (IP SAN) that
    /// this CA signs, then the CA's own.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![leaf.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

/// The proxy; it stops accepting when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    tls: bool,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream`
    /// (`http://127.0.0.1:<port>`), every choice from `seed`.
    pub fn start(upstream: &str, seed: u64, shares: Shares) -> Self {
        Self::serve(upstream, seed, shares, None)
    }

    /// The same, serving HTTPS with a certificate for 127.0.0.1 that `ca`
    /// signs.
    pub fn start_tls(upstream: &str, seed: u64, shares: Shares, ca: &Ca) -> Self {
        Self::serve(upstream, seed, shares, Some(ca.server_config()))
    }

    fn serve(
        upstream: &str,
        seed: u64,
        shares: Shares,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .expect("an http:// endpoint")
            .trim_end_matches('/')
            .parse()
            .expect("an address and port");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            shares: Mutex::new(shares),
            counts: Default::default(),
            stop: AtomicBool::new(false),
            handshakes: Default::default(),
        });
        let accepting = state.clone();
        let secure = tls.is_some();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let state = accepting.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => serve(client, &state),
                        Some(config) => serve_tls(client, config, &state),
                    };
                });
            }
        });
        Self {
            port,
            state,
            tls: secure,
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// TLS handshakes so far: completed, and failed.
    pub fn handshakes(&self) -> (usize, usize) {
        (
            self.state.handshakes[0].load(Ordering::Relaxed),
            self.state.handshakes[1].load(Ordering::Relaxed),
        )
    }

    pub fn set_shares(&self, shares: Shares) {
        *self.state.shares.lock().unwrap() = shares;
    }

    pub fn counts(&self) -> Counts {
        let c = |i: usize| self.state.counts[i].load(Ordering::Relaxed);
        Counts {
            forwarded: c(0),
            delayed: c(1),
            slow_down: c(2),
            internal: c(3),
            dropped: c(4),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request's head as received, and what it says of its body.
struct Head {
    raw: Vec<u8>,
    method: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads a head (start line and headers) up to its blank line; `None` at
/// a clean end of stream.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if raw[before..] == *b"\r\n" || raw[before..] == *b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let method = lines
        .next()
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        raw,
        method,
        headers,
    }))
}

/// Copies a body framed as `head` says (a response to `method` when
/// `response`); whether the connection can carry another message.
fn copy_body(
    reader: &mut impl BufRead,
    out: &mut impl Write,
    head: &Head,
    response: Option<(&str, u16)>,
) -> io::Result<bool> {
    if let Some((method, status)) = response {
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(true);
        }
    }
    if head.chunked() {
        copy_chunked(reader, out)?;
        return Ok(true);
    }
    match head.length() {
        Some(n) => {
            let copied = io::copy(&mut reader.take(n), out)?;
            if copied != n {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(true)
        }
        // A request without a length has no body; a response runs to the end.
        None if response.is_none() => Ok(true),
        None => {
            io::copy(reader, out)?;
            Ok(false)
        }
    }
}

/// Copies a chunked body as it is, chunk sizes, extensions and trailers.
fn copy_chunked(reader: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        out.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size = text.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size.trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut trailer = Vec::new();
                if reader.read_until(b'\n', &mut trailer)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                out.write_all(&trailer)?;
                if trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(());
                }
            }
        }
        // The data and its CRLF.
        let want = size + 2;
        if io::copy(&mut reader.take(want), out)? != want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The request head without `Expect`, which the proxy answers itself.
fn without_expect(head: &Head) -> Vec<u8> {
    let text = String::from_utf8_lossy(&head.raw);
    text.split_inclusive('\n')
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("expect"))
        })
        .collect::<String>()
        .into_bytes()
}

fn s3_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>flaky-proxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

type Upstream = (BufReader<TcpStream>, TcpStream);

/// A client's connection, plain or TLS.
trait Client: Read + Write {
    /// Closes it without a word (nor a TLS close_notify).
    fn abort(&mut self);
}

impl Client for TcpStream {
    fn abort(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Client for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn abort(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// Completes the TLS handshake (counted), then serves the connection.
fn serve_tls(
    mut client: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &State,
) -> io::Result<()> {
    let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        if let Err(err) = conn.complete_io(&mut client) {
            state.handshakes[1].fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
    }
    state.handshakes[0].fetch_add(1, Ordering::Relaxed);
    serve(rustls::StreamOwned::new(conn, client), state)
}

fn serve(client: impl Client, state: &State) -> io::Result<()> {
    // Requests are read whole before the answer is written, so one
    // buffered stream does both.
    let mut reader = BufReader::new(client);
    let mut upstream: Option<Upstream> = None;
    while let Some(head) = read_head(&mut reader)? {
        let expects = head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects {
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            reader.get_mut().flush()?;
        }
        let mut request = without_expect(&head);
        copy_body(&mut reader, &mut request, &head, None)?;
        let keep = !head.closes();
        let writer = reader.get_mut();
        match state.decide() {
            Fate::Drop => {
                writer.abort();
                return Ok(());
            }
            Fate::SlowDown => writer.write_all(&s3_error(
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            ))?,
            Fate::Internal => writer.write_all(&s3_error(
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            ))?,
            Fate::Delay(delay) => {
                std::thread::sleep(delay);
                if !forward(state, &mut upstream, &head.method, &request, writer)? {
                    return Ok(());
                }
            }
            Fate::Forward => {
                if !forward(state, &mut upstream, &head.method, &request, writer)? {
                    return Ok(());
                }
            }
        }
        writer.flush()?;
        if !keep {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends `request` upstream (on a new connection when the kept one was
/// closed before answering) and relays the answer; whether the client's
/// connection can go on.
fn forward(
    state: &State,
    upstream: &mut Option<Upstream>,
    method: &str,
    request: &[u8],
    client: &mut impl Write,
) -> io::Result<bool> {
    for attempt in 0..2 {
        if upstream.is_none() {
            let stream = TcpStream::connect(state.upstream)?;
            *upstream = Some((BufReader::new(stream.try_clone()?), stream));
        }
        let (up_reader, up_writer) = upstream.as_mut().unwrap();
        let head = match up_writer
            .write_all(request)
            .and_then(|()| read_head(up_reader))
        {
            Ok(Some(head)) => head,
            // A kept connection the server closed meanwhile: once more.
            Ok(None) | Err(_) if attempt == 0 => {
                *upstream = None;
                continue;
            }
            Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Err(err) => return Err(err),
        };
        let status: u16 = String::from_utf8_lossy(&head.raw)
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        client.write_all(&head.raw)?;
        let reusable = copy_body(up_reader, client, &head, Some((method, status)))?;
        if !reusable || head.closes() {
            *upstream = None;
            return Ok(reusable);
        }
        return Ok(true);
    }
    Err(io::ErrorKind::ConnectionAborted.into())
}
