//! The running agent on Linux, in one of two modes:
//! - enforcing: the kernel's queues served by one thread each, DNS answers fed to the name
//!   cache, the chains installed for the policy and taken down on exit;
//! - observing: no change to the kernel at all; new connections are seen in conntrack events
//!   after the fact, decided the same way and recorded, never blocked; DNS answers are read by
//!   a filtered packet socket ([`crate::dns_capture`]).
//!
//! Threads: one per connection queue (each with its own process lookup, so they never wait for
//! each other), one for the DNS queue, one for the server names of allowed connections
//! ([`crate::server_name`]) and one for conntrack's ended connections; or, observing, one
//! conntrack listener for both new and ended connections that also reads the captured DNS
//! answers (before each batch of new connections, so that their names are known); and the
//! recorder, which numbers
//! events and appends them to the spool, followed by an update for every recorded connection
//! that ends ([`crate::open_flows`]). The policy in force is swapped under a lock that deciders
//! only read.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use palisade_policy::model::Fail;
use palisade_proto::{ConnectionEvent, Traffic, Verdict};

use crate::conntrack::{self, CtEvent, Groups, Listener, RECV_BUFFER_LEN};
use crate::decide::{ActivePolicy, Decider, Shared};
use crate::dns_capture::DnsCapture;
use crate::flow::FlowKey;
use crate::intercept::{Enforcement, Held, Interceptor};
use crate::netfilter::{Chains, MARK_MASK, NAMES_GROUP};
use crate::nflog;
use crate::nfqueue::{NfQueue, QueueKind, dns_answer};
use crate::open_flows::{Learned, OpenFlows, Opened};
use crate::process::ProcessLookup;
use crate::server_name::{Named, Namer};
use crate::spool::Spool;

/// The clock, read where the agent meets the world (the binary passes the system clock).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Makes one process lookup per connection queue.
pub type LookupFactory = Box<dyn Fn() -> io::Result<Box<dyn ProcessLookup>> + Send + Sync>;

/// Events that may wait between the deciders and the recorder; beyond this they are counted
/// as dropped rather than slowing connections down.
const EVENT_BUFFER: usize = 65_536;
/// Longest DNS packet read whole in monitor mode (a UDP answer, or a TCP segment).
const DNS_PACKET_LEN: usize = 65_535;
/// Longest a DNS answer captured in monitor mode waits to be read while no connection opens.
const DNS_WAIT: Duration = Duration::from_millis(20);
/// Recorded connections remembered until they end (see [`crate::open_flows`]).
const OPEN_FLOWS: usize = 16_384;
/// How often the recorder takes the decided events and writes them to the spool. Deciders
/// never wake it: waking a thread per connection cost more than the rest of the bookkeeping.
const RECORD_EVERY: Duration = Duration::from_millis(20);

/// Whether the agent changes the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hold every new connection and enforce the policy's verdict.
    Enforce,
    /// Change nothing: observe new connections in conntrack events and record what the policy
    /// would decide (a block is recorded as "would block").
    Observe,
}

/// How the agent works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Enforce or only observe.
    pub mode: Mode,
    /// Connection queues (threads deciding connections), numbered from 0.
    pub queues: u16,
    /// What a block does: [`Enforcement::Drop`] or [`Enforcement::Reject`].
    pub block: Enforcement,
}

/// Counters an operator and the server see.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections decided.
    pub decided: AtomicU64,
    /// Connections blocked.
    pub blocked: AtomicU64,
    /// Held packets that could not be read.
    pub unreadable: AtomicU64,
    /// DNS answers read.
    pub dns_answers: AtomicU64,
    /// DNS answers that could not be decoded.
    pub dns_unreadable: AtomicU64,
    /// Events lost because the recorder fell too far behind.
    pub events_dropped: AtomicU64,
    /// Events appended to the spool.
    pub events_spooled: AtomicU64,
    /// Events that could not be written to the spool.
    pub spool_errors: AtomicU64,
    /// Updates recorded for connections that ended, with their counters.
    pub flows_ended: AtomicU64,
    /// Recorded connections forgotten before they ended (too many open at once).
    pub flows_forgotten: AtomicU64,
    /// Times the kernel dropped conntrack events because the agent read them too slowly.
    pub conntrack_overflows: AtomicU64,
    /// Connections named by their first data packets (TLS server name or HTTP host).
    pub server_names: AtomicU64,
    /// Times the kernel dropped copies of first data packets the agent read too slowly.
    pub names_overflows: AtomicU64,
}

impl Counters {
    /// Every counter by name, for heartbeats and logs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("decided", get(&self.decided)),
            ("blocked", get(&self.blocked)),
            ("unreadable", get(&self.unreadable)),
            ("dns_answers", get(&self.dns_answers)),
            ("dns_unreadable", get(&self.dns_unreadable)),
            ("events_dropped", get(&self.events_dropped)),
            ("events_spooled", get(&self.events_spooled)),
            ("spool_errors", get(&self.spool_errors)),
            ("flows_ended", get(&self.flows_ended)),
            ("flows_forgotten", get(&self.flows_forgotten)),
            ("conntrack_overflows", get(&self.conntrack_overflows)),
            ("server_names", get(&self.server_names)),
            ("names_overflows", get(&self.names_overflows)),
        ]
    }
}

/// The running agent. Dropping it does not remove the chains: call [`Agent::stop`].
pub struct Agent {
    settings: Settings,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    chains: Mutex<Option<Chains>>,
    spool: Arc<Mutex<Spool>>,
    events: Arc<Recorder>,
}

impl Agent {
    /// Starts the recorder and, enforcing, binds the queues, starts their threads and installs
    /// the chains for the policy in force (failing open until there is one); observing, starts
    /// the conntrack listener.
    pub fn start(
        settings: Settings,
        shared: Arc<Shared>,
        lookups: &LookupFactory,
        spool: Arc<Mutex<Spool>>,
        clock: Clock,
    ) -> io::Result<Agent> {
        let counters = Arc::new(Counters::default());
        let events = Arc::new(Recorder::new());
        {
            let (counters, spool, events) = (counters.clone(), spool.clone(), events.clone());
            std::thread::Builder::new()
                .name("recorder".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(RECORD_EVERY);
                        record(&events, &spool, &counters);
                    }
                })?;
        }
        let agent = Agent {
            settings,
            shared,
            counters,
            chains: Mutex::new(None),
            spool,
            events: events.clone(),
        };
        match agent.settings.mode {
            Mode::Enforce => {
                agent.serve_queues(lookups, &events, &clock)?;
                agent.read_server_names(&events)?;
                agent.install_chains()?;
                agent.follow_ends(events, clock)?;
            }
            Mode::Observe => agent.observe(lookups, events, clock)?,
        }
        Ok(agent)
    }

    fn serve_queues(
        &self,
        lookups: &LookupFactory,
        events: &Arc<Recorder>,
        clock: &Clock,
    ) -> io::Result<()> {
        let (settings, shared) = (&self.settings, &self.shared);
        let own_pid = std::process::id();
        let queues = settings.queues.max(1);
        for number in 0..queues {
            let mut queue = NfQueue::bind(number, QueueKind::Connections, true)?;
            let mut decider = Decider::new(shared.clone(), lookups()?, settings.block, own_pid);
            let (clock, counters, events) = (clock.clone(), self.counters.clone(), events.clone());
            std::thread::Builder::new()
                .name(format!("queue-{number}"))
                .spawn(move || {
                    let mut decide = |held: Held<'_>| match held {
                        Held::Connection(flow) => {
                            let (enforcement, event) = decider.decide(&flow, clock());
                            count(&counters, flow, enforcement, event, &events);
                            enforcement
                        }
                        Held::DnsAnswer(_) | Held::Unreadable => {
                            counters.unreadable.fetch_add(1, Ordering::Relaxed);
                            Enforcement::Allow
                        }
                    };
                    serve_forever(&mut queue, &mut decide);
                })?;
        }
        let mut dns = NfQueue::bind(queues, QueueKind::Dns, true)?;
        let (shared, clock, counters) = (shared.clone(), clock.clone(), self.counters.clone());
        std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let mut learn = |held: Held<'_>| {
                    if let Held::DnsAnswer(bytes) = held {
                        learn_names(&shared, bytes, clock(), &counters);
                    }
                    Enforcement::Allow
                };
                serve_forever(&mut dns, &mut learn);
            })?;
        Ok(())
    }

    /// Decides every new connection conntrack announces, after the fact: nothing is held, so a
    /// block is recorded with the verdict `allow` ("would block").
    fn observe(
        &self,
        lookups: &LookupFactory,
        events: Arc<Recorder>,
        clock: Clock,
    ) -> io::Result<()> {
        let listener = Listener::open(Groups::ALL)?;
        let mut decider = Decider::new(
            self.shared.clone(),
            lookups()?,
            Enforcement::Allow,
            std::process::id(),
        );
        // The answers are read on the conntrack thread, before each datagram of events: every
        // answer received before a connection opened is then known when it is decided.
        listener.set_read_timeout(Some(DNS_WAIT))?;
        let mut capture = DnsCapture::open()?;
        let mut buf = vec![0; DNS_PACKET_LEN];
        let (shared, dns_clock, dns_counters) =
            (self.shared.clone(), clock.clone(), self.counters.clone());
        let learn_answers = move || {
            let now = dns_clock();
            let drained = capture.drain(&mut buf, |packet| match dns_answer(packet) {
                Held::DnsAnswer(message) => learn_names(&shared, message, now, &dns_counters),
                _ => {
                    dns_counters.dns_unreadable.fetch_add(1, Ordering::Relaxed);
                }
            });
            if let Err(e) = drained {
                tracing::warn!(error = %e, "reading DNS answers failed");
            }
        };
        let (counters, recorder) = (self.counters.clone(), events.clone());
        let decide_new = move |flow: FlowKey, now: Timestamp| {
            let (_, event) = decider.decide(&flow, now);
            let event = event.map(|mut e| {
                e.verdict = Verdict::Allow;
                e
            });
            count(&counters, flow, Enforcement::Allow, event, &recorder);
        };
        let handlers = Handlers {
            before: learn_answers,
            new: decide_new,
        };
        follow_conntrack(listener, &self.counters, events, clock, None, handlers)
    }

    /// Reads the copies of allowed connections' first data packets and passes the server names
    /// found in them to the recorder.
    fn read_server_names(&self, events: &Arc<Recorder>) -> io::Result<()> {
        let mut listener = nflog::Listener::open(NAMES_GROUP)?;
        let (counters, events) = (self.counters.clone(), events.clone());
        std::thread::Builder::new()
            .name("names".into())
            .spawn(move || {
                let mut namer = Namer::new();
                let mut buf = vec![0; nflog::RECV_BUFFER_LEN];
                loop {
                    let copies = listener.recv(&mut buf);
                    counters
                        .names_overflows
                        .store(listener.overflows(), Ordering::Relaxed);
                    let copies = match copies {
                        Ok(copies) => copies,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading packet copies failed");
                            continue;
                        }
                    };
                    for packet in copies {
                        let Some(Named {
                            flow,
                            sni,
                            http_host,
                        }) = namer.named(&packet)
                        else {
                            continue;
                        };
                        counters.server_names.fetch_add(1, Ordering::Relaxed);
                        events.learned(flow, Learned::Named { sni, http_host });
                    }
                }
            })?;
        Ok(())
    }

    /// Follows the connections that end, to record their counters: only those the agent let
    /// through carry its mark. Turns conntrack accounting on (without it the counters are zero).
    fn follow_ends(&self, events: Arc<Recorder>, clock: Clock) -> io::Result<()> {
        if let Err(e) = conntrack::enable_accounting() {
            tracing::warn!(error = %e, "conntrack accounting could not be turned on; connections will end without counters");
        }
        let listener = Listener::open(Groups {
            new: false,
            destroy: true,
        })?;
        let allowed = crate::netfilter::mark(Enforcement::Allow);
        follow_conntrack(
            listener,
            &self.counters,
            events,
            clock,
            Some(allowed),
            Handlers {
                before: || {},
                new: |_, _| {},
            },
        )
    }

    /// Puts `policy` in force; enforcing, changes the chains when it needs others (inbound
    /// connections held or not, failing open or closed).
    pub fn apply(&self, policy: ActivePolicy) -> io::Result<()> {
        self.shared.set_policy(policy);
        match self.settings.mode {
            Mode::Enforce => self.install_chains(),
            Mode::Observe => Ok(()),
        }
    }

    /// The version of the policy in force, when it came from the server.
    pub fn policy_version(&self) -> Option<i64> {
        self.shared.policy().and_then(|p| p.version)
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Removes the chains (new connections are no longer held), lets the recorder write what
    /// is waiting, and makes the spool durable.
    pub fn stop(self) -> io::Result<()> {
        let removed = match self.settings.mode {
            Mode::Enforce => crate::netfilter::remove(),
            Mode::Observe => Ok(()),
        };
        record(&self.events, &self.spool, &self.counters);
        if let Ok(mut spool) = self.spool.lock() {
            spool.sync().map_err(io::Error::other)?;
        }
        removed
    }

    fn install_chains(&self) -> io::Result<()> {
        let policy = self.shared.policy();
        let wanted = Chains {
            first_queue: 0,
            queues: self.settings.queues.max(1),
            dns_queue: self.settings.queues.max(1),
            fail: policy.as_ref().map_or(Fail::Open, |p| p.fail),
            inbound: policy.as_ref().is_some_and(|p| p.inbound),
        };
        let mut installed = self
            .chains
            .lock()
            .map_err(|_| io::Error::other("chains lock poisoned"))?;
        match installed.as_ref() {
            Some(current) if *current == wanted => {}
            Some(_) => wanted.replace()?,
            None => wanted.install()?,
        }
        *installed = Some(wanted);
        Ok(())
    }
}

fn serve_forever(queue: &mut NfQueue, decide: &mut dyn FnMut(Held<'_>) -> Enforcement) {
    loop {
        if let Err(e) = queue.serve(decide) {
            tracing::warn!(error = %e, "reading a kernel queue failed");
        }
    }
}

fn count(
    counters: &Counters,
    flow: FlowKey,
    enforcement: Enforcement,
    event: Option<ConnectionEvent>,
    events: &Recorder,
) {
    counters.decided.fetch_add(1, Ordering::Relaxed);
    if enforcement != Enforcement::Allow {
        counters.blocked.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(event) = event {
        if !events.decided(flow, event) {
            counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a conntrack follower does besides recording ended connections.
struct Handlers<B, N> {
    /// Called before the events of each datagram are handled, and whenever the listener's read
    /// times out.
    before: B,
    /// Called with every new connection.
    new: N,
}

/// Reads conntrack events on a thread of their own: every new connection goes to
/// `handlers.new`, every ended one (with `mark`, only one whose connection mark carries it) to
/// the recorder with its counters.
fn follow_conntrack<B, N>(
    mut listener: Listener,
    counters: &Arc<Counters>,
    events: Arc<Recorder>,
    clock: Clock,
    mark: Option<u32>,
    mut handlers: Handlers<B, N>,
) -> io::Result<()>
where
    B: FnMut() + Send + 'static,
    N: FnMut(FlowKey, Timestamp) + Send + 'static,
{
    let counters = counters.clone();
    std::thread::Builder::new()
        .name("conntrack".into())
        .spawn(move || {
            let mut local = LocalAddresses::default();
            let mut buf = vec![0; RECV_BUFFER_LEN];
            loop {
                let seen = receive(&mut listener, &mut buf, &counters);
                (handlers.before)();
                let Some(seen) = seen else {
                    continue;
                };
                let now = clock();
                local.refresh(now);
                for event in seen {
                    if let Some((flow, traffic)) = ended(&event, &local, mark) {
                        events.learned(flow, Learned::Ended(traffic));
                    } else if let CtEvent::New { orig, .. } = event {
                        if let Some(flow) = orig.flow_key(&|ip| local.contains(ip)) {
                            (handlers.new)(flow, now);
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// Receives one datagram of conntrack events; `None` when the read timed out or failed (logged).
/// The kernel's reports of lost events are counted.
fn receive(listener: &mut Listener, buf: &mut [u8], counters: &Counters) -> Option<Vec<CtEvent>> {
    let seen = listener.recv(buf);
    counters
        .conntrack_overflows
        .store(listener.overflows(), Ordering::Relaxed);
    match seen {
        Ok(seen) => Some(seen),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading conntrack events failed");
            None
        }
    }
}

/// The flow and its counters when `event` is the end of a connection with an end on this host
/// (and, with `mark`, whose connection mark carries it in the agent's bits).
fn ended(event: &CtEvent, local: &LocalAddresses, mark: Option<u32>) -> Option<(FlowKey, Traffic)> {
    let CtEvent::Destroy {
        orig,
        mark: ct_mark,
        acct,
        ..
    } = event
    else {
        return None;
    };
    if mark.is_some_and(|m| ct_mark & MARK_MASK != m) {
        return None;
    }
    let flow = orig.flow_key(&|ip| local.contains(ip))?;
    let counted = acct.map(|a| a.traffic(flow.direction)).unwrap_or_default();
    let traffic = Traffic {
        bytes_out: counted.sent.bytes,
        bytes_in: counted.received.bytes,
        packets_out: counted.sent.packets,
        packets_in: counted.received.packets,
        duration_ms: 0,
    };
    Some((flow, traffic))
}

/// What waits for the recorder: decided connections, and what was learned about recorded ones
/// later; and the recorded connections that have not ended.
#[derive(Debug)]
struct Recorder {
    decided: Mutex<Vec<(FlowKey, ConnectionEvent)>>,
    learned: Mutex<Vec<(FlowKey, Learned)>>,
    open: Mutex<OpenFlows>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            decided: Mutex::default(),
            learned: Mutex::default(),
            open: Mutex::new(OpenFlows::new(OPEN_FLOWS)),
        }
    }

    /// Adds a decided connection; `false` when [`EVENT_BUFFER`] already wait (it is dropped).
    fn decided(&self, flow: FlowKey, event: ConnectionEvent) -> bool {
        push_bounded(&self.decided, (flow, event))
    }

    /// Adds what was learned about a connection; `false` when [`EVENT_BUFFER`] facts already
    /// wait (it is dropped).
    fn learned(&self, flow: FlowKey, learned: Learned) -> bool {
        push_bounded(&self.learned, (flow, learned))
    }
}

fn push_bounded<T>(waiting: &Mutex<Vec<T>>, item: T) -> bool {
    let Ok(mut waiting) = waiting.lock() else {
        return false;
    };
    if waiting.len() >= EVENT_BUFFER {
        return false;
    }
    waiting.push(item);
    true
}

fn take<T>(waiting: &Mutex<Vec<T>>) -> Vec<T> {
    waiting
        .lock()
        .map(|mut waiting| std::mem::take(&mut *waiting))
        .unwrap_or_default()
}

fn learn_names(shared: &Shared, bytes: &[u8], now: Timestamp, counters: &Counters) {
    match palisade_dpi::dns::parse(bytes) {
        Ok(message) => {
            counters.dns_answers.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut names) = shared.names.write() {
                names.observe_dns(&message, now.as_millisecond());
            }
        }
        Err(_) => {
            counters.dns_unreadable.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Numbers the waiting events and appends them to the spool, then the updates of recorded
/// connections that ended since; the spool's fsync setting decides when they reach the disk.
fn record(recorder: &Recorder, spool: &Mutex<Spool>, counters: &Counters) {
    let decided = take(&recorder.decided);
    let learned = take(&recorder.learned);
    let (Ok(mut spool), Ok(mut open)) = (spool.lock(), recorder.open.lock()) else {
        return;
    };
    let append = |spool: &mut Spool, event: &ConnectionEvent| match spool.append(event) {
        Ok(()) => {
            counters.events_spooled.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "an event could not be spooled");
            counters.spool_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    for (flow, mut event) in decided {
        event.seq = spool.next_seq();
        if append(&mut spool, &event) && event.verdict == Verdict::Allow {
            let opened = Opened {
                seq: event.seq,
                time_ms: event.time_ms,
                action: event.action,
                verdict: event.verdict,
            };
            open.opened(flow, opened);
        }
    }
    for (flow, learned) in learned {
        let ended = matches!(learned, Learned::Ended(_));
        let Some(update) = open.update(&flow, learned, spool.next_seq()) else {
            continue;
        };
        if append(&mut spool, &update) && ended {
            counters.flows_ended.fetch_add(1, Ordering::Relaxed);
        }
    }
    counters
        .flows_forgotten
        .store(open.forgotten(), Ordering::Relaxed);
    if let Err(e) = spool.sync_if_due() {
        tracing::warn!(error = %e, "the spool could not be made durable");
    }
}

/// This host's addresses, read again every [`LOCAL_REFRESH_MS`], to tell connections it opened
/// from connections it accepted.
#[derive(Debug, Default)]
struct LocalAddresses {
    addresses: Vec<IpAddr>,
    read_at_ms: Option<i64>,
}

/// How long the host's addresses are trusted before they are read again.
const LOCAL_REFRESH_MS: i64 = 10_000;

impl LocalAddresses {
    fn refresh(&mut self, now: Timestamp) {
        let now_ms = now.as_millisecond();
        if self
            .read_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < LOCAL_REFRESH_MS)
        {
            return;
        }
        self.addresses = pnet_datalink::interfaces()
            .into_iter()
            .flat_map(|i| i.ips.into_iter().map(|net| net.ip()))
            .collect();
        self.read_at_ms = Some(now_ms);
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.addresses.contains(&ip)
    }
}
