//! A minimal PostgreSQL client for the load driver's one job: the prepared, extended-query
//! path (Parse once; then Bind/Execute/Sync) over a Unix or TCP socket, owned by the
//! client's own task.
//!
//! Why not tokio-postgres here: it routes every request and every answer through a
//! channel to a connection task of its own, splits each message into reference-counted
//! buffers and registers a timer per await; on two shared cores that cost pgx 20–30% of
//! pgbench's throughput. This client writes a transaction's messages into one reused
//! buffer, sends them with one `write`, reads answers into one reused buffer and scans
//! them in place (only the tag and length of a row are looked at), like libpq under
//! pgbench. Authentication (cleartext, MD5, SCRAM-SHA-256) uses the `postgres-protocol`
//! crate, the one tokio-postgres itself builds on.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The socket file itself (`<dir>/.s.PGSQL.<port>`).
    Unix(PathBuf),
    /// A host name or address, and a port.
    Tcp(String, u16),
    /// A Linux abstract Unix socket (no file; gone with its process): pgx's relay.
    Abstract(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp(host, port) => write!(f, "{host}:{port}"),
            Endpoint::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

/// How to open a session: where, as whom, with which settings.
#[derive(Debug, Clone)]
pub struct Startup {
    /// Tried in order, as libpq does with several hosts.
    pub endpoints: Vec<Endpoint>,
    pub user: String,
    pub password: Option<Vec<u8>>,
    /// Sent in the startup message (database, options, application_name, ...).
    pub params: Vec<(String, String)>,
}

impl Startup {
    /// The session of `config`, with pgx's `statement_timeout` set at connection start.
    pub fn from_config(
        config: &postgres::Config,
        statement_timeout: Duration,
    ) -> Result<Startup, String> {
        use postgres::config::{Host, SslMode};
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(
                "the load driver speaks plain connections only: sslmode=require is not supported \
                 (use sslmode=prefer or disable, or a server on this machine)"
                    .into(),
            );
        }
        let user = config
            .get_user()
            .map(str::to_string)
            .ok_or("no user in the connection settings")?;
        let ports = config.get_ports();
        let port = |i: usize| match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        };
        let mut endpoints = Vec::new();
        let addrs = config.get_hostaddrs();
        for (i, host) in config.get_hosts().iter().enumerate() {
            endpoints.push(match host {
                Host::Unix(dir) => Endpoint::Unix(dir.join(format!(".s.PGSQL.{}", port(i)))),
                Host::Tcp(name) => match addrs.get(i) {
                    Some(addr) => Endpoint::Tcp(addr.to_string(), port(i)),
                    None => Endpoint::Tcp(name.clone(), port(i)),
                },
            });
        }
        if endpoints.is_empty() {
            for (i, addr) in addrs.iter().enumerate() {
                endpoints.push(Endpoint::Tcp(addr.to_string(), port(i)));
            }
        }
        if endpoints.is_empty() {
            return Err("no host in the connection settings".into());
        }
        let mut params = vec![
            ("user".to_string(), user.clone()),
            ("client_encoding".to_string(), "UTF8".to_string()),
            (
                "application_name".to_string(),
                super::driver::APPLICATION.to_string(),
            ),
        ];
        if let Some(dbname) = config.get_dbname() {
            params.push(("database".into(), dbname.into()));
        }
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            statement_timeout.as_millis().max(1)
        );
        params.push(("options".into(), options.trim_start().to_string()));
        Ok(Startup {
            endpoints,
            user,
            password: config.get_password().map(<[u8]>::to_vec),
            params,
        })
    }
}

/// A socket of either kind, non-blocking.
#[derive(Debug)]
pub enum Sock {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Sock {
    pub(crate) fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tcp(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).write(buf),
            Sock::Tcp(s) => (&*s).write(buf),
        }
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = match self {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    /// Connect (asynchronously) and hand the socket over as a non-blocking std socket.
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Sock> {
        Ok(match endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await?.into_std()?;
                s.set_nonblocking(true)?;
                Sock::Unix(s)
            }
            Endpoint::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                // A local listener: connecting never waits (beyond a full backlog).
                let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
                s.set_nonblocking(true)?;
                Sock::Unix(s)
            }
            Endpoint::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                let s = s.into_std()?;
                s.set_nonblocking(true)?;
                Sock::Tcp(s)
            }
        })
    }
}

/// An ErrorResponse's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
    pub context: Option<String>,
}

/// SQLSTATE 57014: canceled, by statement_timeout or a cancel request.
pub const QUERY_CANCELED: &str = "57014";

impl ServerError {
    fn parse(body: &[u8]) -> ServerError {
        let mut e = ServerError::default();
        let mut rest = body;
        while let Some((&field, tail)) = rest.split_first() {
            if field == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            rest = tail.get(end + 1..).unwrap_or(&[]);
            match field {
                b'V' => e.severity = value,
                b'S' if e.severity.is_empty() => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = value.parse().ok(),
                b'W' => e.context = Some(value),
                _ => {}
            }
        }
        e
    }

    /// As pgx shows server errors elsewhere: severity, message, SQLSTATE, then details.
    pub fn describe(&self, sql: Option<&str>) -> String {
        let mut out = format!(
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        );
        if let (Some(pos), Some(sql)) = (self.position, sql) {
            let (line, col) = crate::error::line_col(sql, pos);
            let text = sql.lines().nth(line - 1).unwrap_or("").trim_end();
            out.push_str(&format!("\n  at line {line}, column {col}: {text}"));
        }
        if let Some(detail) = &self.detail {
            out.push_str(&format!("\n  detail: {detail}"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  server hint: {hint}"));
        }
        if let Some(context) = &self.context {
            out.push_str(&format!("\n  context: {context}"));
        }
        out
    }
}

/// What one exchange (up to its Syncs) brought back.
#[derive(Debug, Default)]
pub struct Reply {
    /// The first error of the exchange; the server skips to the next Sync after it.
    pub error: Option<ServerError>,
    /// ParseComplete messages before the error (which statement failed to prepare).
    pub parsed: usize,
    /// CommandComplete (or EmptyQueryResponse) messages before the error (which
    /// statement of a pipelined batch failed).
    pub completed: usize,
    /// Transaction status of the last ReadyForQuery: b'I' idle, b'T' in a transaction,
    /// b'E' in a failed transaction (needs ROLLBACK).
    pub status: u8,
}

/// Progress through the answers of one exchange.
struct Scan {
    syncs_left: usize,
    reply: Reply,
}

/// One session: its socket, its buffers, what a cancel request needs.
pub struct Wire {
    fd: AsyncFd<Sock>,
    pub endpoint: Endpoint,
    pub pid: i32,
    pub secret: i32,
    inbox: Inbox,
    /// The next request, built by the caller with the `put_*` methods.
    wbuf: Vec<u8>,
}

/// Bytes read and not yet consumed: `buf[pos..end]`.
struct Inbox {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

/// Register a descriptor with the runtime's reactor.
pub(crate) fn register<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: every `T` used here (sockets, OwnedFd) owns its descriptor, keeps it open
    // until dropped and always returns the same one from `as_raw_fd`.
    Ok(unsafe { AsyncFd::register(inner) }?)
}

const READ_CHUNK: usize = 16 * 1024;

impl Wire {
    /// Connect to the first endpoint that answers, authenticate, wait for ReadyForQuery.
    pub async fn connect(startup: &Startup) -> Result<Wire, String> {
        let mut failures = Vec::new();
        for endpoint in &startup.endpoints {
            match Sock::connect(endpoint).await {
                Ok(sock) => {
                    let fd = register(sock).map_err(|e| format!("{endpoint}: {e}"))?;
                    let mut wire = Wire {
                        fd,
                        endpoint: endpoint.clone(),
                        pid: 0,
                        secret: 0,
                        inbox: Inbox {
                            buf: vec![0; READ_CHUNK],
                            pos: 0,
                            end: 0,
                        },
                        wbuf: Vec::with_capacity(4096),
                    };
                    wire.start(startup).await?;
                    return Ok(wire);
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(failures.join("; "))
    }

    async fn start(&mut self, startup: &Startup) -> Result<(), String> {
        let io = |e: io::Error| format!("during start-up: {e}");
        // StartupMessage: length, protocol 3.0, name/value pairs, a closing NUL.
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&[0; 4]);
        self.wbuf.extend_from_slice(&196_608i32.to_be_bytes());
        for (name, value) in &startup.params {
            self.wbuf.extend_from_slice(name.as_bytes());
            self.wbuf.push(0);
            self.wbuf.extend_from_slice(value.as_bytes());
            self.wbuf.push(0);
        }
        self.wbuf.push(0);
        let len = self.wbuf.len() as i32;
        self.wbuf[..4].copy_from_slice(&len.to_be_bytes());
        self.flush().await.map_err(io)?;
        let mut scram: Option<postgres_protocol::authentication::sasl::ScramSha256> = None;
        loop {
            let (tag, body) = self.next_message().await.map_err(io)?;
            match tag {
                b'R' => {
                    let code = read_i32(&body, 0);
                    let password = || {
                        startup.password.clone().ok_or_else(|| {
                            "the server asks for a password and none is set".to_string()
                        })
                    };
                    match code {
                        0 => {}
                        3 => {
                            let mut msg = password()?;
                            msg.push(0);
                            self.put_message(b'p', &msg);
                            self.flush().await.map_err(io)?;
                        }
                        5 => {
                            let salt: [u8; 4] = body
                                .get(4..8)
                                .and_then(|s| s.try_into().ok())
                                .ok_or("malformed MD5 request")?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                startup.user.as_bytes(),
                                &password()?,
                                salt,
                            );
                            let mut msg = hash.into_bytes();
                            msg.push(0);
                            self.put_message(b'p', &msg);
                            self.flush().await.map_err(io)?;
                        }
                        10 => {
                            use postgres_protocol::authentication::sasl;
                            let offered = String::from_utf8_lossy(&body[4..]).into_owned();
                            if !offered.split('\0').any(|m| m == sasl::SCRAM_SHA_256) {
                                return Err(format!(
                                    "the server offers SASL mechanisms {offered:?}, not SCRAM-SHA-256"
                                ));
                            }
                            let s = sasl::ScramSha256::new(
                                &password()?,
                                sasl::ChannelBinding::unsupported(),
                            );
                            let mut msg = Vec::new();
                            msg.extend_from_slice(sasl::SCRAM_SHA_256.as_bytes());
                            msg.push(0);
                            msg.extend_from_slice(&(s.message().len() as i32).to_be_bytes());
                            msg.extend_from_slice(s.message());
                            self.put_message(b'p', &msg);
                            self.flush().await.map_err(io)?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or("SASL continue without a start")?;
                            s.update(&body[4..]).map_err(|e| format!("SCRAM: {e}"))?;
                            let msg = s.message().to_vec();
                            self.put_message(b'p', &msg);
                            self.flush().await.map_err(io)?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or("SASL final without a start")?;
                            s.finish(&body[4..]).map_err(|e| format!("SCRAM: {e}"))?;
                        }
                        other => {
                            return Err(format!(
                                "the server asks for an authentication method pgx's load driver \
                                 does not speak (code {other}); use password, md5 or scram-sha-256"
                            ));
                        }
                    }
                }
                b'K' => {
                    self.pid = read_i32(&body, 0);
                    self.secret = read_i32(&body, 4);
                }
                b'E' => return Err(ServerError::parse(&body).describe(None)),
                b'Z' => return Ok(()),
                _ => {} // ParameterStatus, NoticeResponse
            }
        }
    }

    /// Prepare `sqls` as statements `p0`, `p1`, ... in one exchange (one round trip).
    pub async fn prepare(&mut self, sqls: &[&str]) -> io::Result<Reply> {
        self.wbuf.clear();
        for (i, sql) in sqls.iter().enumerate() {
            let start = self.begin(b'P');
            let _ = write!(self.wbuf, "p{i}");
            self.wbuf.push(0);
            self.wbuf.extend_from_slice(sql.as_bytes());
            self.wbuf.push(0);
            self.wbuf.extend_from_slice(&0i16.to_be_bytes());
            self.finish(start);
        }
        self.put_sync();
        self.exchange(1).await
    }

    /// Start a new request (clears the buffer).
    pub fn clear(&mut self) {
        self.wbuf.clear();
    }

    /// Bind prepared statement `p<statement>` to the unnamed portal and execute it. The
    /// parameters (text format, NULL as `None`) are written by `params`, which appends
    /// each value's bytes to the buffer it is given and returns false for NULL.
    pub fn put_execute(
        &mut self,
        statement: usize,
        count: usize,
        mut params: impl FnMut(usize, &mut Vec<u8>) -> bool,
    ) {
        let start = self.begin(b'B');
        self.wbuf.push(0); // unnamed portal
        let _ = write!(self.wbuf, "p{statement}");
        self.wbuf.push(0);
        // One format code for all parameters: text.
        self.wbuf.extend_from_slice(&[0, 1, 0, 0]);
        self.wbuf.extend_from_slice(&(count as i16).to_be_bytes());
        for i in 0..count {
            let at = self.wbuf.len();
            self.wbuf.extend_from_slice(&[0; 4]);
            let len = if params(i, &mut self.wbuf) {
                (self.wbuf.len() - at - 4) as i32
            } else {
                self.wbuf.truncate(at + 4);
                -1
            };
            self.wbuf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        // One format code for all result columns: text, as libpq asks by default.
        self.wbuf.extend_from_slice(&[0, 1, 0, 0]);
        self.finish(start);
        // Execute the unnamed portal, all rows.
        self.wbuf
            .extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    }

    pub fn put_sync(&mut self) {
        self.wbuf.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    }

    fn put_message(&mut self, tag: u8, body: &[u8]) {
        self.wbuf.clear();
        self.wbuf.push(tag);
        self.wbuf
            .extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        self.wbuf.extend_from_slice(body);
    }

    fn begin(&mut self, tag: u8) -> usize {
        self.wbuf.push(tag);
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(&[0; 4]);
        start
    }

    fn finish(&mut self, start: usize) {
        let len = (self.wbuf.len() - start) as i32;
        self.wbuf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Send the request and read until `syncs` ReadyForQuery messages have arrived.
    pub async fn exchange(&mut self, syncs: usize) -> io::Result<Reply> {
        self.flush().await?;
        self.read_reply(syncs).await
    }

    /// Write the whole buffer: one `write` unless the socket buffer is full.
    async fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.wbuf.len() {
            match self.fd.get_ref().write_some(&self.wbuf[sent..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "socket closed")),
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut guard = self.fd.writable().await?;
                    guard.clear_ready();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        Ok(())
    }

    async fn read_reply(&mut self, syncs: usize) -> io::Result<Reply> {
        let mut scan = Scan {
            syncs_left: syncs,
            reply: Reply::default(),
        };
        loop {
            if self.inbox.scan(&mut scan) {
                return Ok(scan.reply);
            }
            self.inbox.make_room();
            let mut guard = self.fd.readable().await?;
            let inbox = &mut self.inbox;
            let spare = inbox.buf.len() - inbox.end;
            let free = &mut inbox.buf[inbox.end..];
            match guard.try_io(|fd| fd.get_ref().read_some(free)) {
                Ok(Ok(0)) => return Err(closed()),
                Ok(Ok(n)) => {
                    inbox.end += n;
                    // A read that did not fill the buffer drained the socket: when it also
                    // completes the reply, the next read would only say "would block", so
                    // forget the readiness now (tokio keeps it if an event came meanwhile).
                    if n < spare && inbox.scan(&mut scan) {
                        if inbox.pos == inbox.end {
                            guard.clear_ready();
                        }
                        return Ok(scan.reply);
                    }
                }
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    /// One whole message (start-up phase only): its tag and body.
    async fn next_message(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            if let Some(message) = self.inbox.take_message() {
                return Ok(message);
            }
            self.inbox.make_room();
            let mut guard = self.fd.readable().await?;
            let inbox = &mut self.inbox;
            let free = &mut inbox.buf[inbox.end..];
            match guard.try_io(|fd| fd.get_ref().read_some(free)) {
                Ok(Ok(0)) => return Err(closed()),
                Ok(Ok(n)) => inbox.end += n,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    /// Say goodbye (Terminate), so the server logs no unexpected EOF.
    pub fn terminate(self) {
        let _ = self.fd.get_ref().write_some(&[b'X', 0, 0, 0, 4]);
    }
}

impl Inbox {
    /// The length field of the message at `pos`, once its header is in.
    fn head(&self) -> Option<(u8, usize)> {
        let h = self
            .buf
            .get(self.pos..self.pos + 5)
            .filter(|_| self.end - self.pos >= 5)?;
        let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]).max(4) as usize;
        Some((h[0], len))
    }

    /// Consume complete messages; true once the last expected ReadyForQuery is in.
    fn scan(&mut self, scan: &mut Scan) -> bool {
        while scan.syncs_left > 0 {
            let Some((tag, len)) = self.head() else {
                return false;
            };
            if self.end - self.pos < 1 + len {
                return false;
            }
            let body = self.pos + 5..self.pos + 1 + len;
            match tag {
                b'Z' => {
                    scan.syncs_left -= 1;
                    scan.reply.status = self.buf.get(body.start).copied().unwrap_or(b'I');
                }
                b'E' if scan.reply.error.is_none() => {
                    scan.reply.error = Some(ServerError::parse(&self.buf[body]));
                }
                b'1' if scan.reply.error.is_none() => scan.reply.parsed += 1,
                b'C' | b'I' if scan.reply.error.is_none() => scan.reply.completed += 1,
                _ => {} // rows, completions, notices, parameter status
            }
            self.pos += 1 + len;
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        true
    }

    fn take_message(&mut self) -> Option<(u8, Vec<u8>)> {
        let (tag, len) = self.head()?;
        if self.end - self.pos < 1 + len {
            return None;
        }
        let body = self.buf[self.pos + 5..self.pos + 1 + len].to_vec();
        self.pos += 1 + len;
        Some((tag, body))
    }

    /// Keep at least a chunk free after the data, moving unread bytes to the front and
    /// growing the buffer for a message larger than it.
    fn make_room(&mut self) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        let unread = self.end - self.pos;
        let need = match self.head() {
            Some((_, len)) => READ_CHUNK.max((1 + len).saturating_sub(unread)),
            None => READ_CHUNK,
        };
        if self.buf.len() - self.end >= need {
            return;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end = unread;
            self.pos = 0;
        }
        if self.buf.len() - self.end < need {
            self.buf.resize(self.end + need, 0);
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, "the server closed the connection")
}

fn read_i32(body: &[u8], at: usize) -> i32 {
    body.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i32::from_be_bytes)
}

/// Ask the server to cancel what session `pid` runs (a CancelRequest on a new connection).
pub async fn cancel(endpoint: &Endpoint, pid: i32, secret: i32) -> io::Result<()> {
    let sock = Sock::connect(endpoint).await?;
    let mut msg = [0u8; 16];
    msg[..4].copy_from_slice(&16i32.to_be_bytes());
    msg[4..8].copy_from_slice(&80_877_102i32.to_be_bytes());
    msg[8..12].copy_from_slice(&pid.to_be_bytes());
    msg[12..].copy_from_slice(&secret.to_be_bytes());
    let fd = register(sock)?;
    let mut sent = 0;
    while sent < msg.len() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|s| s.get_ref().write_some(&msg[sent..])) {
            Ok(Ok(n)) => sent += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
    }
    // The server closes the connection once it has read the request.
    let mut buf = [0u8; 16];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|s| s.get_ref().read_some(&mut buf)) {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_parse_and_describe() {
        let mut body = Vec::new();
        for (k, v) in [
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "42P01"),
            (b'M', "relation \"nope\" does not exist"),
            (b'P', "15"),
            (b'H', "check the name"),
        ] {
            body.push(k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let e = ServerError::parse(&body);
        assert_eq!(e.code, "42P01");
        assert_eq!(e.position, Some(15));
        let text = e.describe(Some("SELECT * FROM nope"));
        assert!(text.starts_with("ERROR: relation \"nope\" does not exist (SQLSTATE 42P01)"));
        assert!(text.contains("at line 1, column 15"), "{text}");
        assert!(text.contains("server hint: check the name"));
    }

    #[test]
    fn startup_rejects_tls_and_missing_user() {
        let mut c = postgres::Config::new();
        c.host("localhost").dbname("x");
        assert!(
            Startup::from_config(&c, Duration::from_secs(1))
                .unwrap_err()
                .contains("user")
        );
        c.user("u").ssl_mode(postgres::config::SslMode::Require);
        assert!(
            Startup::from_config(&c, Duration::from_secs(1))
                .unwrap_err()
                .contains("sslmode")
        );
        c.ssl_mode(postgres::config::SslMode::Prefer).port(6000);
        let s = Startup::from_config(&c, Duration::from_millis(250)).unwrap();
        assert_eq!(s.endpoints, vec![Endpoint::Tcp("localhost".into(), 6000)]);
        assert!(s.params.contains(&(
            "options".to_string(),
            "-c statement_timeout=250".to_string()
        )));
    }
}
