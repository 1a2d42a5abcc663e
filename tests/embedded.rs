//! The zero-configuration path: `pgx apply && pgx status` with no DATABASE_URL starts
//! its own PostgreSQL, and stops it again.

mod common;

use common::*;

#[test]
fn apply_and_status_on_the_embedded_default_with_the_projects_migrations() {
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
