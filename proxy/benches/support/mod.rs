//! What the proxy's benches share: nginx with one worker from a config, and wrk runs.
#![allow(dead_code, reason = "each bench uses part of it")]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use tidewell_testkit::bench::WrkReport;

pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An nginx master with one worker, stopped on drop.
pub(crate) struct Nginx {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx with one worker, `http { … }` holding `http_body` (`{dir}` in it is replaced by its
    /// own directory, `{port}` by the port it listens on); answers once the port accepts.
    pub(crate) fn start(name: &str, http_body: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tidewell-bench-nginx-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let body = http_body
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &port.to_string());
        let conf = format!(
            r#"worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{body}
}}
"#,
            dir = dir.display()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .spawn()
            .expect("nginx on PATH (apt-get install nginx-light)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }
}

/// One wrk run (`-t1 -c32 -d3s --latency`) against `url`, with `extra` arguments.
pub(crate) fn wrk(url: &str, extra: &[&str]) -> WrkReport {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", "-d3s", "--latency"])
        .args(extra)
        .arg(url)
        .output()
        .expect("wrk on PATH (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    WrkReport::parse(&text).unwrap_or_else(|| panic!("cannot read wrk output: {text}"))
}
