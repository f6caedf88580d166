//! A real PostgreSQL cluster for the tests: started once per test process
//! on first use (`initdb` into a temporary directory, the server on a free
//! loopback port, run as the `postgres` user when the tests run as root),
//! each test taking a database of its own. A watchdog stops the server and
//! removes its directory when the test process ends, however it ends.
//!
//! The server binaries are found under /usr/lib/postgresql/*/bin (Debian's
//! packages) or on PATH; `.ci/run` installs them where they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use warden::config::Database;

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    /// The server's options, for starting it again.
    options: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TLS_CLUSTER: OnceLock<(Cluster, String)> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The test process's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start(None))
}

/// A second cluster that also accepts TLS, with a certificate for
/// 127.0.0.1 and localhost from a CA made for it; and that CA (PEM).
pub fn tls_cluster() -> &'static (Cluster, String) {
    TLS_CLUSTER.get_or_init(|| {
        let ca = warden::pki::dev::TestCa::mtls_ca("warden test database CA").unwrap();
        let leaf = ca
            .server_cert(
                &["localhost"],
                &[std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
            )
            .unwrap();
        (
            Cluster::start(Some((&leaf.cert_pem, &leaf.key_pem))),
            ca.cert_pem(),
        )
    })
}

fn server_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    found.sort();
    if let Some(newest) = found.pop() {
        return newest;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v postgres"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match which.and_then(|p| p.parent().map(Path::to_path_buf)) {
        Some(dir) => dir,
        None => panic!(
            "no PostgreSQL server binaries (postgres, initdb) under /usr/lib/postgresql or on \
             PATH; install them (Debian: apt-get install postgresql) or run .ci/run, which does"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when running as root (the
/// server refuses to run as root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A shell command line, run as the `postgres` user when running as root.
fn as_server_user_sh(command: String) -> String {
    if is_root() {
        format!("runuser -u postgres -- {command}")
    } else {
        command
    }
}

impl Cluster {
    /// Starts a cluster; with `tls` (certificate and key, PEM), one that
    /// also accepts TLS.
    fn start(tls: Option<(&str, &str)>) -> Cluster {
        let bin = server_bin();
        let dir = std::env::temp_dir().join(format!(
            "warden-test-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot hand {} to the postgres user", dir.display());
        }
        let data = dir.join("data");
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ssl = String::new();
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (data.join("server.crt"), data.join("server.key"));
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let ok = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&cert_file)
                    .arg(&key_file)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "cannot hand the TLS files to the postgres user");
            }
            ssl = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_file.display(),
                key_file.display()
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} \
             -c max_connections=500 -c shared_buffers=128MB{ssl}",
            data = data.display(),
        );
        // The watchdog stops the server and removes the directory once this
        // test process is gone, however it ends.
        let stop = as_server_user_sh(format!(
            "{} stop -D {} -m immediate",
            bin.join("pg_ctl").display(),
            data.display()
        ));
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             {stop} >/dev/null 2>&1; rm -rf {dir}",
            parent = std::process::id(),
            dir = dir.display(),
        );
        // Never waited for: it outlives this process by design, and is
        // reaped by init once it has stopped the server.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let cluster = Cluster {
            port,
            dir,
            bin,
            options,
        };
        cluster.start_server();
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let log = self.dir.join("server.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-l",
            &log.display().to_string(),
            "-o",
            &self.options,
        ]);
        self.wait_ready();
    }

    /// Stops the server, as an outage would, without waiting for clients.
    pub fn stop_server(&self) {
        self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
    }

    /// A cluster of its own, for a test that stops and starts it.
    pub fn own() -> Cluster {
        Cluster::start(None)
    }

    /// Polls until the server accepts connections (bounded, so a server
    /// that never starts fails the test with its log).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 60 s:\n{}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the client tool `tool` (psql, pg_dump) against the cluster as
    /// its superuser with `args`; its standard output.
    fn client(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(self.bin.join(tool))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new, empty database of its own.
    pub fn database(&self) -> Database {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let create = format!("CREATE DATABASE {name}");
        self.client("psql", &["-d", "postgres", "-q", "-c", &create]);
        self.named(&name)
    }

    /// Runs `statement` in database `name`, as the superuser.
    pub fn sql(&self, name: &str, statement: &str) {
        self.client("psql", &["-d", name, "-q", "-c", statement]);
    }

    /// Everything in database `name`, as `pg_dump` writes it.
    pub fn dump(&self, name: &str) -> String {
        self.client("pg_dump", &[name])
    }

    /// The `[store]` settings of database `name`.
    pub fn named(&self, name: &str) -> Database {
        warden::config::StoreConfig {
            engine: warden::config::Engine::Postgres,
            url: Some(format!(
                "postgresql://postgres@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            )),
            ..Default::default()
        }
        .database()
        .unwrap()
    }
}
