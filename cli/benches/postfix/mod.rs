//! A private Postfix instance (`postfix -c DIR start-fg`) as the anchor of
//! the relay benchmark: same client, same upstream, same run. It needs the
//! Debian package `postfix` and root (Postfix drops to its `postfix`
//! user); the system's own Postfix, if any, is not touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Postfix relaying every message from loopback to one upstream.
pub struct PostfixRelay {
    dir: PathBuf,
    master: Child,
    pub port: u16,
}

impl PostfixRelay {
    /// Postfix listening on `port`, relaying to `127.0.0.1:upstream`; its
    /// queue in a fresh folder under `parent` (which Postfix's user must be
    /// able to enter).
    pub fn start(parent: &Path, port: u16, upstream: u16) -> PostfixRelay {
        let dir = parent.join(format!("postfix-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("postfix folders");
        }
        let status = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown postfix (run the bench as root)");
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
myhostname = postfix-bench.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{upstream}
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = /dev/stdout
default_process_limit = 100
",
            queue = dir.join("queue").display(),
            data = dir.join("data").display(),
        );
        std::fs::write(dir.join("etc/main.cf"), main_cf).expect("main.cf");
        // Debian's master.cf, with smtpd on our port and nothing chrooted
        // (a chroot would need copies of /etc files in the queue folder).
        let master =
            std::fs::read_to_string("/etc/postfix/master.cf").expect("/etc/postfix/master.cf");
        let master: String = master
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if line.starts_with(['#', ' ', '\t']) || fields.len() < 8 {
                    return line.to_owned();
                }
                let service = if fields[0] == "smtp" && fields[1] == "inet" {
                    format!("127.0.0.1:{port}")
                } else {
                    fields[0].to_owned()
                };
                let mut out = vec![service.as_str(), fields[1], fields[2], fields[3], "n"];
                out.extend_from_slice(&fields[5..]);
                out.join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("etc/master.cf"), master + "\n").expect("master.cf");
        let master = Command::new("postfix")
            .arg("-c")
            .arg(dir.join("etc"))
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postfix start-fg runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix listens on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PostfixRelay { dir, master, port }
    }

    /// Messages in its queue (files in incoming, active, deferred, maildrop).
    pub fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "maildrop", "hold"]
            .iter()
            .map(|q| count_files(&self.dir.join("queue").join(q)))
            .sum()
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("abort")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.master.kill();
        let _ = self.master.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
