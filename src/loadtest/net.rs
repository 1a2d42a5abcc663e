//! A round trip that costs what a network costs, between pgx's load clients and the
//! server, for `load.rtt`. Three ways, best first:
//!
//! - **netem**: two network namespaces of pgx's own joined by a veth pair, `tc qdisc
//!   netem delay rtt/2` on each end. The clients' sockets live in one namespace, a relay
//!   listening on TCP in the other forwards to the server. The kernel delays the packets.
//!   Needs root and a kernel with `sch_netem`. The namespaces are anonymous (no file in
//!   /run/netns): they live only as long as pgx holds them, so no exit path, not even
//!   `kill -9`, leaves a namespace, an interface or a qdisc behind.
//! - **relay**: pgx's relay holds every chunk of bytes rtt/2 in each direction (timerfd,
//!   µs precision), on an abstract Unix socket (gone with the process). A delay on the
//!   bytes in flight, like a network: a pipelined batch pays one round trip because its
//!   answers travel together, not because pgx counts it so.
//! - **client**: the client sleeps rtt (timerfd) before sending each request; round trips
//!   are pgx's count by construction. Only on request.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::timer::PreciseTimer;
use super::wire::{Endpoint, Sock, register};

/// How `load.rtt` is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RttMode {
    /// netem where possible, else the relay.
    #[default]
    Auto,
    Netem,
    Relay,
    Client,
}

impl RttMode {
    pub fn name(self) -> &'static str {
        match self {
            RttMode::Auto => "auto",
            RttMode::Netem => "netem",
            RttMode::Relay => "relay",
            RttMode::Client => "client",
        }
    }
}

/// Addresses inside pgx's own namespaces (198.18.0.0/15 is reserved for benchmarking
/// network devices, RFC 2544): they exist nowhere else, so nothing can collide.
const SERVER_ADDR: &str = "198.18.0.1";
const CLIENT_ADDR: &str = "198.18.0.2";
const RELAY_PORT: u16 = 5432;

/// The way requests travel during a run, set up once per `loadtest::run` and torn down when
/// dropped (threads stopped, sockets closed, namespaces released).
pub struct DelayPath {
    pub mode: RttMode,
    /// Where clients connect instead of the server; None: the server itself.
    pub endpoint: Option<Endpoint>,
    /// The namespace client threads must enter (netem).
    pub client_ns: Option<Arc<OwnedFd>>,
    /// The delay clients sleep themselves (client mode).
    pub client_delay: Option<Duration>,
    /// Why a better mode was not used, for the report.
    pub note: Option<String>,
    /// What the report calls the transport.
    pub transport: String,
    _relay: Option<Relay>,
}

impl DelayPath {
    /// No delay: clients talk to the server directly.
    pub fn direct(transport: String) -> DelayPath {
        DelayPath {
            mode: RttMode::Auto,
            endpoint: None,
            client_ns: None,
            client_delay: None,
            note: None,
            transport,
            _relay: None,
        }
    }

    /// Set up `rtt` the way `mode` asks (auto: netem, else the relay).
    pub fn open(
        rtt: Duration,
        mode: RttMode,
        upstream: &[Endpoint],
        transport: &str,
    ) -> Result<DelayPath, String> {
        let half = rtt / 2;
        match mode {
            RttMode::Client => Ok(DelayPath {
                mode,
                endpoint: None,
                client_ns: None,
                client_delay: Some(rtt),
                note: None,
                transport: transport.to_string(),
                _relay: None,
            }),
            RttMode::Relay => Self::relay(half, upstream, transport, None),
            RttMode::Netem => Self::netem(rtt, upstream).map_err(|why| {
                format!("load.rtt_mode netem is not possible here: {why}; use rtt_mode: relay")
            }),
            RttMode::Auto => match Self::netem(rtt, upstream) {
                Ok(path) => Ok(path),
                Err(why) => Self::relay(
                    half,
                    upstream,
                    transport,
                    Some(format!("kernel netem not used: {why}")),
                ),
            },
        }
    }

    fn relay(
        half: Duration,
        upstream: &[Endpoint],
        transport: &str,
        note: Option<String>,
    ) -> Result<DelayPath, String> {
        let name = format!(
            "pgx-load-relay-{}-{}",
            std::process::id(),
            NEXT_RELAY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| format!("relay socket: {e}"))?;
        let listener = UnixListener::bind_addr(&addr).map_err(|e| format!("relay socket: {e}"))?;
        let relay = Relay::start(Listener::Unix(listener), upstream.to_vec(), Some(half))?;
        Ok(DelayPath {
            mode: RttMode::Relay,
            endpoint: Some(Endpoint::Abstract(name)),
            client_ns: None,
            client_delay: None,
            note,
            transport: format!("{transport} through pgx's delay relay"),
            _relay: Some(relay),
        })
    }

    fn netem(rtt: Duration, upstream: &[Endpoint]) -> Result<DelayPath, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("it needs root (network namespaces and tc)".into());
        }
        let lab = NetLab::create(Some(rtt / 2))?;
        // The relay's listener is made inside the server namespace; it connects upstream
        // from the namespace pgx started in.
        let listener = lab.in_server_ns(|| {
            std::net::TcpListener::bind((SERVER_ADDR, RELAY_PORT))
                .map_err(|e| format!("relay listener on {SERVER_ADDR}: {e}"))
        })??;
        let relay = Relay::start(Listener::Tcp(listener), upstream.to_vec(), None)?;
        Ok(DelayPath {
            mode: RttMode::Netem,
            endpoint: Some(Endpoint::Tcp(SERVER_ADDR.into(), RELAY_PORT)),
            client_ns: Some(Arc::new(lab.client)),
            client_delay: None,
            note: None,
            transport: format!(
                "tcp over a veth pair with netem delay {} each way (pgx's network namespaces)",
                crate::units::fmt_ms(rtt.as_secs_f64() * 500.0)
            ),
            _relay: Some(relay),
        })
    }
}

static NEXT_RELAY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Put the calling thread into the network namespace `ns`.
pub fn enter(ns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns takes a valid namespace fd we hold open and a constant flag.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn current_ns() -> io::Result<OwnedFd> {
    let file = std::fs::File::open("/proc/thread-self/ns/net")?;
    Ok(OwnedFd::from(file))
}

/// Two anonymous network namespaces joined by a veth pair with netem on both ends.
struct NetLab {
    client: OwnedFd,
    server: OwnedFd,
}

impl NetLab {
    /// With `each_way` None the veth pair carries no qdisc (the namespace test below).
    fn create(each_way: Option<Duration>) -> Result<NetLab, String> {
        // A thread of its own, so no other thread's namespace ever changes.
        std::thread::scope(|scope| {
            scope
                .spawn(|| Self::create_here(each_way))
                .join()
                .map_err(|_| "the namespace set-up thread panicked".to_string())?
        })
    }

    fn create_here(each_way: Option<Duration>) -> Result<NetLab, String> {
        let sys = |what: &str, e: io::Error| format!("{what}: {e}");
        let original = current_ns().map_err(|e| sys("reading the network namespace", e))?;
        let unshare = || {
            // SAFETY: unshare with a constant flag affects only this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(sys(
                    "creating a network namespace",
                    io::Error::last_os_error(),
                ));
            }
            current_ns().map_err(|e| sys("reading the network namespace", e))
        };
        let client = unshare()?;
        enter(&original).map_err(|e| sys("leaving the namespace", e))?;
        let server = unshare()?;
        let delay = each_way.map(|d| format!("{}us", d.as_micros().max(1)));
        let peer = format!("/proc/{}/fd/{}", std::process::id(), client.as_raw_fd());
        let result = (|| -> Result<(), String> {
            run(&[
                "ip", "link", "add", "pgx-s", "type", "veth", "peer", "name", "pgx-c", "netns",
                &peer,
            ])?;
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{SERVER_ADDR}/30"),
                "dev",
                "pgx-s",
            ])?;
            run(&["ip", "link", "set", "pgx-s", "up"])?;
            run(&["ip", "link", "set", "lo", "up"])?;
            if let Some(delay) = &delay {
                run(&[
                    "tc", "qdisc", "add", "dev", "pgx-s", "root", "netem", "delay", delay,
                ])?;
            }
            enter(&client).map_err(|e| sys("entering the client namespace", e))?;
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{CLIENT_ADDR}/30"),
                "dev",
                "pgx-c",
            ])?;
            run(&["ip", "link", "set", "pgx-c", "up"])?;
            run(&["ip", "link", "set", "lo", "up"])?;
            if let Some(delay) = &delay {
                run(&[
                    "tc", "qdisc", "add", "dev", "pgx-c", "root", "netem", "delay", delay,
                ])?;
            }
            Ok(())
        })();
        let back = enter(&original).map_err(|e| sys("leaving the namespace", e));
        result?;
        back?;
        Ok(NetLab { client, server })
    }

    /// Run `f` on a thread inside the server namespace.
    fn in_server_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(&self.server).map_err(|e| format!("entering the namespace: {e}"))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| "the namespace thread panicked".to_string())?
        })
    }
}

/// Run an iproute2 command; its stderr is the error.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("qdisc kind is unknown") {
        return Err("this kernel has no netem qdisc (sch_netem)".into());
    }
    Err(format!("`{}` failed: {stderr}", args.join(" ")))
}

enum Listener {
    Unix(UnixListener),
    Tcp(std::net::TcpListener),
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl Listener {
    fn accept(&self) -> io::Result<Sock> {
        Ok(match self {
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                Sock::Unix(s)
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
        })
    }
}

/// A forwarder between the clients and the server on a thread of its own, optionally
/// holding every chunk `delay` in each direction. Stopped (every connection closed)
/// when dropped.
struct Relay {
    stop: Option<UnixStream>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(
        listener: Listener,
        upstream: Vec<Endpoint>,
        delay: Option<Duration>,
    ) -> Result<Relay, String> {
        let (stop, stop_rx) = UnixStream::pair().map_err(|e| format!("relay: {e}"))?;
        match &listener {
            Listener::Unix(l) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
        .map_err(|e| format!("relay: {e}"))?;
        stop_rx
            .set_nonblocking(true)
            .map_err(|e| format!("relay: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("pgx-load-relay".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, serve(listener, upstream, delay, stop_rx));
            })
            .map_err(|e| format!("relay thread: {e}"))?;
        Ok(Relay {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stop.take()); // EOF on the other end stops the relay
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: Listener,
    upstream: Vec<Endpoint>,
    delay: Option<Duration>,
    stop: UnixStream,
) {
    let (Ok(listener), Ok(stop)) = (register(listener), register(stop)) else {
        return;
    };
    let upstream = Rc::new(upstream);
    let stopped = async {
        loop {
            let Ok(mut guard) = stop.readable().await else {
                return;
            };
            let mut byte = [0u8; 1];
            match guard.try_io(|s| s.get_ref().read(&mut byte)) {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    let accepting = async {
        loop {
            let Ok(mut guard) = listener.readable().await else {
                return;
            };
            let client = match guard.try_io(|l| l.get_ref().accept()) {
                Ok(Ok(client)) => client,
                Ok(Err(_)) => {
                    // e.g. out of descriptors: wait for the next connection, don't spin.
                    guard.clear_ready();
                    continue;
                }
                Err(_would_block) => continue,
            };
            let upstream = Rc::clone(&upstream);
            tokio::task::spawn_local(async move {
                let _ = forward(client, &upstream, delay).await;
            });
        }
    };
    // Whichever ends first (the stop signal) ends the relay; dropping the runtime then
    // closes every forwarded connection.
    let stopped = std::pin::pin!(stopped);
    let accepting = std::pin::pin!(accepting);
    futures_select(stopped, accepting).await;
}

/// Wait for the first of two futures.
async fn futures_select<A: Future<Output = ()>, B: Future<Output = ()>>(
    mut a: std::pin::Pin<&mut A>,
    mut b: std::pin::Pin<&mut B>,
) {
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

async fn forward(client: Sock, upstream: &[Endpoint], delay: Option<Duration>) -> io::Result<()> {
    let mut server = Err(io::Error::new(ErrorKind::NotFound, "no upstream"));
    for endpoint in upstream {
        server = Sock::connect(endpoint).await;
        if server.is_ok() {
            break;
        }
    }
    let client = Rc::new(register(client)?);
    let server = Rc::new(register(server?)?);
    let up = pump(Rc::clone(&client), Rc::clone(&server), delay);
    let down = pump(server, client, delay);
    let mut up = std::pin::pin!(up);
    let mut down = std::pin::pin!(down);
    // Both directions run until each sees its end of stream (or an error).
    let (mut up_done, mut down_done) = (false, false);
    std::future::poll_fn(|cx| {
        if !up_done && up.as_mut().poll(cx).is_ready() {
            up_done = true;
        }
        if !down_done && down.as_mut().poll(cx).is_ready() {
            down_done = true;
        }
        if up_done && down_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    Ok(())
}

/// Copy `from` to `to`; with a delay, each chunk is written `delay` after it was read.
async fn pump(from: Rc<AsyncFd<Sock>>, to: Rc<AsyncFd<Sock>>, delay: Option<Duration>) {
    let mut buf = vec![0u8; 64 * 1024];
    let timer = match delay {
        Some(_) => PreciseTimer::new().ok(),
        None => None,
    };
    // Chunks in flight: when each is due, its bytes.
    let mut flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut eof = false;
    loop {
        // Deliver what is due.
        let now = Instant::now();
        while flight.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, chunk)) = flight.pop_front()
                && write_all(&to, &chunk).await.is_err()
            {
                return;
            }
        }
        if eof && flight.is_empty() {
            to.get_ref().shutdown_write();
            return;
        }
        // Wait for more bytes, or for the next chunk to be due.
        let next_due = flight.front().map(|(due, _)| *due);
        let event = {
            let buf = &mut buf;
            let read = async {
                if eof {
                    return std::future::pending().await;
                }
                loop {
                    let Ok(mut guard) = from.readable().await else {
                        return Ok(0);
                    };
                    match guard.try_io(|s| s.get_ref().read_some(buf)) {
                        Ok(result) => return result,
                        Err(_would_block) => continue,
                    }
                }
            };
            let due = async {
                match (next_due, &timer) {
                    (Some(due), Some(timer)) => {
                        let _ = timer.sleep_until(due).await;
                    }
                    _ => std::future::pending().await,
                }
            };
            let mut read = std::pin::pin!(read);
            let mut due = std::pin::pin!(due);
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(r) = read.as_mut().poll(cx) {
                    return std::task::Poll::Ready(Some(r));
                }
                if due.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(None);
                }
                std::task::Poll::Pending
            })
            .await
        };
        match event {
            None => {} // a chunk is due
            Some(Ok(0)) | Some(Err(_)) => eof = true,
            Some(Ok(n)) => match delay {
                Some(d) => {
                    let now = Instant::now();
                    flight.push_back((now.checked_add(d).unwrap_or(now), buf[..n].to_vec()))
                }
                None => {
                    if write_all(&to, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

async fn write_all(to: &AsyncFd<Sock>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match to.get_ref().write_some(bytes) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "closed")),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut guard = to.writable().await?;
                guard.clear_ready();
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The mean round trip of `SELECT 1` through the path, over `count` round trips after
/// one discarded, trimmed by a tenth on each side (a thread of a shared machine that is
/// descheduled for a few milliseconds says nothing about the delay): what the report
/// shows next to the configured delay.
pub fn probe(
    startup: &super::wire::Startup,
    path: &DelayPath,
    count: usize,
    bound: Duration,
) -> Result<Duration, String> {
    let ns = path.client_ns.clone();
    let client_delay = path.client_delay;
    let mut startup = startup.clone();
    if let Some(endpoint) = &path.endpoint {
        startup.endpoints = vec![endpoint.clone()];
    }
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                if let Some(ns) = &ns {
                    enter(ns).map_err(|e| format!("entering the client namespace: {e}"))?;
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime: {e}"))?;
                runtime.block_on(async {
                    let work = async {
                        let mut wire = super::wire::Wire::connect(&startup).await?;
                        let reply = wire
                            .prepare(&["SELECT 1"])
                            .await
                            .map_err(|e| e.to_string())?;
                        if let Some(e) = reply.error {
                            return Err(e.describe(None));
                        }
                        let timer = PreciseTimer::new().map_err(|e| e.to_string())?;
                        let mut samples = Vec::with_capacity(count);
                        for i in 0..=count {
                            let t = Instant::now();
                            if let Some(d) = client_delay {
                                timer.sleep(d).await.map_err(|e| e.to_string())?;
                            }
                            wire.clear();
                            wire.put_execute(0, 0, |_, _| true);
                            wire.put_sync();
                            let reply = wire.exchange(1).await.map_err(|e| e.to_string())?;
                            if let Some(e) = reply.error {
                                return Err(e.describe(None));
                            }
                            if i > 0 {
                                samples.push(t.elapsed());
                            }
                        }
                        wire.terminate();
                        samples.sort();
                        let trim = samples.len() / 10;
                        let kept = &samples[trim..samples.len() - trim];
                        Ok(kept.iter().sum::<Duration>() / kept.len().max(1) as u32)
                    };
                    tokio::time::timeout(bound, work)
                        .await
                        .map_err(|_| "no answer in time".to_string())?
                })
            })
            .join()
            .map_err(|_| "the probe thread panicked".to_string())?
    })
}

/// The namespace path of `rtt_mode: netem` without the qdisc: two namespaces, the veth
/// pair, the relay listening on TCP in one, a probe thread in the other running
/// `SELECT 1` over it. Everything netem mode does except `tc`, so it can be tested on a
/// kernel without `sch_netem`. Needs root. Not part of pgx's interface.
#[doc(hidden)]
pub fn namespace_path_check(
    startup: &super::wire::Startup,
    bound: Duration,
) -> Result<(Duration, String), String> {
    let lab = NetLab::create(None)?;
    let listener = lab.in_server_ns(|| {
        std::net::TcpListener::bind((SERVER_ADDR, RELAY_PORT))
            .map_err(|e| format!("relay listener on {SERVER_ADDR}: {e}"))
    })??;
    let relay = Relay::start(Listener::Tcp(listener), startup.endpoints.clone(), None)?;
    let path = DelayPath {
        mode: RttMode::Netem,
        endpoint: Some(Endpoint::Tcp(SERVER_ADDR.into(), RELAY_PORT)),
        client_ns: Some(Arc::new(lab.client)),
        client_delay: None,
        note: None,
        transport: "tcp over a veth pair".into(),
        _relay: Some(relay),
    };
    let took = probe(startup, &path, 10, bound)?;
    // What the client namespace sees: its own interfaces only.
    let ns = path.client_ns.clone().ok_or("no namespace")?;
    let links = std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<String, String> {
                enter(&ns).map_err(|e| e.to_string())?;
                let out = Command::new("ip")
                    .args(["-o", "link"])
                    .output()
                    .map_err(|e| e.to_string())?;
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .join()
            .map_err(|_| "thread panicked".to_string())?
    })?;
    Ok((took, links))
}
