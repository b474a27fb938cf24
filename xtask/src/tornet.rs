//! `cargo xtask tor-net up|down`: a private Tor network on loopback only (one
//! directory authority, four relays that exit to loopback only, a client with a SOCKS
//! port, and a tor hosting onion services), for the tests that run RXON over real
//! onion services with no internet. `cargo xtask tor-test` brings one up, runs the
//! Tor tests (`-- --ignored tor::`) and takes it down.
//!
//! Every tor runs in its own process group with its PID (from its `PidFile`) recorded
//! in `net.env`; `down` stops only those PIDs, after checking that each one's command
//! line names this network's directory. Under `tor-test`, every tor also exits by
//! itself once the xtask process is gone (`__OwningControllerProcess`).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Relays besides the authority (which relays too): 5 in the consensus, the least an
/// onion service works with (3-hop paths, an introduction and a rendezvous point).
const RELAYS: usize = 4;
/// Bound on the consensus listing every relay.
const CONSENSUS_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on the client's bootstrap and the service's first descriptor upload.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// Seconds between votes (the smallest a testing network allows is 10).
const VOTING_INTERVAL_SECS: u64 = 20;

/// Where `up` records the running network: `target/tor-net.env` points at its directory.
pub(crate) fn pointer(root: &Path) -> PathBuf {
    root.join("target/tor-net.env")
}

struct Node {
    name: String,
    dir: PathBuf,
    /// The relay's own loopback address: each relay on its own /16 of 127.0.0.0/8, so
    /// that clients which keep one relay per subnet on a path (arti) find paths.
    addr: std::net::Ipv4Addr,
    or_port: Option<u16>,
}

/// Starts a network; returns the path of its `net.env` (also written to
/// `target/tor-net.env`). `owner`: the PID whose exit stops every tor.
pub(crate) fn up(root: &Path, owner: Option<u32>) -> Result<PathBuf, String> {
    for tool in ["tor", "tor-gencert"] {
        if which(tool).is_none() {
            return Err(format!(
                "`{tool}` not found: install it (apt-get install -y tor) to run the Tor tests"
            ));
        }
    }
    if let Ok(old) = std::fs::read_to_string(pointer(root))
        && let Some(env) = old.lines().find_map(|l| l.strip_prefix("ENV="))
        && Path::new(env).exists()
    {
        let _ = down(root);
    }
    let started = Instant::now();
    // Short: control socket paths must stay under ~100 bytes.
    let base = PathBuf::from(format!("/tmp/rxon-tor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let env = base.join("net.env");
    let result = start(&base, owner, started);
    match result {
        Ok(mut text) => {
            let _ = writeln!(text, "DIR={}", base.display());
            std::fs::write(&env, &text).map_err(|e| e.to_string())?;
            std::fs::write(pointer(root), format!("ENV={}\n", env.display()))
                .map_err(|e| e.to_string())?;
            println!(
                "tor-net: up in {:.1} s; RXON_TOR_NET={}",
                started.elapsed().as_secs_f64(),
                env.display()
            );
            Ok(env)
        }
        Err(e) => {
            stop_dir(&base, false);
            Err(format!("{e}\n(logs: {}/*/notice.log)", base.display()))
        }
    }
}

fn start(base: &Path, owner: Option<u32>, started: Instant) -> Result<String, String> {
    let auth_addr = std::net::Ipv4Addr::new(127, 1, 0, 1);
    let auth = Node {
        name: "tnauth0".into(),
        dir: base.join("a0"),
        addr: auth_addr,
        or_port: Some(free_port(auth_addr)?),
    };
    let dir_port = free_port(auth_addr)?;
    std::fs::create_dir_all(auth.dir.join("keys")).map_err(|e| e.to_string())?;
    // The authority's v3 identity and signing keys and certificate.
    let keys = auth.dir.join("keys");
    let mut gencert = Command::new("tor-gencert")
        .current_dir(&keys)
        .args(["--create-identity-key", "-m", "12", "-a"])
        .arg(format!("{auth_addr}:{dir_port}"))
        .args(["--passphrase-fd", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("tor-gencert: {e}"))?;
    drop(gencert.stdin.take());
    if !gencert.wait().map_err(|e| e.to_string())?.success() {
        return Err("tor-gencert failed".into());
    }
    let cert = std::fs::read_to_string(keys.join("authority_certificate"))
        .map_err(|e| format!("authority certificate: {e}"))?;
    let v3ident = cert
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .ok_or("no fingerprint in the authority certificate")?
        .trim()
        .to_owned();
    let fingerprint = relay_fingerprint(&auth)?;
    let or = auth.or_port.unwrap_or_default();
    let dir_authority = format!(
        "DirAuthority {} orport={or} no-v2 v3ident={v3ident} {auth_addr}:{dir_port} {fingerprint}",
        auth.name
    );
    let mut pids = Vec::new();
    let spawn = |node: &Node, extra: &str, pids: &mut Vec<u32>| -> Result<(), String> {
        let torrc = node.dir.join("torrc");
        std::fs::write(&torrc, torrc_text(node, &dir_authority, owner) + extra)
            .map_err(|e| e.to_string())?;
        pids.push(launch(node, &torrc)?);
        // Recorded as they start, so a failed start still stops them.
        std::fs::write(base.join("pids"), pids_text(pids)).map_err(|e| e.to_string())?;
        Ok(())
    };
    spawn(
        &auth,
        &format!(
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nDirPort {auth_addr}:{dir_port}\n\
             V3AuthVotingInterval {VOTING_INTERVAL_SECS}\nV3AuthVoteDelay 4\nV3AuthDistDelay 4\n\
             TestingV3AuthInitialVotingInterval {VOTING_INTERVAL_SECS}\nTestingV3AuthInitialVoteDelay 4\n\
             TestingV3AuthInitialDistDelay 4\nExitPolicy reject *:*\n\
             AuthDirVoteStableGuaranteeMinUptime 0\nAuthDirVoteStableGuaranteeMTBF 0\n"
        ),
        &mut pids,
    )?;
    let mut relays = vec![(auth.dir.clone(), auth_addr, or)];
    for i in 0..RELAYS {
        let addr = std::net::Ipv4Addr::new(127, 2 + u8::try_from(i).unwrap_or(0), 0, 1);
        let relay = Node {
            name: format!("tnrelay{i}"),
            dir: base.join(format!("r{i}")),
            addr,
            or_port: Some(free_port(addr)?),
        };
        std::fs::create_dir_all(&relay.dir).map_err(|e| e.to_string())?;
        spawn(
            &relay,
            "ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicy accept 127.0.0.0/8:*\n\
             ExitPolicy reject *:*\n",
            &mut pids,
        )?;
        relays.push((relay.dir.clone(), addr, relay.or_port.unwrap_or_default()));
    }
    wait_for(CONSENSUS_TIMEOUT, "a consensus listing every relay", || {
        consensus_ready(&auth.dir, RELAYS + 1)
    })?;
    let consensus_at = started.elapsed();
    let local = std::net::Ipv4Addr::LOCALHOST;
    let socks = free_port(local)?;
    let client = Node {
        name: "tnclient".into(),
        dir: base.join("c"),
        addr: local,
        or_port: None,
    };
    let service = Node {
        name: "tnservice".into(),
        dir: base.join("s"),
        addr: local,
        or_port: None,
    };
    for n in [&client, &service] {
        std::fs::create_dir_all(&n.dir).map_err(|e| e.to_string())?;
    }
    spawn(
        &client,
        &format!("SocksPort 127.0.0.1:{socks}\nUseMicrodescriptors 0\n"),
        &mut pids,
    )?;
    // One static onion service: its first upload says the network serves onions.
    spawn(
        &service,
        &format!(
            "HiddenServiceDir {}/hs\nHiddenServiceVersion 3\nHiddenServicePort 80 127.0.0.1:{}\n\
             Log [rend]info file {}/rend.log\n",
            service.dir.display(),
            free_port(local)?,
            service.dir.display()
        ),
        &mut pids,
    )?;
    wait_for(READY_TIMEOUT, "the client's bootstrap", || {
        log_has(&client.dir.join("notice.log"), "Bootstrapped 100%")
    })?;
    wait_for(READY_TIMEOUT, "the first onion descriptor upload", || {
        log_has(
            &service.dir.join("rend.log"),
            "Uploading hidden service descriptor: finished with status 200",
        )
    })?;
    let onion = std::fs::read_to_string(service.dir.join("hs/hostname"))
        .map_err(|e| format!("onion hostname: {e}"))?;
    println!(
        "tor-net: consensus after {:.1} s, ready after {:.1} s",
        consensus_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // What a client other than tor (arti) needs: the authority's v3 identity, and every
    // relay as a fallback directory (RSA and ed25519 identities, OR port).
    let mut fallbacks = Vec::new();
    for (dir, addr, or) in &relays {
        let id = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|t| t.split_whitespace().nth(1).map(str::to_owned))
                .ok_or_else(|| format!("{}: no {file}", dir.display()))
        };
        fallbacks.push(format!(
            "{},{},{addr}:{or}",
            id("fingerprint")?,
            id("fingerprint-ed25519")?
        ));
    }
    Ok(format!(
        "SOCKS=127.0.0.1:{socks}\nCONTROL={}\nCLIENT_CONTROL={}\nONION={}\nPIDS={}\n\
         AUTHORITY_V3IDENT={v3ident}\nAUTHORITY_DIR={auth_addr}:{dir_port}\nFALLBACKS={}\n\
         HSDIR_INTERVAL_MINUTES={}\n",
        service.dir.join("control").display(),
        client.dir.join("control").display(),
        onion.trim(),
        pids_text(&pids),
        fallbacks.join(";"),
        // TestingTorNetwork: one time period = one shared-random run of 24 votes.
        24 * VOTING_INTERVAL_SECS / 60
    ))
}

fn pids_text(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn torrc_text(node: &Node, dir_authority: &str, owner: Option<u32>) -> String {
    let d = node.dir.display();
    let mut t = format!(
        "TestingTorNetwork 1\nDataDirectory {d}\nPidFile {d}/pid\nNickname {}\n\
         Log notice file {d}/notice.log\nRunAsDaemon 0\nSafeLogging 0\nShutdownWaitLength 0\n\
         {dir_authority}\nUseDefaultFallbackDirs 0\nAddress {a}\nAddressDisableIPv6 1\n\
         OutboundBindAddress {a}\nClientUseIPv6 0\nControlSocket {d}/control\n\
         CookieAuthentication 1\nPathsNeededToBuildCircuits 0.67\nTestingDirAuthVoteExit *\n\
         TestingDirAuthVoteHSDir *\nTestingDirAuthVoteGuard *\nTestingMinExitFlagThreshold 0\n\
         V3AuthNIntervalsValid 2\n",
        node.name,
        a = node.addr
    );
    if let Some(or) = node.or_port {
        let resolv = node.dir.join("resolv.conf");
        let _ = std::fs::write(&resolv, "nameserver 127.0.0.1\n");
        let _ = write!(
            t,
            "ORPort {}:{or}\nAssumeReachable 1\n\
             ServerDNSResolvConfFile {}\nServerDNSDetectHijacking 0\n",
            node.addr,
            resolv.display()
        );
    }
    if node.name != "tnclient" {
        t.push_str("SocksPort 0\n");
    }
    if let Some(pid) = owner {
        let _ = writeln!(t, "__OwningControllerProcess {pid}");
    }
    t
}

fn relay_fingerprint(node: &Node) -> Result<String, String> {
    let out = Command::new("tor")
        .args([
            "--list-fingerprint",
            "--ORPort",
            "127.0.0.1:1",
            "--DataDirectory",
        ])
        .arg(&node.dir)
        .args(["--Nickname", &node.name])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("tor --list-fingerprint: {e}"))?;
    if !out.status.success() {
        return Err("tor --list-fingerprint failed".into());
    }
    let text = std::fs::read_to_string(node.dir.join("fingerprint"))
        .map_err(|e| format!("fingerprint: {e}"))?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| "empty fingerprint file".to_owned())
}

/// Starts tor for `torrc` in its own process group; returns the PID from its PidFile.
fn launch(node: &Node, torrc: &Path) -> Result<u32, String> {
    // tor refuses a control socket in a directory others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&node.dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", node.dir.display()))?;
    let log = std::fs::File::create(node.dir.join("stdout.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("tor")
        .arg("-f")
        .arg(torrc)
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("tor: {e}"))?;
    let started = wait_pid(node, &mut child);
    if started.is_err() {
        // Not recorded yet: stop it here, or nothing will.
        let _ = child.kill();
        let _ = child.wait();
    }
    started
}

/// Waits for the PidFile of the tor just started as `child`; its PID.
fn wait_pid(node: &Node, child: &mut std::process::Child) -> Result<u32, String> {
    let pid_file = node.dir.join("pid");
    let mut exited = None;
    wait_for(Duration::from_secs(20), "tor's PidFile", || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        std::fs::read_to_string(&pid_file)
            .ok()
            .is_some_and(|p| p.trim().parse::<u32>().is_ok())
    })?;
    if let Some(status) = exited {
        let log = std::fs::read_to_string(node.dir.join("stdout.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        return Err(format!(
            "{} exited ({status}) at start:\n{}",
            node.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|_| "bad PidFile")?;
    if pid != child.id() {
        return Err(format!(
            "{}: PidFile {pid} is not the child {}",
            node.name,
            child.id()
        ));
    }
    Ok(pid)
}

fn consensus_ready(auth_dir: &Path, relays: usize) -> bool {
    let Ok(text) = std::fs::read_to_string(auth_dir.join("cached-consensus")) else {
        return false;
    };
    let flags: Vec<&str> = text.lines().filter(|l| l.starts_with("s ")).collect();
    flags.len() >= relays
        && flags
            .iter()
            .all(|l| l.contains(" Running") && l.contains(" HSDir"))
}

fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

/// Polls `ready` every 250 ms until it holds or `limit` passes (a file written by
/// another process: there is nothing to wait on but the file).
fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            return Err(format!("tor-net: no {what} within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn free_port(addr: std::net::Ipv4Addr) -> Result<u16, String> {
    let l = TcpListener::bind((addr, 0)).map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Stops the network `target/tor-net.env` points at.
pub(crate) fn down(root: &Path) -> Result<(), String> {
    let pointer = pointer(root);
    let Ok(text) = std::fs::read_to_string(&pointer) else {
        println!("tor-net: no network recorded ({})", pointer.display());
        return Ok(());
    };
    if let Some(env) = text.lines().find_map(|l| l.strip_prefix("ENV="))
        && let Some(dir) = Path::new(env).parent()
    {
        stop_dir(dir, true);
    }
    let _ = std::fs::remove_file(pointer);
    Ok(())
}

/// Stops the tors recorded under `dir` (only processes whose command line names
/// `dir`), then removes it (`remove`) or keeps it for its logs.
fn stop_dir(dir: &Path, remove: bool) {
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    let ours: Vec<u32> = pids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
        })
        .collect();
    let signal = |sig: &str, pids: &[u32]| {
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg(sig)
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
        }
    };
    signal("-TERM", &ours);
    // A zombie (a child of this process not yet reaped) has exited.
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    let _ = wait_for(Duration::from_secs(10), "exit", || !ours.iter().any(alive));
    let left: Vec<u32> = ours.iter().copied().filter(alive).collect();
    signal("-KILL", &left);
    if remove {
        let _ = std::fs::remove_dir_all(dir);
    }
    println!("tor-net: stopped {} tor process(es)", ours.len());
}
