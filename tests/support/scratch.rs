//! A backup restored outside the model: its files fetched from the
//! repository into a scratch directory with the charm's own restore code,
//! checked by `pg_verifybackup`, and a server of its own started on them,
//! recovering from the archive to the backup's end and promoting. The
//! server stops when the [`Scratch`] is dropped.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use postgresql_charm::backup::settings::RepoSettings;
use postgresql_charm::backup::{catalog, repo::Repo, restore, wal};
use postgresql_charm::postgres::conf::{self, Profile, ServerSettings};
use postgresql_charm::postgres::os_user::{current_user_name, ServerUser};
use postgresql_charm::postgres::server::{Layout, Server};
use postgresql_charm::postgres::{binaries, sql::Db};

/// A restored backup and the server running on it.
pub struct Scratch {
    pub server: Server,
    pub data: PathBuf,
    pub address: IpAddr,
}

impl Scratch {
    /// Restores backup `id` into `dir/data` and starts a server on it at
    /// `address` (a loopback address of the caller's own); returns once the
    /// server has promoted.
    pub fn restore(dir: &Path, settings: &RepoSettings, id: &str, address: IpAddr) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.join("data");
        let repo = Repo::open(settings).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let record = rt
            .block_on(catalog::load(&repo, id))
            .unwrap()
            .expect("a record");
        let options = restore::Options {
            concurrency: 4,
            owner: None,
        };
        rt.block_on(restore::files(&repo, &record, &data, &options, &|_| ()))
            .unwrap_or_else(|e| panic!("cannot restore backup {id}: {e:#}"));

        let bin = binaries::find().unwrap().unwrap();
        let verify = Command::new(bin.program("pg_verifybackup"))
            .arg("-n")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "pg_verifybackup refused {id}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );

        // A server of its own on the copy, recovering from the archive.
        let user = ServerUser::detect().unwrap();
        Command::new("chown")
            .args(["-R", &format!("{}:{}", user.uid, user.gid)])
            .arg(dir)
            .status()
            .unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let server = Server::new(bin, Layout::new(dir), user);
        server.prepare_dirs().unwrap();
        let (socket, logs) = (server.layout.socket_dir(), server.layout.log_dir());
        let settings_file = dir.join("s3.json");
        settings.save(&settings_file, &server.user).unwrap();
        let charm = dir.join("postgresql-charm");
        std::fs::copy(env!("CARGO_BIN_EXE_postgresql-charm"), &charm).unwrap();
        std::fs::set_permissions(&charm, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut conf_text = conf::render_postgresql_conf(&ServerSettings {
            listen_address: address,
            socket_dir: &socket,
            log_dir: &logs,
            profile: Profile::Testing,
            memory_bytes: 0,
            archive_command: "/bin/true",
            standby: None,
            tls: None,
            recovery: None,
        });
        conf_text.push_str(&format!(
            "restore_command = {}\nrecovery_target = 'immediate'\n\
             recovery_target_action = 'promote'\nmax_connections = 200\n",
            conf::quote(&wal::restore_command(&charm, &settings_file, None))
        ));
        server.write_config("postgresql.conf", &conf_text).unwrap();
        server
            .write_config(
                "pg_ident.conf",
                &conf::render_pg_ident(&current_user_name().unwrap()),
            )
            .unwrap();
        server
            .user
            .write_file(&data.join("recovery.signal"), b"", 0o600)
            .unwrap();
        let scratch = Self {
            server,
            data,
            address,
        };
        scratch.start();
        let db = scratch.db();
        let mut waited = 0;
        while db.is_in_recovery().unwrap() && waited < 600 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            waited += 1;
        }
        assert!(
            !db.is_in_recovery().unwrap(),
            "recovery from backup {id} never ended"
        );
        scratch
    }

    /// Starts the server (again); panics with its log when it does not start.
    pub fn start(&self) {
        if let Err(e) = self.server.start() {
            let mut log = String::new();
            let logs = self.server.layout.log_dir();
            for entry in std::fs::read_dir(&logs).unwrap().flatten() {
                log.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
            panic!("a server on a restored backup did not start: {e:#}\n{log}");
        }
    }

    /// A connection over the server's socket, as the charm connects.
    pub fn db(&self) -> Db {
        Db::local_peer(&self.server.layout.socket_dir()).unwrap()
    }

    /// `pg_checksums --check` on the data directory, with the server
    /// stopped cleanly first and started again after.
    pub fn assert_checksums(&self) {
        self.server.stop().unwrap();
        let out = self
            .server
            .user
            .command(self.server.bin.program("pg_checksums"))
            .arg("--check")
            .arg("-D")
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_checksums --check: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.start();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.server.stop();
    }
}
