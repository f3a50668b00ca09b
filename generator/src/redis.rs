//! A Redis client as small as the watch table needs: one connection per reading, commands as RESP arrays, replies
//! parsed into `surge_keda::redis_streams::Reply`, so a redis-streams trigger is read as KEDA's scaler reads it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use surge_keda::redis_streams::{RedisStreams, Reply};

/// Longest wait to connect, or for one reply: a reading must not hold up the table.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Longest bulk string or array taken from a reply: INFO is a few KiB, XINFO GROUPS one array per group.
const MOST_BYTES: usize = 1 << 20;

/// Where Redis is: `redis://[:password@]host:port`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redis {
    address: String,
    password: Option<String>,
}

impl Redis {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest =
            url.strip_prefix("redis://").ok_or_else(|| format!("--redis {url:?}: redis://[:password@]host:port"))?;
        let (password, address) = match rest.rsplit_once('@') {
            Some((credentials, address)) => {
                let password = credentials.rsplit(':').next().unwrap_or(credentials);
                ((!password.is_empty()).then(|| password.to_owned()), address)
            }
            None => (None, rest),
        };
        let address = address.trim_end_matches('/');
        if !address.contains(':') {
            return Err(format!("--redis {url:?}: a host and a port, like redis://redis.surge.svc:6379"));
        }
        Ok(Self { address: address.to_owned(), password })
    }

    /// A connection, authenticated when a password is given.
    fn connect(&self) -> Result<Session, String> {
        let socket = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("redis {}: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("redis {}: no address", self.address))?;
        let stream =
            TcpStream::connect_timeout(&socket, TIMEOUT).map_err(|e| format!("redis {}: {e}", self.address))?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
        let mut session = Session { reader: BufReader::new(stream) };
        if let Some(password) = &self.password {
            if let Reply::Error(e) = session.ask(&["AUTH", password])? {
                return Err(format!("redis AUTH: {e}"));
            }
        }
        Ok(session)
    }
}

impl Redis {
    /// What KEDA's redis-streams scaler reads for `scaler`, on a connection of its own.
    pub fn stream_count(&self, scaler: &RedisStreams) -> Result<f64, String> {
        let mut session = self.connect()?;
        scaler.count(&mut |args| session.ask(args))
    }
}

/// One open connection.
struct Session {
    reader: BufReader<TcpStream>,
}

impl Session {
    /// Sends one command and reads its reply; an `Err` when Redis is not reached or answers outside RESP.
    fn ask(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request).map_err(|e| format!("redis {args:?}: {e}"))?;
        read_reply(&mut self.reader).map_err(|e| format!("redis {args:?}: {e}"))
    }
}

/// One RESP2 reply from `reader`.
fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.strip_suffix("\r\n").ok_or("the connection closed mid-reply")?;
    let (kind, rest) = line.split_at_checked(1).ok_or("an empty reply line")?;
    let length = || -> Result<Option<usize>, String> {
        let n: i64 = rest.parse().map_err(|_| format!("a length, not {rest:?}"))?;
        let n = usize::try_from(n).ok();
        if n.is_some_and(|n| n > MOST_BYTES) {
            return Err(format!("a reply of {rest} is more than this client takes"));
        }
        Ok(n)
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest.parse().map(Reply::Integer).map_err(|_| format!("an integer, not {rest:?}")),
        "$" => match length()? {
            None => Ok(Reply::Bulk(None)),
            Some(n) => {
                let mut bytes = vec![0; n + 2];
                reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
                bytes.truncate(n);
                Ok(Reply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned())))
            }
        },
        "*" => match length()? {
            None => Ok(Reply::Array(None)),
            Some(n) => {
                (0..n).map(|_| read_reply(reader)).collect::<Result<_, _>>().map(|items| Reply::Array(Some(items)))
            }
        },
        other => Err(format!("not RESP2: a reply starting {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_resp2_writes_them() {
        // (bytes on the wire, the reply)
        let cases = [
            ("+OK\r\n", Reply::Simple("OK".into())),
            ("-ERR no such key\r\n", Reply::Error("ERR no such key".into())),
            (":42\r\n", Reply::Integer(42)),
            ("$5\r\nhe\r\no\r\n", Reply::Bulk(Some("he\r\no".into()))),
            ("$-1\r\n", Reply::Bulk(None)),
            ("*-1\r\n", Reply::Array(None)),
            (
                "*3\r\n:1\r\n*1\r\n$1\r\na\r\n$-1\r\n",
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Array(Some(vec![Reply::Bulk(Some("a".into()))])),
                    Reply::Bulk(None),
                ])),
            ),
        ];
        for (wire, reply) in cases {
            assert_eq!(read_reply(&mut wire.as_bytes()), Ok(reply), "{wire:?}");
        }
        for broken in ["", ":4x\r\n", "?1\r\n", "*2\r\n:1\r\n", "$99999999\r\n"] {
            assert!(read_reply(&mut broken.as_bytes()).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn a_url_gives_the_address_and_the_password() {
        let parsed = |url: &str| Redis::parse(url).map(|r| (r.address, r.password));
        assert_eq!(parsed("redis://redis.surge.svc:6379"), Ok(("redis.surge.svc:6379".into(), None)));
        assert_eq!(parsed("redis://:s3cret@127.0.0.1:6380/"), Ok(("127.0.0.1:6380".into(), Some("s3cret".into()))));
        assert_eq!(parsed("redis://default:s3cret@h:1"), Ok(("h:1".into(), Some("s3cret".into()))));
        assert!(parsed("http://h:1").is_err() && parsed("redis://h").is_err());
    }
}
