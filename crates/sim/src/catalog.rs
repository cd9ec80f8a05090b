//! The applications a simulated endpoint runs: where each lives, who runs it, how often it opens
//! connections during the day, and where they go.

use palisade_proto::Protocol;

/// When an application is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Used by a person: busy in working hours on weekdays, nearly idle otherwise.
    Interactive,
    /// A system service: the same rate around the clock.
    Background,
}

/// Who runs an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// The endpoint's person.
    User,
    /// A system account (`root`, uid 0).
    Root,
}

/// One destination an application talks to, and how much traffic a connection carries.
#[derive(Debug, Clone, Copy)]
pub struct Destination {
    /// Domain name.
    pub domain: &'static str,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Relative weight among the application's destinations.
    pub weight: u32,
    /// Typical bytes sent and received per connection.
    pub bytes: (u64, u64),
}

/// A kind of application found on endpoints.
#[derive(Debug, Clone, Copy)]
pub struct App {
    /// Executable path.
    pub path: &'static str,
    /// Parent executable.
    pub parent: &'static str,
    /// systemd unit, for services.
    pub unit: Option<&'static str>,
    /// Who runs it.
    pub runner: Runner,
    /// When it is busy.
    pub activity: Activity,
    /// Connections per hour when busy.
    pub per_hour: u32,
    /// Where it connects.
    pub destinations: &'static [Destination],
    /// Share of endpoints that have it installed, in percent.
    pub installed_percent: u32,
}

const fn tls(domain: &'static str, weight: u32, bytes: (u64, u64)) -> Destination {
    Destination {
        domain,
        port: 443,
        protocol: Protocol::Tcp,
        weight,
        bytes,
    }
}

const fn on(
    domain: &'static str,
    port: u16,
    protocol: Protocol,
    weight: u32,
    bytes: (u64, u64),
) -> Destination {
    Destination {
        domain,
        port,
        protocol,
        weight,
        bytes,
    }
}

const SESSION: &str = "/usr/lib/systemd/systemd";

/// Browsers, updaters, chat, mail, development tools and system services.
pub const APPS: &[App] = &[
    App {
        path: "/usr/lib/firefox/firefox",
        parent: SESSION,
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 240,
        destinations: &[
            tls("www.google.com", 30, (2_000, 60_000)),
            tls("github.com", 12, (3_000, 250_000)),
            tls("en.wikipedia.org", 10, (1_500, 120_000)),
            tls("news.ycombinator.com", 6, (1_200, 40_000)),
            tls("www.youtube.com", 10, (4_000, 3_000_000)),
            tls("docs.rs", 8, (1_500, 90_000)),
            tls("stackoverflow.com", 10, (1_800, 150_000)),
            tls("fonts.gstatic.com", 8, (800, 40_000)),
            tls("cdn.jsdelivr.net", 6, (900, 80_000)),
        ],
        installed_percent: 70,
    },
    App {
        path: "/opt/google/chrome/chrome",
        parent: SESSION,
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 300,
        destinations: &[
            tls("www.google.com", 30, (2_000, 60_000)),
            tls("mail.google.com", 15, (3_000, 200_000)),
            tls("docs.google.com", 12, (5_000, 300_000)),
            tls("www.linkedin.com", 5, (1_500, 120_000)),
            tls("clients4.google.com", 8, (600, 2_000)),
            tls("www.gstatic.com", 10, (700, 50_000)),
        ],
        installed_percent: 45,
    },
    App {
        path: "/usr/bin/slack",
        parent: SESSION,
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 40,
        destinations: &[
            tls("wss-primary.slack.com", 10, (4_000, 20_000)),
            tls("edgeapi.slack.com", 6, (2_000, 30_000)),
            tls("files.slack.com", 2, (50_000, 400_000)),
        ],
        installed_percent: 60,
    },
    App {
        path: "/usr/bin/thunderbird",
        parent: SESSION,
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 12,
        destinations: &[
            on(
                "imap.example-corp.com",
                993,
                Protocol::Tcp,
                8,
                (2_000, 80_000),
            ),
            on(
                "smtp.example-corp.com",
                587,
                Protocol::Tcp,
                2,
                (60_000, 2_000),
            ),
        ],
        installed_percent: 40,
    },
    App {
        path: "/usr/bin/git",
        parent: "/usr/bin/bash",
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 6,
        destinations: &[
            tls("github.com", 8, (3_000, 400_000)),
            on(
                "gitlab.example-corp.com",
                22,
                Protocol::Tcp,
                3,
                (4_000, 200_000),
            ),
        ],
        installed_percent: 55,
    },
    App {
        path: "/home/user/.cargo/bin/cargo",
        parent: "/usr/bin/bash",
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 4,
        destinations: &[
            tls("index.crates.io", 5, (1_000, 30_000)),
            tls("static.crates.io", 3, (1_000, 900_000)),
        ],
        installed_percent: 25,
    },
    App {
        path: "/usr/bin/python3",
        parent: "/usr/bin/bash",
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 3,
        destinations: &[
            tls("pypi.org", 4, (1_000, 40_000)),
            tls("files.pythonhosted.org", 3, (1_000, 2_000_000)),
        ],
        installed_percent: 50,
    },
    App {
        path: "/usr/bin/ssh",
        parent: "/usr/bin/bash",
        unit: None,
        runner: Runner::User,
        activity: Activity::Interactive,
        per_hour: 2,
        destinations: &[on(
            "bastion.example-corp.com",
            22,
            Protocol::Tcp,
            1,
            (40_000, 200_000),
        )],
        installed_percent: 50,
    },
    App {
        path: "/usr/lib/apt/methods/http",
        parent: "/usr/bin/apt-get",
        unit: Some("apt-daily.service"),
        runner: Runner::Root,
        activity: Activity::Background,
        per_hour: 2,
        destinations: &[
            on("deb.debian.org", 80, Protocol::Tcp, 3, (2_000, 3_000_000)),
            on(
                "security.debian.org",
                80,
                Protocol::Tcp,
                1,
                (1_000, 500_000),
            ),
        ],
        installed_percent: 100,
    },
    App {
        path: "/usr/lib/snapd/snapd",
        parent: "/usr/lib/systemd/systemd",
        unit: Some("snapd.service"),
        runner: Runner::Root,
        activity: Activity::Background,
        per_hour: 1,
        destinations: &[tls("api.snapcraft.io", 1, (2_000, 20_000))],
        installed_percent: 35,
    },
    App {
        path: "/usr/lib/systemd/systemd-resolved",
        parent: "/usr/lib/systemd/systemd",
        unit: Some("systemd-resolved.service"),
        runner: Runner::Root,
        activity: Activity::Background,
        per_hour: 60,
        destinations: &[on("dns.example-corp.com", 53, Protocol::Udp, 1, (80, 160))],
        installed_percent: 100,
    },
    App {
        path: "/usr/lib/systemd/systemd-timesyncd",
        parent: "/usr/lib/systemd/systemd",
        unit: Some("systemd-timesyncd.service"),
        runner: Runner::Root,
        activity: Activity::Background,
        per_hour: 2,
        destinations: &[on("ntp.ubuntu.com", 123, Protocol::Udp, 1, (48, 48))],
        installed_percent: 100,
    },
    App {
        path: "/opt/corp-monitoring/telemetryd",
        parent: "/usr/lib/systemd/systemd",
        unit: Some("telemetryd.service"),
        runner: Runner::Root,
        activity: Activity::Background,
        per_hour: 12,
        destinations: &[tls("telemetry.example-corp.com", 1, (20_000, 1_000))],
        installed_percent: 80,
    },
];
