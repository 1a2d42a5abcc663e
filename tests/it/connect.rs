//! Connections to a separately started server over TCP with TLS and password
//! authentication, as a user with a managed database would meet them: sslmode from the
//! URL and from PGSSLMODE, verify-ca / verify-full against a CA, the password file, and
//! failures that say what happened without showing the password.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const PASSWORD: &str = "tls-s3cret-pw";

/// A PostgreSQL of its own listening on 127.0.0.1 with ssl = on and scram passwords.
struct TlsServer {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
}

fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam's result is read at once.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root needs a postgres user");
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pgx-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let run_as = postgres_account();
        let server = TlsServer {
            port: free_port(),
            bindir: pgx::cluster::find_bindir().unwrap(),
            dir,
            run_as,
        };
        server.make_certificates();
        server.chown_all();
        run(server
            .server_command("initdb")
            .arg("-D")
            .arg(server.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"]));
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c ssl=on \
             -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            server.port,
            server.dir.join("run").display(),
            server.dir.join("server.crt").display(),
            server.dir.join("server.key").display()
        );
        run(server
            .server_command("pg_ctl")
            .arg("-D")
            .arg(server.dir.join("data"))
            .arg("-l")
            .arg(server.dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]));
        let mut admin = server.admin();
        admin
            .batch_execute(&format!("CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'"))
            .unwrap();
        admin
            .batch_execute("CREATE DATABASE app OWNER app")
            .unwrap();
        server
    }

    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir).env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn make_certificates(&self) {
        let openssl =
            |args: &[&str]| run(Command::new("openssl").current_dir(&self.dir).args(args));
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=pgx test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            self.dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        std::fs::set_permissions(
            self.dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    fn chown_all(&self) {
        if let Some((uid, gid)) = self.run_as {
            for entry in [".", "run", "server.key", "server.crt", "ca.crt"] {
                std::os::unix::fs::chown(self.dir.join(entry), Some(uid), Some(gid)).unwrap();
            }
        }
    }

    fn admin(&self) -> postgres::Client {
        let mut config = postgres::Config::new();
        config
            .host_path(self.dir.join("run"))
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config.connect(postgres::NoTls).unwrap()
    }

    fn ca(&self) -> String {
        self.dir.join("ca.crt").display().to_string()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pgx apply` of a migration that records whether its own session is encrypted.
fn apply_recording_tls(envs: &[(&str, String)], table: &str) -> std::process::Output {
    let project = migrations(&[(
        "V1__seen.sql",
        &format!(
            "CREATE TABLE {table} AS SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();\n"
        ),
    )]);
    let mut cmd = pgx_command(project.path());
    cmd.env("HOME", project.path()).arg("apply");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn tls_sslmodes_password_file_and_connection_errors_against_a_real_server() {
    let server = TlsServer::start();
    let port = server.port;

    // sslmode=require in the URL.
    let url = format!("postgresql://app:{PASSWORD}@127.0.0.1:{port}/app?sslmode=require");
    let out = apply_recording_tls(&[("DATABASE_URL", url)], "seen_url");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut app = {
        let mut config = postgres::Config::new();
        config
            .host_path(server.dir.join("run"))
            .port(port)
            .user("postgres")
            .dbname("app");
        config.connect(postgres::NoTls).unwrap()
    };
    let ssl: bool = app
        .query_one("SELECT ssl FROM seen_url", &[])
        .unwrap()
        .get(0);
    assert!(ssl, "sslmode=require in the URL encrypts");
    app.batch_execute("DROP TABLE seen_url; DROP TABLE refinery_schema_history")
        .unwrap();

    // PGSSLMODE=require, password from PGPASSWORD.
    let envs = [
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", port.to_string()),
        ("PGUSER", "app".to_string()),
        ("PGDATABASE", "app".to_string()),
        ("PGPASSWORD", PASSWORD.to_string()),
        ("PGSSLMODE", "require".to_string()),
    ];
    let out = apply_recording_tls(&envs, "seen_env");
    assert!(out.status.success(), "{}", stderr(&out));
    let ssl: bool = app
        .query_one("SELECT ssl FROM seen_env", &[])
        .unwrap()
        .get(0);
    assert!(ssl, "PGSSLMODE=require encrypts");
    app.batch_execute("DROP TABLE seen_env; DROP TABLE refinery_schema_history")
        .unwrap();

    // verify-full against the CA, host name in the certificate; password from PGPASSFILE.
    let pgpass = server.dir.join("pgpass");
    std::fs::write(
        &pgpass,
        format!("# test\nlocalhost:{port}:app:app:{PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!(
        "postgresql://app@localhost:{port}/app?sslmode=verify-full&sslrootcert={}",
        server.ca()
    );
    let out = apply_recording_tls(
        &[
            ("DATABASE_URL", url),
            ("PGPASSFILE", pgpass.display().to_string()),
        ],
        "seen_full",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ssl: bool = app
        .query_one("SELECT ssl FROM seen_full", &[])
        .unwrap()
        .get(0);
    assert!(ssl);
    app.batch_execute("DROP TABLE seen_full; DROP TABLE refinery_schema_history")
        .unwrap();

    // verify-full to an address the certificate does not name fails, and says TLS.
    let url = format!(
        "postgresql://app:{PASSWORD}@127.0.0.1:{port}/app?sslmode=verify-full&sslrootcert={}",
        server.ca()
    );
    let out = apply_recording_tls(&[("DATABASE_URL", url.clone())], "seen_wrong_name");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("TLS failed with 127.0.0.1:"), "{err}");
    assert!(!err.contains(PASSWORD), "password leaked: {err}");
    // verify-ca checks the chain only, so the same address is fine.
    let url = url.replace("verify-full", "verify-ca");
    let out = apply_recording_tls(&[("DATABASE_URL", url)], "seen_ca");
    assert!(out.status.success(), "{}", stderr(&out));
    app.batch_execute("DROP TABLE seen_ca; DROP TABLE refinery_schema_history")
        .unwrap();

    // A wrong password: the server's message and a hint, never the password.
    let url = format!("postgresql://app:Wr0ngPassw0rd@127.0.0.1:{port}/app?sslmode=require");
    let out = apply_recording_tls(&[("DATABASE_URL", url)], "never");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("password authentication failed for user \"app\""),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("pgpass"),
        "{err}"
    );
    assert!(!err.contains("Wr0ngPassw0rd"), "password leaked: {err}");

    // A password file others can read is ignored with a warning, as libpq does.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("postgresql://app@localhost:{port}/app?sslmode=require");
    let out = apply_recording_tls(
        &[
            ("DATABASE_URL", url),
            ("PGPASSFILE", pgpass.display().to_string()),
        ],
        "never",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("permissions should be u=rw"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(PASSWORD));
}

#[test]
fn connection_failures_say_refused_no_such_host_or_timeout_and_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let status = |url: &str| {
        let out = pgx_command(dir.path())
            .env("DATABASE_URL", url)
            .arg("status")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = stderr(&out);
        assert!(!err.contains("hunter2"), "password leaked: {err}");
        assert!(err.contains("hint:"), "{err}");
        err
    };
    // Refused: a port nothing listens on.
    let port = free_port();
    let err = status(&format!("postgresql://u:hunter2@127.0.0.1:{port}/db"));
    assert!(
        err.contains("connection refused") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // No such host (.invalid never resolves).
    let err = status("postgresql://u:hunter2@no-such-host.invalid:5432/db");
    assert!(
        err.contains("no such host") && err.contains("no-such-host.invalid:5432"),
        "{err}"
    );
    // Timed out: a listener whose backlog is full drops the SYN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: listen(2) again on our own socket only changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    }
    let port = listener.local_addr().unwrap().port();
    let _filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let err = status(&format!(
        "postgresql://u:hunter2@127.0.0.1:{port}/db?connect_timeout=1"
    ));
    assert!(
        err.contains("timed out after 1 s") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // A bad URL says which part.
    let err = status("postgresql://u:hunter2@h:notaport/db");
    assert!(err.contains("invalid value for option `port`"), "{err}");
    let err = status("postgresql://u:hunter2@h/db?sslmod=require");
    assert!(
        err.contains("unknown option `sslmod`") && err.contains("sslmode"),
        "{err}"
    );
    let err = status("postgresql://u:hunter2@h/db?sslmode=verify-everything");
    assert!(
        err.contains("verify-everything") && err.contains("verify-full"),
        "{err}"
    );
}
