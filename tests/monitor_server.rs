//! A monitor for the tests: a real HTTP server on 127.0.0.1 that records each request and answers
//! as told (a status, or holding the request until released), for the heartbeat tests of
//! bakfs-host and the end-to-end tests.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Holds the request until the test sends on the release channel.
    Hold,
}

/// A monitor on 127.0.0.1: what it saw, how it answers, and the channels that hold and see requests.
pub struct Server {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub answer: Arc<Mutex<Answer>>,
    pub release: Sender<()>,
    pub arrived: Receiver<()>,
}

fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Starts a server on a free port of 127.0.0.1, answering 200 until told otherwise.
pub fn server() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(Mutex::new(Answer::Status(200)));
    let (release, released) = channel::<()>();
    let (arrive, arrived) = channel::<()>();
    let (s2, a2) = (seen.clone(), answer.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let Some(req) = read_request(&mut c) else {
                continue;
            };
            s2.lock().unwrap().push(req);
            let _ = arrive.send(());
            // The answer is read first: the lock is not held while a request is held.
            let answer = *a2.lock().unwrap();
            let status = match answer {
                Answer::Status(s) => s,
                Answer::Hold => {
                    let _ = released.recv();
                    200
                }
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
            );
        }
    });
    Server {
        url,
        seen,
        answer,
        release,
        arrived,
    }
}
