//! The zero-configuration path: `pgx apply && pgx status` with no DATABASE_URL starts
//! its own PostgreSQL, and stops it again.

use crate::common::*;

#[test]
fn apply_and_status_on_the_embedded_default_with_the_projects_migrations() {
    let _shared = shared();
    let project = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir(repo.join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            project
                .path()
                .join("migrations")
                .join(path.file_name().unwrap()),
        )
        .unwrap();
        count += 1;
    }
    assert!(count >= 5, "the seeds' schemas are migrations");

    let out = pgx_command(project.path()).arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "applied {count} migration(s) to embedded PostgreSQL"
        )),
        "{}",
        stdout(&out)
    );

    let out = pgx_command(project.path()).arg("status").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).matches("┆ applied ┆").count(),
        count,
        "{}",
        stdout(&out)
    );

    // Started on demand, so stopped again on exit.
    let out = pgx_command(project.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("state: stopped"), "{}", stdout(&out));

    // The extensions experiments rely on are usable in it.
    let out = pgx_command(project.path())
        .args(["cluster", "start"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cluster = pgx::cluster::Cluster::new(&project.path().join("target/pgx-cluster")).unwrap();
    let mut client = pgx::target::connect(&cluster.config("pgx")).unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE EXTENSION IF NOT EXISTS pgstattuple; CREATE EXTENSION IF NOT EXISTS btree_gin;")
        .unwrap();
    drop(client);
    let out = pgx_command(project.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("state: running"),
        "`cluster start` keeps it running: {}",
        stdout(&out)
    );
    let out = pgx_command(project.path())
        .args(["cluster", "destroy"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!project.path().join("target/pgx-cluster").exists());
}

#[test]
fn stale_pid_file_does_not_wedge_the_cluster() {
    let _shared = shared();
    let root = tempfile::tempdir().unwrap();
    let cluster = pgx::cluster::Cluster::new(&root.path().join("c")).unwrap();
    cluster.start().unwrap();
    cluster.stop().unwrap();
    // A crash leaves postmaster.pid naming a pid that is now something else (pid 1).
    let pid_file = cluster.data_dir().join("postmaster.pid");
    std::fs::write(&pid_file, "1\n").unwrap();
    cluster.start().unwrap();
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Running);
    cluster.destroy().unwrap();
}

#[test]
fn bad_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let out = pgx_command(dir.path())
        .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

/// A process that looks like a postmaster to a careless check: its command line says
/// `postgres`. Run as the account the server runs as, so that signalling it would work.
fn fake_postgres() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", "exec -a postgres sleep 600"]);
    // SAFETY: geteuid and getpwnam only read; the record is read at once.
    if unsafe { libc::geteuid() } == 0 {
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            cmd.uid(uid).gid(gid);
        }
    }
    cmd.spawn().unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Issue 23: a stale `postmaster.pid` naming another live process (one whose command
/// line says postgres, or another cluster's postmaster) is not taken for a running
/// cluster, and `pgx cluster stop` never signals it.
#[test]
fn a_stale_pid_file_naming_another_live_process_is_neither_believed_nor_signalled() {
    let own = OwnCluster::new("stale-pid");
    let dir = tempfile::tempdir().unwrap();
    let pgx = |args: &[&str]| {
        pgx_command(dir.path())
            .arg("--data-dir")
            .arg(&own.0)
            .args(args)
            .output()
            .unwrap()
    };
    let out = pgx(&["cluster", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cluster = pgx::cluster::Cluster::new(&own.0).unwrap();

    // The shared test server's postmaster: a real postgres, of another data directory.
    let shared = server();
    let shared_pid: i32 =
        std::fs::read_to_string(shared.cluster().data_dir().join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let mut fake = fake_postgres();
    let fake_pid = fake.id() as i32;
    for pid in [fake_pid, shared_pid] {
        std::fs::write(
            cluster.data_dir().join("postmaster.pid"),
            format!("{pid}\n{}\n", cluster.data_dir().display()),
        )
        .unwrap();
        // The socket a crash leaves behind, so only the pid decides.
        std::fs::write(cluster.socket_dir().join(".s.PGSQL.5432"), "").unwrap();
        let out = pgx(&["cluster", "status"]);
        assert_eq!(out.status.code(), Some(3), "pid {pid}: {}", stdout(&out));
        assert!(stdout(&out).contains("state: stopped"), "{}", stdout(&out));
        let out = pgx(&["cluster", "stop"]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(alive(pid), "pid {pid} was signalled by `pgx cluster stop`");
        assert!(alive(fake_pid) && alive(shared_pid));
    }
    // Starting over the stale file works, and stopping stops only the real server.
    let out = pgx(&["cluster", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Running);
    let out = pgx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Stopped);
    assert!(alive(fake_pid) && alive(shared_pid));
    let _ = fake.kill();
    let _ = fake.wait();
}
