//! The listener's guard on file descriptors: [`accept`] admits TCP connections under a total
//! and a per-IP cap, and wraps each in a [`LimitedConn`] that closes it when it stalls in the
//! HTTP/2 handshake or sits with no call open; [`TrackCallsLayer`] tells each connection how
//! many calls it carries. HTTP/2 keepalive (dead peers with open streams) is hyper's, set in
//! `Master::serve`. The knobs are [`ConnectionConfig`].
//!
//! Policy: a connection costs a descriptor from accept to close, and the kernel's accept queue
//! costs nothing, so refusing means accepting and closing at once (the peer sees the close,
//! rather than a connect that hangs), and refusals are counted into one warning per
//! [`WARN_INTERVAL`], never one line each. Accept errors (`EMFILE` when the process is out of
//! descriptors anyway) pause the loop briefly instead of spinning on a listener that stays
//! readable.
//!
//! Cost: the calls that carry the tasks are long-lived streams, so the per-call bookkeeping
//! (two atomics, one boxed body) is paid per stream, not per message; reads check the
//! deadlines only when the socket has nothing to give.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Bytes, Service};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

use wasmos_api::identity::PeerIdentity;

use crate::config::ConnectionConfig;
use crate::sync::lock;

/// At most one refusal warning (with the count since the last) per this interval.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an accept error such as `EMFILE`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The HTTP/2 client preface (`PRI * HTTP/2.0...`) plus the 9-byte header of the first frame.
const PREFACE_AND_FRAME_HEADER: usize = 24 + 9;

/// The soft `RLIMIT_NOFILE` of this process, or `None` when it cannot be read or is unlimited.
pub(crate) fn nofile_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the valid, exclusively borrowed `limit`
    // and touches nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
}

/// Most descriptors [`raise_nofile_soft_limit`] asks for, whatever the hard limit.
const NOFILE_RAISE_CEILING: u64 = 1 << 20;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (at most 1,048,576), as a
/// server that holds one descriptor per client should: Debian's default soft limit of 1,024
/// would otherwise cap the master at 768 connections. Returns the limits before and after
/// when it raised them, `None` when it did not need to or could not (the caps then follow the
/// soft limit as it is).
pub fn raise_nofile_soft_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let before = limit.rlim_cur as u64;
    let target = (limit.rlim_max as u64).min(NOFILE_RAISE_CEILING);
    if target <= before {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `setrlimit` reads the valid `raised`; lowering or raising the soft limit up to
    // the hard one needs no privilege.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0).then_some((before, target))
}

/// The caps in force, and the open connections counted against them.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The total cap is reached.
    Total,
    /// The peer's address holds its cap already.
    PerIp,
}

impl Admission {
    /// Caps of `max_total` connections in all and `max_per_ip` per address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            open: Mutex::new(OpenConnections::default()),
        })
    }

    /// A slot for one more connection from `ip`, held until the slot is dropped, or why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = lock(&self.open);
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open_total(&self) -> usize {
        lock(&self.open).total
    }
}

/// One admitted connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.admission.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts events and logs them as one warning per [`WARN_INTERVAL`] (the first at once).
#[derive(Debug, Default)]
struct RefusalLog {
    last_warned: Option<Instant>,
    total: u64,
    per_ip: u64,
}

impl RefusalLog {
    fn refused(&mut self, why: Refusal, peer: SocketAddr, admission: &Admission) {
        match why {
            Refusal::Total => self.total += 1,
            Refusal::PerIp => self.per_ip += 1,
        }
        if self
            .last_warned
            .is_some_and(|at| at.elapsed() < WARN_INTERVAL)
        {
            return;
        }
        warn!(
            refused_at_total_cap = self.total,
            refused_at_per_ip_cap = self.per_ip,
            max_connections = admission.max_total,
            max_connections_per_ip = admission.max_per_ip,
            last_peer = %peer,
            "refused connections over the connection caps since the last warning; raise \
             --max-connections or --max-connections-per-ip if these are real clients"
        );
        self.last_warned = Some(Instant::now());
        self.total = 0;
        self.per_ip = 0;
    }
}

/// Counts failed TLS handshakes (bad, foreign or missing client certificates, plain-text
/// clients, stalls) into one warning per [`WARN_INTERVAL`], naming the last peer and reason.
#[derive(Debug, Default)]
struct TlsFailureLog {
    last_warned: Option<Instant>,
    failed: u64,
}

impl TlsFailureLog {
    fn failed(&mut self, peer: SocketAddr, why: &str) {
        self.failed += 1;
        if self
            .last_warned
            .is_some_and(|at| at.elapsed() < WARN_INTERVAL)
        {
            return;
        }
        warn!(
            failed_tls_handshakes = self.failed,
            last_peer = %peer,
            last_reason = why,
            "refused connections that did not complete a mutual TLS handshake since the last \
             warning; clients need a certificate from this cluster's CA (`wasmos certs issue`)"
        );
        self.last_warned = Some(Instant::now());
        self.failed = 0;
    }
}

/// A TLS handshake under way: its connection, or the peer and why it failed.
type PendingHandshake =
    Pin<Box<dyn Future<Output = Result<LimitedConn, (SocketAddr, String)>> + Send>>;

/// The connections `listener` accepts under `admission`'s caps, each wrapped with the
/// deadlines of `config`; with `tls`, each must first complete a mutual TLS handshake (run
/// concurrently, within the same handshake deadline as the HTTP/2 preface that follows, and
/// holding its slot under the caps meanwhile). Refused connections are closed here and never
/// yielded; the stream yields no errors and ends only when dropped.
pub(crate) fn accept(
    listener: TcpListener,
    admission: Arc<Admission>,
    config: &ConnectionConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Incoming {
    Incoming {
        listener,
        admission,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
        tls,
        handshakes: FuturesUnordered::new(),
        refusals: RefusalLog::default(),
        tls_failures: TlsFailureLog::default(),
        last_error: None,
        pause: None,
    }
}

/// The stream [`accept`] returns.
pub(crate) struct Incoming {
    listener: TcpListener,
    admission: Arc<Admission>,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshakes: FuturesUnordered<PendingHandshake>,
    refusals: RefusalLog,
    tls_failures: TlsFailureLog,
    last_error: Option<Instant>,
    /// After an accept error: no accepting until this fires.
    pause: Option<Pin<Box<Sleep>>>,
}

/// Completes the TLS handshake on `stream` before `deadline`, and reads the verified client
/// certificate's identity.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    deadline: tokio::time::Instant,
    idle_timeout: Option<Duration>,
) -> Result<LimitedConn, (SocketAddr, String)> {
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => return Err((peer, "the TLS handshake did not complete in time".into())),
        Ok(Err(e)) => return Err((peer, e.to_string())),
        Ok(Ok(tls)) => tls,
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        // rustls requires one under the server configuration; checked anyway.
        None => return Err((peer, "no client certificate".into())),
        Some(cert) => PeerIdentity::from_der(cert).map_err(|e| (peer, e.to_string()))?,
    };
    Ok(LimitedConn::new(
        Io::Tls(Box::new(tls)),
        Some(identity),
        slot,
        deadline,
        idle_timeout,
    ))
}

impl Stream for Incoming {
    type Item = Result<LimitedConn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Finished handshakes first, so that a stream of new connections cannot starve them.
            while let Poll::Ready(Some(done)) = Pin::new(&mut this.handshakes).poll_next(cx) {
                match done {
                    Ok(conn) => return Poll::Ready(Some(Ok(conn))),
                    Err((peer, why)) => this.tls_failures.failed(peer, &why),
                }
            }
            if let Some(pause) = &mut this.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            let (stream, peer) = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(accepted)) => accepted,
                Poll::Ready(Err(e)) => {
                    if this
                        .last_error
                        .is_none_or(|at| at.elapsed() >= WARN_INTERVAL)
                    {
                        warn!(error = %e, "cannot accept connections (out of file descriptors?); retrying");
                        this.last_error = Some(Instant::now());
                    }
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                    continue;
                }
            };
            let slot = match this.admission.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    drop(stream);
                    this.refusals.refused(why, peer, &this.admission);
                    continue;
                }
            };
            // Small answers (acks, offers) must not wait for Nagle's algorithm: without
            // TCP_NODELAY each one waited ~40 ms for a delayed ACK on loopback.
            let _ = stream.set_nodelay(true);
            let deadline = tokio::time::Instant::now() + this.handshake_timeout;
            match &this.tls {
                None => {
                    let conn = LimitedConn::new(
                        Io::Plain(stream),
                        None,
                        slot,
                        deadline,
                        this.idle_timeout,
                    );
                    return Poll::Ready(Some(Ok(conn)));
                }
                Some(acceptor) => this.handshakes.push(Box::pin(tls_handshake(
                    acceptor.clone(),
                    stream,
                    peer,
                    slot,
                    deadline,
                    this.idle_timeout,
                ))),
            }
        }
    }
}

/// A connection's transport: plain TCP, or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a connection's calls tell its reader: how many are open, and since when none is.
#[derive(Debug)]
pub(crate) struct ConnActivity {
    open_calls: AtomicUsize,
    born: Instant,
    /// Milliseconds after `born` at which the last call closed (0: none has).
    idle_since_ms: AtomicU64,
}

impl ConnActivity {
    fn call_opened(&self) {
        self.open_calls.fetch_add(1, Ordering::AcqRel);
    }

    fn call_closed(&self) {
        // The time is stored before the count drops, so a reader that sees no call open also
        // sees when the last one closed.
        let now = self.born.elapsed().as_millis() as u64;
        self.idle_since_ms.store(now, Ordering::Release);
        self.open_calls.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the connection became idle, or `None` while a call is open.
    fn idle_since(&self) -> Option<Instant> {
        if self.open_calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.born + Duration::from_millis(ms))
    }
}

/// The connect info tonic puts in each request's extensions: the TCP addresses, and the
/// connection's call counter for [`TrackCallsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The local and remote addresses, as tonic's own `TcpStream` reports them.
    pub(crate) tcp: TcpConnectInfo,
    /// Who the verified client certificate says the peer is; `None` on a plain-text listener.
    pub(crate) peer: Option<PeerIdentity>,
    activity: Arc<ConnActivity>,
}

/// Reading the first bytes: closes the connection unless the preface and the first frame
/// arrive before `deadline`.
struct Handshake {
    deadline: Pin<Box<Sleep>>,
    head: [u8; PREFACE_AND_FRAME_HEADER],
    seen: usize,
    needed: usize,
}

impl Handshake {
    /// Takes newly read bytes; true once the preface and the whole first frame are in.
    fn observe(&mut self, bytes: &[u8]) -> bool {
        if self.seen < PREFACE_AND_FRAME_HEADER {
            let n = bytes.len().min(PREFACE_AND_FRAME_HEADER - self.seen);
            self.head[self.seen..self.seen + n].copy_from_slice(&bytes[..n]);
            if self.seen + n == PREFACE_AND_FRAME_HEADER {
                let len = u32::from_be_bytes([0, self.head[24], self.head[25], self.head[26]]);
                self.needed = PREFACE_AND_FRAME_HEADER + len as usize;
            }
        }
        self.seen = self.seen.saturating_add(bytes.len());
        self.seen >= self.needed
    }
}

/// Closes a connection that has carried no call for `timeout`.
struct IdleWatch {
    timeout: Duration,
    check: Pin<Box<Sleep>>,
}

/// An accepted TCP connection under the caps and deadlines: holds its [`Slot`] until dropped,
/// and fails its reads (so that hyper drops it) once the handshake or idle deadline passes.
pub(crate) struct LimitedConn {
    inner: Io,
    peer: Option<PeerIdentity>,
    handshake: Option<Handshake>,
    idle: Option<IdleWatch>,
    activity: Arc<ConnActivity>,
    _slot: Slot,
}

impl LimitedConn {
    /// `deadline` is when the HTTP/2 handshake (and, over TLS, the TLS handshake before it)
    /// must be done by: the accept time plus the handshake timeout.
    fn new(
        inner: Io,
        peer: Option<PeerIdentity>,
        slot: Slot,
        deadline: tokio::time::Instant,
        idle_timeout: Option<Duration>,
    ) -> Self {
        LimitedConn {
            inner,
            peer,
            handshake: Some(Handshake {
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                head: [0; PREFACE_AND_FRAME_HEADER],
                seen: 0,
                needed: PREFACE_AND_FRAME_HEADER,
            }),
            idle: idle_timeout.map(|timeout| IdleWatch {
                timeout,
                check: Box::pin(tokio::time::sleep(timeout)),
            }),
            activity: Arc::new(ConnActivity {
                open_calls: AtomicUsize::new(0),
                born: Instant::now(),
                idle_since_ms: AtomicU64::new(0),
            }),
            _slot: slot,
        }
    }

    /// Called when the socket has nothing to read: an error if a deadline has passed, else
    /// pending with the deadlines' wakers registered.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(h) = &mut self.handshake
            && h.deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not complete the HTTP/2 handshake in time",
            )));
        }
        if let Some(idle) = &mut self.idle {
            while idle.check.as_mut().poll(cx).is_ready() {
                let next = match self.activity.idle_since() {
                    None => tokio::time::Instant::now() + idle.timeout,
                    Some(since) if since.elapsed() >= idle.timeout => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the connection carried no call for the idle timeout",
                        )));
                    }
                    Some(since) => tokio::time::Instant::from_std(since + idle.timeout),
                };
                idle.check.as_mut().reset(next);
            }
        }
        Poll::Pending
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(h) = &mut this.handshake
                    && h.observe(&buf.filled()[before..])
                {
                    this.handshake = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadlines(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.inner.tcp().connect_info(),
            peer: self.peer.clone(),
            activity: self.activity.clone(),
        }
    }
}

/// Wraps the gRPC services so that each call counts as open on its connection from the
/// moment it arrives until its response body is dropped (for a stream: until it ends).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrackCallsLayer;

impl<S> tower_layer::Layer<S> for TrackCallsLayer {
    type Service = TrackCalls<S>;

    fn layer(&self, inner: S) -> TrackCalls<S> {
        TrackCalls { inner }
    }
}

/// The service [`TrackCallsLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct TrackCalls<S> {
    inner: S,
}

/// One open call on a connection; dropping it closes the call for the idle watch.
struct OpenCall(Arc<ConnActivity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.call_closed();
    }
}

impl<S> Service<Request<Body>> for TrackCalls<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let info = req.extensions().get::<ConnInfo>().cloned();
        let call = info.map(|info| {
            info.activity.call_opened();
            // Where `Request::remote_addr` looks, as with tonic's own listener.
            req.extensions_mut().insert(info.tcp);
            // Where authorization and the role check look (`wasmos_api::identity`).
            if let Some(peer) = info.peer {
                req.extensions_mut().insert(peer);
            }
            OpenCall(info.activity)
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match call {
                Some(call) => response.map(|body| Body::new(CallBody { body, _call: call })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its call open until dropped.
struct CallBody {
    body: Body,
    _call: OpenCall,
}

impl http_body::Body for CallBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_nofile_soft_limit`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let target = (limit.rlim_max as u64).min(NOFILE_RAISE_CEILING);
        assert!(
            target > 256,
            "a hard limit of {target} leaves nothing to test"
        );
        // Lower the soft limit, as Debian's default of 1,024 would be (this test runs in its
        // own process).
        let low = libc::rlimit {
            rlim_cur: 256,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` reads the valid `low`; lowering the soft limit needs no privilege.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        assert_eq!(nofile_soft_limit(), Some(256));
        assert_eq!(raise_nofile_soft_limit(), Some((256, target)));
        assert_eq!(nofile_soft_limit(), Some(target));
        assert_eq!(raise_nofile_soft_limit(), None, "raised already");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_admits_up_to_the_cap_and_frees_on_drop() {
        let admission = Admission::new(100, 2);
        let a = admission.admit(ip("10.0.0.1")).unwrap();
        let _b = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerIp);
        // Another address has its own slots.
        let _c = admission.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        let _d = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(admission.open_total(), 3);
    }

    #[test]
    fn total_cap_holds_across_addresses() {
        let admission = Admission::new(3, 10);
        let slots: Vec<_> = (1..=3)
            .map(|i| admission.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(admission.admit(ip("10.0.0.9")).unwrap_err(), Refusal::Total);
        for i in 0..1000 {
            assert!(
                admission
                    .admit(ip(&format!("10.1.{}.{}", i / 256, i % 256)))
                    .is_err()
            );
        }
        drop(slots);
        assert_eq!(admission.open_total(), 0);
        assert!(admission.admit(ip("10.0.0.9")).is_ok());
    }

    #[tokio::test]
    async fn handshake_needs_the_preface_and_the_whole_first_frame() {
        let mut h = Handshake {
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
            head: [0; PREFACE_AND_FRAME_HEADER],
            seen: 0,
            needed: PREFACE_AND_FRAME_HEADER,
        };
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        // A SETTINGS frame with a 12-byte payload, arriving a byte at a time.
        let mut bytes = preface.to_vec();
        bytes.extend_from_slice(&[0, 0, 12, 4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0; 12]);
        let (last, rest) = bytes.split_last().unwrap();
        for b in rest {
            assert!(!h.observe(std::slice::from_ref(b)));
        }
        assert!(h.observe(std::slice::from_ref(last)));
    }

    #[test]
    fn default_total_cap_leaves_headroom_under_the_descriptor_limit() {
        assert_eq!(ConnectionConfig::default_max_connections(Some(1024)), 768);
        assert_eq!(ConnectionConfig::default_max_connections(Some(256)), 128);
        assert_eq!(ConnectionConfig::default_max_connections(Some(100)), 1);
        assert_eq!(
            ConnectionConfig::default_max_connections(Some(1 << 20)),
            (1 << 20) - (1 << 18)
        );
        assert_eq!(ConnectionConfig::default_max_connections(None), 768);
    }
}
