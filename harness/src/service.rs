//! A real HAProxy as a Kubernetes Service: `mode tcp` with `balance random` (kube-proxy sends each new connection to
//! an endpoint picked at random), readiness checked on `/ready` when asked (an endpoints controller drops a pod that
//! fails it), and servers given an address, enabled and disabled over the runtime API as pods come and go. The one way
//! anything here starts it: the closed loop and the generator's tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Service {
    child: Child,
    pub port: u16,
    pub url: String,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// One server per slot: `Some(port)` serving from the start, `None` a disabled slot (as an endpoint list omits a
    /// pod not started yet) that `set_port` and `enable` fill later. With `readiness`, each server's `/ready` is
    /// checked at that interval and one failure takes it out; without, every enabled server takes connections.
    pub fn start(slots: &[Option<u16>], readiness: Option<Duration>) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| format!("a directory for haproxy: {e}"))?;
        let socket = dir.path().join("admin.sock");
        let mut config = format!(
            "global\n  maxconn 4096\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n\
             frontend service\n  bind 127.0.0.1:{port}\n  default_backend pods\n\
             backend pods\n  balance random\n",
            socket.display()
        );
        let check = match readiness {
            Some(every) => {
                config.push_str("  option httpchk GET /ready\n  http-check expect status 200\n");
                config.push_str(&format!("  default-server inter {}ms fall 1 rise 1\n", every.as_millis().max(1)));
                " check"
            }
            None => "",
        };
        for (index, slot) in slots.iter().enumerate() {
            match slot {
                Some(pod) => config.push_str(&format!("  server pod{index} 127.0.0.1:{pod}{check}\n")),
                None => config.push_str(&format!("  server pod{index} 127.0.0.1:1{check} disabled\n")),
            }
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("haproxy is not installed (scripts/install-tools.sh installs it)")?;
        let child = Command::new(binary)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("haproxy: {e}"))?;
        let service = Self { child, port, url: format!("http://127.0.0.1:{port}"), socket, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&service.socket).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            if Instant::now() > deadline {
                return Err(format!("haproxy did not listen on {port} within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(service)
    }

    /// One command on the runtime API; its answer.
    fn admin(&self, command: &str) -> Result<String, String> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| format!("haproxy socket: {e}"))?;
        writeln!(stream, "{command}").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        Ok(answer)
    }

    /// A command that answers nothing when it works.
    fn quiet(&self, command: &str) -> Result<(), String> {
        let answer = self.admin(command)?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("haproxy {command:?}: {}", answer.trim()))
        }
    }

    /// The pod's endpoint is listed: new connections may go to it (once its readiness passes, when checked).
    pub fn enable(&self, slot: usize) -> Result<(), String> {
        self.quiet(&format!("enable server pods/pod{slot}"))
    }

    /// The pod's endpoint is removed: no new connection goes to it.
    pub fn disable(&self, slot: usize) -> Result<(), String> {
        self.quiet(&format!("disable server pods/pod{slot}"))
    }

    /// Points a slot at a pod's port (a replacement that chose its own).
    pub fn set_port(&self, slot: usize, port: u16) -> Result<(), String> {
        let answer = self.admin(&format!("set server pods/pod{slot} addr 127.0.0.1 port {port}"))?;
        if answer.contains("changed") {
            Ok(())
        } else {
            Err(format!("haproxy set server addr: {}", answer.trim()))
        }
    }

    /// Whether the slot is up as the readiness checks see it.
    pub fn is_up(&self, slot: usize) -> bool {
        let Ok(state) = self.admin("show servers state pods") else { return false };
        let name = format!("pod{slot}");
        let line = state.lines().find(|l| l.split_whitespace().nth(3) == Some(name.as_str()));
        // The operational state column: 2 is up.
        line.and_then(|l| l.split_whitespace().nth(5)).is_some_and(|op_state| op_state == "2")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
