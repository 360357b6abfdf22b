//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! folder, `pg_ctl start` on a free loopback port, `pg_ctl stop -m
//! immediate` and the folder removed on drop.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI), the
//! server's programs run as `nobody`, owning the temporary folder; otherwise
//! as the current user. Loopback TCP connections authenticate with
//! SCRAM-SHA-256 (so a wrong password fails as it would in production);
//! the Unix socket in the temporary folder trusts the superuser, for
//! [`PgServer::psql`].

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::net::unused_port;

/// The superuser `initdb` creates (reachable through the socket only).
const SUPERUSER: &str = "postgres";

/// The role [`PgServer::url`] logs in as.
const USER: &str = "mailgate";

/// The database [`PgServer::url`] names, owned by [`USER`].
const DATABASE: &str = "mailgate";

/// A running PostgreSQL server of its own, in a temporary folder.
///
/// ```no_run
/// use mailgate_integration_tests::PgServer;
///
/// let server = PgServer::start();
/// let url = server.url(); // postgres://mailgate:PASSWORD@127.0.0.1:PORT/mailgate
/// server.psql(server.database(), "SELECT 1");
/// // ... dropped: stopped, and its folder removed
/// ```
pub struct PgServer {
    /// Removed on drop, after the server stopped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    /// Who runs the server's programs: `nobody` when the tests run as root.
    run_as: Option<(u32, u32)>,
    started_in: Duration,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Creates and starts a server, with a role `mailgate` (a random
    /// password) owning a database `mailgate`. Takes about a second.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed or does not start, with the output
    /// of `initdb`, `pg_ctl` and the server's log: a test that needs it
    /// fails, it is never skipped.
    pub fn start() -> PgServer {
        let started = Instant::now();
        let bin = find_bin();
        let run_as = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("mailgate-pg-")
            .tempdir_in(temp_base(run_as.is_some()))
            .expect("creating a temporary folder for PostgreSQL");
        let password = random_password();
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            password,
            run_as,
            started_in: Duration::ZERO,
        };
        server.init();
        server.launch();
        server.psql(
            "postgres",
            &format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{}'",
                server.password.replace('\'', "''")
            ),
        );
        server.psql(
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
        );
        server.started_in = started.elapsed();
        server
    }

    /// `postgres://mailgate:PASSWORD@127.0.0.1:PORT/mailgate`.
    pub fn url(&self) -> String {
        self.url_for(USER, &self.password, DATABASE)
    }

    /// A URL for any role, password and database of this server.
    pub fn url_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The role of [`PgServer::url`].
    pub fn user(&self) -> &str {
        USER
    }

    /// Its password (random per server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The database of [`PgServer::url`].
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// How long [`PgServer::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Creates another empty database owned by the `mailgate` role; its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{name}\" OWNER {USER}"),
        );
        self.url_for(USER, &self.password, name)
    }

    /// Runs `sql` as the superuser in `database` (through the socket) and
    /// returns what it printed, unaligned and without headers, trimmed.
    ///
    /// # Panics
    ///
    /// When the statement fails, with psql's output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.arg("-X")
            .arg("-q")
            .arg("-A")
            .arg("-t")
            .args(["-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-c", sql]);
        let out = self.run(cmd);
        if !out.status.success() {
            panic!(
                "psql -c {sql:?} on the test PostgreSQL failed ({}):\n{}",
                out.status,
                output_text(&out)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A command of the server's, as the unprivileged user when root.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        // Its own folder: `nobody` may not enter the test's working folder.
        cmd.current_dir(self.dir.path());
        cmd.env("LC_ALL", "C").env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            // std drops the supplementary groups when it changes the uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, mut cmd: Command) -> Output {
        let shown = format!("{cmd:?}");
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
    }

    fn init(&self) {
        let root = self.dir.path();
        fs::create_dir(self.socket_dir()).expect("creating the socket folder");
        fs::set_permissions(self.socket_dir(), fs::Permissions::from_mode(0o700))
            .expect("chmod of the socket folder");
        if let Some((uid, gid)) = self.run_as {
            for path in [root, &self.socket_dir()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to nobody: {e}", path.display()));
            }
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args([
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]);
        let out = self.run(cmd);
        if !out.status.success() {
            panic!(
                "initdb for a test PostgreSQL failed ({}):\n{}",
                out.status,
                output_text(&out)
            );
        }
    }

    /// Starts the server on a free port, trying another when the one
    /// picked was taken meanwhile (tests start servers in parallel).
    fn launch(&mut self) {
        let mut last = String::new();
        for _ in 0..5 {
            self.port = unused_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB \
                 -c max_connections=100 -c max_wal_size=256MB",
                self.port,
                self.socket_dir().display()
            );
            let mut cmd = self.command("pg_ctl");
            cmd.arg("start")
                .arg("-w")
                .args(["-t", "60"])
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_file())
                .arg("-o")
                .arg(options);
            let out = self.run(cmd);
            if out.status.success() {
                return;
            }
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            last = format!(
                "pg_ctl start ({}):\n{}\nserver log {}:\n{log}",
                out.status,
                output_text(&out),
                self.log_file().display()
            );
            if !log.contains("already in use") {
                break;
            }
        }
        panic!("a test PostgreSQL did not start: {last}");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .args(["-m", "immediate", "-w", "-t", "30"])
            .arg("-D")
            .arg(self.data_dir());
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the test PostgreSQL in {} failed ({}):\n{}",
                self.dir.path().display(),
                out.status,
                output_text(&out)
            ),
            Err(e) => eprintln!("cannot run pg_ctl stop: {e}"),
        }
        // The temporary folder goes with `self.dir`.
    }
}

/// stdout and stderr of a finished command, for a panic message.
fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The newest `/usr/lib/postgresql/*/bin` holding `initdb` and `pg_ctl`
/// (`PG_BIN` overrides).
fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin with initdb and pg_ctl \
             (install postgresql, or set PG_BIN to the folder holding them)"
        ),
    }
}

/// `nobody`'s uid and gid when this process is root, else `None`.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = c"nobody";
    // SAFETY: a NUL-terminated name; the returned record is read at once,
    // before any other getpw* call of this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Some((65534, 65534));
    }
    // SAFETY: non-null, points to a static passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

/// Where the temporary folder goes: the usual one, unless `nobody` could
/// not reach into it.
fn temp_base(for_nobody: bool) -> PathBuf {
    let base = std::env::temp_dir();
    if for_nobody && !world_searchable(&base) {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

fn world_searchable(path: &Path) -> bool {
    path.ancestors().all(|p| {
        p.as_os_str() == OsStr::new("")
            || fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// A password no test could guess or find by accident.
fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("pw-{:016x}", h.finish())
}
