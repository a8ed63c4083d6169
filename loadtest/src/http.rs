//! Just enough HTTP/1.1 for the load tools: one keep-alive connection, one request in flight,
//! responses framed by Content-Length (what axum sends for JSON) or chunked (server-rendered
//! pages). A general client would spend the CPU this machine's two cores should give to the
//! server under test.

use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub struct Connection {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    pub fn new(stream: TcpStream) -> std::io::Result<Connection> {
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Connection {
            read: BufReader::new(read),
            write,
            request: Vec::with_capacity(1024),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends one request and reads its whole response; returns the status code.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<u16> {
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: fleet-sim\r\n"
        )?;
        if let Some(token) = bearer {
            write!(self.request, "Authorization: Bearer {token}\r\n")?;
        }
        if !body.is_empty() {
            write!(self.request, "Content-Type: application/json\r\n")?;
        }
        write!(self.request, "Content-Length: {}\r\n\r\n", body.len())?;
        self.request.extend_from_slice(body);
        self.write.write_all(&self.request).await?;
        self.read_response().await
    }

    /// The body of the last response.
    pub fn last_body(&self) -> &[u8] {
        &self.body
    }

    async fn read_response(&mut self) -> std::io::Result<u16> {
        let status = {
            self.next_line().await?;
            parse_status_line(&self.line)?
        };
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            self.next_line().await?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = content_length(line) {
                length = value?;
            }
            chunked |= is_chunked(line);
        }
        if chunked {
            self.read_chunks().await?;
        } else {
            self.body.resize(length, 0);
            self.read.read_exact(&mut self.body).await?;
        }
        Ok(status)
    }

    /// A chunked body: hex size lines, each followed by that many bytes and a CRLF, until a
    /// zero size and the (empty) trailer.
    async fn read_chunks(&mut self) -> std::io::Result<()> {
        self.body.clear();
        loop {
            self.next_line().await?;
            let size_text = self.line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line: {:?}", self.line)))?;
            if size == 0 {
                // Trailer fields (none expected), then the blank line that ends the body.
                loop {
                    self.next_line().await?;
                    if self.line.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            let start = self.body.len();
            self.body.resize(start + size, 0);
            self.read.read_exact(&mut self.body[start..]).await?;
            self.next_line().await?;
        }
    }

    async fn next_line(&mut self) -> std::io::Result<()> {
        self.line.clear();
        if self.read.read_line(&mut self.line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn parse_status_line(line: &str) -> std::io::Result<u16> {
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP/1.1 status line: {line:?}")))
}

/// The value of a Content-Length header line, if the line is one.
fn content_length(line: &str) -> Option<std::io::Result<usize>> {
    let (name, value) = line.split_once(':')?;
    name.eq_ignore_ascii_case("content-length").then(|| {
        value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length: {line:?}")))
    })
}

/// Whether a header line says the body comes in chunks.
fn is_chunked(line: &str) -> bool {
    line.split_once(':').is_some_and(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_lengths_are_read_strictly() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(parse_status_line("HTTP/1.1 401 \r\n").unwrap(), 401);
        assert!(parse_status_line("garbage").is_err());
        assert_eq!(content_length("content-length: 42").unwrap().unwrap(), 42);
        assert_eq!(content_length("Content-Length:7").unwrap().unwrap(), 7);
        assert!(content_length("Content-Length: x").unwrap().is_err());
        assert!(content_length("content-type: application/json").is_none());
        assert!(is_chunked("Transfer-Encoding: chunked"));
        assert!(!is_chunked("content-type: text/html; charset=chunked-not"));
    }

    #[tokio::test]
    async fn a_keep_alive_connection_reads_one_response_after_another() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let responses: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                b"HTTP/1.1 409 Conflict\r\nContent-Length: 4\r\n\r\nnope",
            ];
            for (answered, response) in responses.iter().enumerate() {
                while seen.windows(4).filter(|w| w == b"\r\n\r\n").count() <= answered {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                socket.write_all(response).await.unwrap();
            }
            String::from_utf8(seen).unwrap()
        });
        let mut conn = Connection::new(TcpStream::connect(addr).await.unwrap()).unwrap();
        assert_eq!(conn.send("GET", "/a", None, b"").await.unwrap(), 200);
        assert_eq!(conn.last_body(), b"ok");
        assert_eq!(conn.send("GET", "/b", Some("t"), b"").await.unwrap(), 409);
        assert_eq!(conn.last_body(), b"nope");
        let seen = server.await.unwrap();
        assert!(seen.starts_with("GET /a HTTP/1.1\r\nHost: fleet-sim\r\nContent-Length: 0\r\n\r\n"));
        assert!(seen.contains("Authorization: Bearer t\r\n"));
    }
}
